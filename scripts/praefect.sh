# shellcheck shell=bash
# Praefect server of a Gitaly Cluster: the router between GitLab and the Gitaly nodes.
#
# Writes /etc/gitlab/gitlab.rb for a Praefect-only server in the current
# praefect['configuration'] form: listens on 2305 on every address (the internal
# Network Load Balancer passes TCP through), clients authenticate with the
# external token, one virtual storage over the Gitaly nodes of GITALY_NODES,
# reached with the internal token, replication factor 3, the Praefect database
# over TLS. Then, under the bootstrap lock (a PostgreSQL advisory lock, so that
# one Praefect server at a time does this): creates the Praefect database user
# and database when they do not exist yet, reconfigures, runs Praefect's SQL
# migrations (once per migration: a later server finds them applied), restarts
# Praefect. Success is signalled once Praefect accepts connections on 2305 at
# the server's private address, where the load balancer reaches it.
#
# Preamble: AWS_REGION CFN_STACK CFN_RESOURCE DB_HOST DB_PORT DB_SECRET_ARN
# PRAEFECT_DB_NAME PRAEFECT_DB_SECRET_ARN PRAEFECT_EXTERNAL_SECRET_ARN
# PRAEFECT_INTERNAL_SECRET_ARN GITALY_NODES VIRTUAL_STORAGE LOG_GROUP_PREFIX.
# Then the CloudWatch agent ships Praefect's log (lib/cloudwatch.sh, family praefect).
#
# Sources: GitLab docs doc/administration/gitaly/praefect/configure.md (the
# Praefect node's gitlab.rb, the manual database setup, the two tokens);
# omnibus-gitlab files/gitlab-cookbooks/praefect (18.11.11+ee.0 to 19.3.0+ee.0):
# attributes/default.rb (praefect['auto_migrate'] defaults to true, listen_addr
# to localhost:2305), recipes/enable.rb (config.toml from praefect['configuration']
# at /var/opt/gitlab/praefect/config.toml), recipes/database_migrations.rb (what
# reconfigure runs when auto_migrate is on: praefect -config config.toml sql-migrate).

ROLE=praefect
PSQL="${PSQL:-/opt/gitlab/embedded/bin/psql}"
# The key of the app servers' bootstrap lock (scripts/gitlab-app.sh). Advisory locks
# belong to a database: the Praefect servers take it in the maintenance database
# "postgres", which every RDS instance has (also a separate Praefect instance).
LOCK_KEY=80751001
LOCK_DATABASE=postgres
PRAEFECT_PORT=2305
GITALY_PORT=8075
# Every repository on three Gitaly nodes (Praefect refuses a factor above the node count).
REPLICATION_FACTOR=3
PRAEFECT_CONFIG=/var/opt/gitlab/praefect/config.toml
PRAEFECT_BIN=/opt/gitlab/embedded/bin/praefect
DB_ATTEMPTS="${GITLAB_CFN_DB_ATTEMPTS:-30}"
DB_DELAY="${GITLAB_CFN_DB_DELAY:-10}"
READY_TIMEOUT="${GITLAB_CFN_READINESS_TIMEOUT:-300}"
NODE_NAME='^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
IPV4='^([0-9]{1,3}\.){3}[0-9]{1,3}$'

required_env() {
  require_env AWS_REGION CFN_STACK DB_HOST DB_PORT DB_SECRET_ARN PRAEFECT_DB_NAME PRAEFECT_DB_SECRET_ARN \
    PRAEFECT_EXTERNAL_SECRET_ARN PRAEFECT_INTERNAL_SECRET_ARN GITALY_NODES VIRTUAL_STORAGE LOG_GROUP_PREFIX
}

# GITALY_NODES 'gitaly-1=10.0.1.23,gitaly-2=10.0.2.41,...' -> NODE_NAMES, NODE_IPS.
parse_gitaly_nodes() {
  local entry name ip
  local -a entries
  NODE_NAMES=() NODE_IPS=()
  IFS=, read -r -a entries <<<"$GITALY_NODES"
  for entry in "${entries[@]}"; do
    name=${entry%%=*} ip=${entry#*=}
    [[ "$entry" == *=* && "$name" =~ $NODE_NAME && "$ip" =~ $IPV4 ]] ||
      die "GITALY_NODES: '$entry' is not NAME=PRIVATE_IPV4 (for example gitaly-1=10.0.1.23)"
    [[ " ${NODE_NAMES[*]} " != *" $name "* ]] || die "GITALY_NODES: node name '$name' appears twice"
    NODE_NAMES+=("$name") NODE_IPS+=("$ip")
  done
  ((${#NODE_NAMES[@]} >= REPLICATION_FACTOR)) ||
    die "GITALY_NODES: ${#NODE_NAMES[@]} Gitaly node(s); a Gitaly Cluster needs at least $REPLICATION_FACTOR (the replication factor)"
  [[ "$VIRTUAL_STORAGE" =~ $NODE_NAME ]] || die "VIRTUAL_STORAGE: '$VIRTUAL_STORAGE' is not a storage name (default or cluster)"
}

load_secrets() {
  local db
  db=$(secret_string "$DB_SECRET_ARN")
  DB_USER=$(printf '%s' "$db" | json_field username)
  DB_PASSWORD=$(printf '%s' "$db" | json_field password)
  db=$(secret_string "$PRAEFECT_DB_SECRET_ARN")
  PRAEFECT_DB_USER=$(printf '%s' "$db" | json_field username)
  PRAEFECT_DB_PASSWORD=$(printf '%s' "$db" | json_field password)
  EXTERNAL_TOKEN=$(secret_field "$PRAEFECT_EXTERNAL_SECRET_ARN" token)
  INTERNAL_TOKEN=$(secret_field "$PRAEFECT_INTERNAL_SECRET_ARN" token)
  [[ -n "$DB_USER" && -n "$DB_PASSWORD" && -n "$PRAEFECT_DB_USER" && -n "$PRAEFECT_DB_PASSWORD" &&
    -n "$EXTERNAL_TOKEN" && -n "$INTERNAL_TOKEN" ]] || die "a secret read from Secrets Manager is empty"
  # Clients holding the external token must not reach the Gitaly nodes directly (configure.md, "Secrets").
  [[ "$EXTERNAL_TOKEN" != "$INTERNAL_TOKEN" ]] || die "the Praefect external and internal tokens are the same secret value"
}

# render_gitlab_rb: fails (and prints nothing) when a part fails, such as a missing private
# address for the exporters: the parts are computed before the heredoc, whose substitutions
# would lose their exit status (lib/exporters.sh).
render_gitlab_rb() {
  local i exporters exporter_key
  exporters=$(exporters_gitlab_rb praefect) || return
  exporter_key=$(exporter_configuration_key 9652) || return
  cat <<RUBY
# Written at boot by gitlab-cfn; edits are overwritten on the next boot.
# A Praefect-only server: nothing else of the GitLab package runs here.
gitaly['enable'] = false
$(gitlab_rb_other_services_off)
$exporters

praefect['enable'] = true
# reconfigure would migrate on every server (the default is true); the boot
# script migrates once, under the bootstrap lock.
praefect['auto_migrate'] = false
praefect['configuration'] = {
  listen_addr: $(ruby_string "0.0.0.0:$PRAEFECT_PORT"),
$exporter_key
  auth: { token: $(ruby_string "$EXTERNAL_TOKEN"), transitioning: false },
  database: {
    host: $(ruby_string "$DB_HOST"),
    port: $DB_PORT,
    user: $(ruby_string "$PRAEFECT_DB_USER"),
    password: $(ruby_string "$PRAEFECT_DB_PASSWORD"),
    dbname: $(ruby_string "$PRAEFECT_DB_NAME"),
    sslmode: 'require',
  },
  # per_repository is the only election strategy since Praefect 14.0: no key to set.
  failover: { enabled: true },
  virtual_storage: [
    {
      name: $(ruby_string "$VIRTUAL_STORAGE"),
      default_replication_factor: $REPLICATION_FACTOR,
      node: [
RUBY
  for i in "${!NODE_NAMES[@]}"; do
    printf "        { storage: %s, address: %s, token: %s },\n" "$(ruby_string "${NODE_NAMES[$i]}")" \
      "$(ruby_string "tcp://${NODE_IPS[$i]}:$GITALY_PORT")" "$(ruby_string "$INTERNAL_TOKEN")"
  done
  cat <<'RUBY'
      ],
    },
  ],
}
RUBY
}

# What must not run on two Praefect servers at once; called from the psql
# session that holds the bootstrap lock, after it created the user and database.
locked_phase() {
  gitlab-ctl reconfigure
  # The cookbook's own migration command (praefect/recipes/database_migrations.rb);
  # it applies only what the database lacks.
  "$PRAEFECT_BIN" -config "$PRAEFECT_CONFIG" sql-migrate
  # The cookbook restarts (HUPs) Praefect after migrating.
  gitlab-ctl restart praefect
}

# The Praefect user and database, created once (GitLab docs, praefect/configure.md,
# "Manual database setup"), by the master user of the RDS instance; the master
# becomes a member of the new role, which CREATE DATABASE ... OWNER needs. The
# password reaches psql through its environment (\getenv, psql 15 and later; the
# package's psql is 16 or 17 from 18.11, omnibus-gitlab config/software/postgresql.rb
# and postgresql_new.rb), never its arguments.
bootstrap_under_lock() {
  local rc_file="$STATE_DIR/locked-phase.rc" self conn host out
  self=$(printf '%q' "$0")
  host=$(hostname)
  conn="host=$DB_HOST port=$DB_PORT dbname=$LOCK_DATABASE user=$DB_USER sslmode=require connect_timeout=10 application_name=gitlab-cfn-$host"
  export PGPASSWORD="$DB_PASSWORD"
  retry "$DB_ATTEMPTS" "$DB_DELAY" "$PSQL" "$conn" -qtAc 'SELECT 1' >/dev/null ||
    die "database $DB_HOST:$DB_PORT is not reachable with TLS"
  rm -f "$rc_file"
  log "waiting for the bootstrap lock"
  out=$(PRAEFECT_DB_USER="$PRAEFECT_DB_USER" PRAEFECT_DB_PASSWORD="$PRAEFECT_DB_PASSWORD" PRAEFECT_DB_NAME="$PRAEFECT_DB_NAME" \
    "$PSQL" "$conn" -v ON_ERROR_STOP=1 -qtA -o /dev/null <<SQL
SELECT pg_advisory_lock($LOCK_KEY);
\\getenv praefect_user PRAEFECT_DB_USER
\\getenv praefect_password PRAEFECT_DB_PASSWORD
\\getenv praefect_db PRAEFECT_DB_NAME
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'praefect_user') AS create_role \\gset
\\if :create_role
CREATE ROLE :"praefect_user" WITH LOGIN PASSWORD :'praefect_password';
\\echo created database user :praefect_user
\\endif
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'praefect_db') AS create_db \\gset
\\if :create_db
GRANT :"praefect_user" TO CURRENT_USER;
CREATE DATABASE :"praefect_db" WITH OWNER :"praefect_user" ENCODING 'UTF8';
\\echo created database :praefect_db
\\endif
\\! GITLAB_CFN_PHASE=locked bash $self </dev/null >&2; echo \$? > $(printf '%q' "$rc_file")
SELECT pg_advisory_unlock($LOCK_KEY);
SQL
  ) || die "the bootstrap session on $DB_HOST:$DB_PORT failed"
  unset PGPASSWORD
  if [[ -n "$out" ]]; then
    log "$out"
  else
    log "the Praefect database user and database exist already: kept"
  fi
  [[ "$(cat "$rc_file" 2>/dev/null)" == 0 ]] || die "the locked bootstrap phase failed"
}

# Success once Praefect accepts connections on the server's private address,
# where the load balancer's targets are (a localhost listen_addr fails here).
wait_for_praefect() {
  local deadline=$((SECONDS + READY_TIMEOUT)) address
  # The first IPv4 address of the server's interfaces (an IPv6 one may come first).
  address=$(hostname -I | tr ' ' '\n' | grep -m1 -E "$IPV4" || true)
  [[ -n "$address" ]] || die "this server has no private IPv4 address (hostname -I: '$(hostname -I)')"
  until (exec 3<>"/dev/tcp/$address/$PRAEFECT_PORT") 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      die "Praefect does not accept connections on $address:$PRAEFECT_PORT after ${READY_TIMEOUT}s (see /var/log/gitlab/praefect/current)"
    fi
    sleep 1
  done
  log "Praefect accepts connections on $address:$PRAEFECT_PORT"
}

main() {
  if [[ "${GITLAB_CFN_PHASE:-}" == locked ]]; then
    # Re-entered from psql while the lock is held: no signal from here.
    CFN_RESOURCE=""
    unset PGPASSWORD PRAEFECT_DB_PASSWORD
    locked_phase
    return
  fi
  start_boot
  required_env
  parse_gitaly_nodes
  load_secrets
  # Rendered whole first: a failed render writes no gitlab.rb (a pipe would install what came before).
  local rb
  rb=$(render_gitlab_rb)
  printf '%s\n' "$rb" | install_file 0600 "$ROOT/etc/gitlab/gitlab.rb"
  bootstrap_under_lock
  wait_for_praefect
  configure_cloudwatch_agent praefect
  log "Praefect is configured and ready"
}

# Sourced (tests render gitlab.rb this way), nothing runs; executed, the boot does.
(return 0 2>/dev/null) || main "$@"
