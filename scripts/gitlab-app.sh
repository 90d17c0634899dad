# shellcheck shell=bash
# GitLab application server (BOOT_ROLE gitlab-app) or Sidekiq server
# (BOOT_ROLE gitlab-sidekiq): configures the custom AMI at boot.
# gitlab.rb for RDS, ElastiCache (and a separate cache Redis from 10k), Gitaly
# (one server, or Gitaly Cluster through Praefect's internal load balancer, and
# the POC's server as a second storage while its repositories move), S3 and
# proxied SSL, in the form the installed GitLab version documents.
# An application server, under a PostgreSQL advisory lock, one server at a
# time: extensions, shared host keys, shared gitlab-secrets.json, reconfigure,
# migrations or seeding, one-time settings. Then sshd on the shared host keys
# and fast SSH key lookup, and success is signalled only once GitLab answers
# /-/readiness. It runs Sidekiq too when RUN_SIDEKIQ is 'true' (the POC);
# from 2k Sidekiq has servers of its own and RUN_SIDEKIQ is 'false'.
# A Sidekiq server runs Sidekiq only: no Puma, Workhorse, nginx, sshd changes,
# migrations or load balancer health; it takes the bootstrap lock only to read
# the gitlab-secrets.json an application server published (it waits for one),
# and succeeds once Sidekiq answers its health check (/readiness).
# GitLab's reference architectures (doc/administration/reference_architectures/3k_users.md,
# "Configure Sidekiq", "Configure GitLab Rails": sidekiq['enable'] = false on Rails
# nodes, puma/workhorse/nginx off on Sidekiq nodes). Preamble variables: see required_env.

ROLE=gitlab-app
# The Sidekiq servers run this script too: BOOT_ROLE gitlab-sidekiq (checked in required_env).
ROLE=${BOOT_ROLE:-$ROLE}
PSQL="${PSQL:-/opt/gitlab/embedded/bin/psql}"
LOCK_KEY=80751001  # pg_advisory_lock key of the gitlab-cfn bootstrap
# The Rails version of the installed package, e.g. 19.3.0-ee (omnibus-gitlab
# copies gitlab-rails' VERSION there; its own upgrade checks read it too).
GITLAB_VERSION_FILE=/opt/gitlab/embedded/service/gitlab-rails/VERSION
# Equal to gitlab_cfn.compile.versions SUPPORTED_MINORS and NGINX_SUBKEY_FROM
# (tests compare them): GitLab 19.2 reads the Rails nginx settings from
# gitlab_rails['nginx'][...], 19.3's gitlab.rb template documents only that
# form, 19.1 and older ignore it; the old nginx[...] form works up to 19.2.
SUPPORTED_MINORS=(18.11 19.0 19.1 19.2 19.3)
NGINX_SUBKEY_FROM=19.3
# nginx's port: the load balancer's InstancePort and health-check port (tests
# read both from the built app template).
LISTEN_PORT=80
# Sidekiq's health checks (gitlab.rb template: sidekiq['health_checks_listen_port'], default 8092).
SIDEKIQ_HEALTH_PORT=8092
# A Sidekiq server waits this long for an application server to publish gitlab-secrets.json.
SECRETS_WAIT="${GITLAB_CFN_SECRETS_WAIT:-1800}"
SECRETS_INTERVAL="${GITLAB_CFN_SECRETS_INTERVAL:-20}"
# The locked phase's exit status when there is nothing to read yet (sysexits.h EX_TEMPFAIL).
NOT_YET=75
STORAGE_NAME='^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
READINESS_TIMEOUT="${GITLAB_CFN_READINESS_TIMEOUT:-900}"
READINESS_INTERVAL="${GITLAB_CFN_READINESS_INTERVAL:-5}"
DB_ATTEMPTS="${GITLAB_CFN_DB_ATTEMPTS:-30}"
DB_DELAY="${GITLAB_CFN_DB_DELAY:-10}"
BUCKET_KINDS=(artifacts external_diffs lfs uploads packages dependency_proxy terraform_state ci_secure_files pages)
HOST_KEY_TYPES=(ed25519 ecdsa rsa)

# Only the application servers read these (a Sidekiq server gets neither).
WEB_ONLY=(HOST_KEYS_SECRET_ARN ROOT_PASSWORD_SECRET_ARN)

required_env() {
  require_env AWS_REGION CFN_STACK GITLAB_DOMAIN VPC_CIDR DB_HOST DB_PORT DB_NAME \
    DB_SECRET_ARN REDIS_HOST REDIS_PORT REDIS_SECRET_ARN GITALY_ADDRESS GITALY_SECRET_ARN \
    SHELL_SECRET_ARN RAILS_SECRETS_ARN BUCKET_BACKUPS LOG_GROUP_PREFIX
  local kind
  for kind in "${BUCKET_KINDS[@]}"; do
    require_env "BUCKET_${kind^^}"
  done
  case $ROLE in
    gitlab-app) require_env "${WEB_ONLY[@]}" ;;
    gitlab-sidekiq) ;;
    *) die "BOOT_ROLE: '$ROLE' is not a role of this script (gitlab-app, gitlab-sidekiq)" ;;
  esac
  # Absent from a preamble written before these settings existed: today's single-server values.
  RUN_SIDEKIQ=${RUN_SIDEKIQ:-true}
  GITALY_STORAGE=${GITALY_STORAGE:-default}
  [[ "$RUN_SIDEKIQ" == true || "$RUN_SIDEKIQ" == false ]] || die "RUN_SIDEKIQ: '$RUN_SIDEKIQ' is not 'true' or 'false'"
  [[ "$ROLE" == gitlab-app || "$RUN_SIDEKIQ" == true ]] || die "RUN_SIDEKIQ: a gitlab-sidekiq server runs Sidekiq ('true'), not '$RUN_SIDEKIQ'"
  [[ "$GITALY_STORAGE" =~ $STORAGE_NAME ]] || die "GITALY_STORAGE: '$GITALY_STORAGE' is not a storage name (default, cluster)"
  all_or_none GITALY2_ADDRESS GITALY2_SECRET_ARN GITALY2_STORAGE
  if [[ -n "${GITALY2_STORAGE:-}" ]]; then
    [[ "$GITALY2_STORAGE" =~ $STORAGE_NAME ]] || die "GITALY2_STORAGE: '$GITALY2_STORAGE' is not a storage name (default, cluster)"
    [[ "$GITALY2_STORAGE" != "$GITALY_STORAGE" ]] || die "GITALY2_STORAGE: '$GITALY2_STORAGE' is GITALY_STORAGE's name too; each storage needs its own"
  fi
  all_or_none REDIS_CACHE_HOST REDIS_CACHE_PORT REDIS_CACHE_SECRET_ARN
  # GitLab requires a storage named 'default' (doc/administration/gitaly/configure_gitaly.md,
  # "GitLab requires a default repository storage").
  [[ "$GITALY_STORAGE" == default || "${GITALY2_STORAGE:-}" == default ]] ||
    die "GITALY_STORAGE: one repository storage must be named 'default' (GITALY_STORAGE or GITALY2_STORAGE)"
}

# all_or_none NAME...: the optional variables of one setting come together.
all_or_none() {
  local name set=() unset=()
  for name in "$@"; do
    if [[ -n "${!name:-}" ]]; then set+=("$name"); else unset+=("$name"); fi
  done
  ((${#set[@]} == 0 || ${#unset[@]} == 0)) || die "${unset[0]} is not set but ${set[0]} is: $* come together"
}

load_secrets() {
  local db
  db=$(secret_string "$DB_SECRET_ARN")
  DB_USER=$(printf '%s' "$db" | json_field username)
  DB_PASSWORD=$(printf '%s' "$db" | json_field password)
  REDIS_TOKEN=$(secret_field "$REDIS_SECRET_ARN" token)
  # With a cluster, the Praefect external token (the address is Praefect's load balancer).
  GITALY_TOKEN=$(secret_field "$GITALY_SECRET_ARN" token)
  SHELL_SECRET=$(secret_field "$SHELL_SECRET_ARN" token)
  [[ -n "$DB_PASSWORD" && -n "$REDIS_TOKEN" && -n "$GITALY_TOKEN" && -n "$SHELL_SECRET" ]] ||
    die "a secret read from Secrets Manager is empty"
  GITALY2_TOKEN="" REDIS_CACHE_TOKEN=""
  if [[ -n "${GITALY2_SECRET_ARN:-}" ]]; then
    GITALY2_TOKEN=$(secret_field "$GITALY2_SECRET_ARN" token)
    [[ -n "$GITALY2_TOKEN" ]] || die "the token of GITALY2_SECRET_ARN is empty"
  fi
  if [[ -n "${REDIS_CACHE_SECRET_ARN:-}" ]]; then
    REDIS_CACHE_TOKEN=$(secret_field "$REDIS_CACHE_SECRET_ARN" token)
    [[ -n "$REDIS_CACHE_TOKEN" ]] || die "the token of REDIS_CACHE_SECRET_ARN is empty"
  fi
  if [[ -n "${EMAIL_SENDER:-}" ]]; then
    SMTP_SECRET_ARN=$(smtp_secret_arn) || die "cannot read the SMTP secret's ARN from $BUNDLE_PARAMETER"
    load_smtp_credentials "$SMTP_SECRET_ARN"
  fi
}

# The buckets' region, from their names (gl-<kind>-<account>-<region>-<suffix>,
# storage.bucket_name): the stack's, or the old stack's after a restore into another region
# (RestoreBucketsRegion). GitLab's S3 connection must name it. A name this does not read
# (a region name of another shape) is the stack's own region's: only a restore into another
# region gives names of another region, and those come from a region this reads.
buckets_region() {
  if [[ "$BUCKET_UPLOADS" =~ -[0-9]{12}-([a-z]{2,4}(-[a-z]+)+-[0-9]+)-[0-9a-f]{8}$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    printf '%s' "$AWS_REGION"
  fi
}

# MAJOR.MINOR of VERSION (19.3.0-ee -> 19.3), or nothing if it is not a version.
minor_of() {
  [[ "$1" =~ ^([0-9]+)\.([0-9]+)\.[0-9]+(-rc[0-9]+)?(-ee)?$ ]] && printf '%s.%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
}

# at_least MINOR OTHER: MINOR >= OTHER, both MAJOR.MINOR.
at_least() {
  local a=$1 b=$2
  ((${a%.*} > ${b%.*} || (${a%.*} == ${b%.*} && ${a#*.} >= ${b#*.})))
}

# Sets INSTALLED_VERSION and INSTALLED_MINOR, or stops the boot: gitlab.rb is
# only rendered for versions whose settings the project checks.
check_installed_version() {
  local minor supported
  [[ -r "$GITLAB_VERSION_FILE" ]] || die "no GitLab package installed: $GITLAB_VERSION_FILE is missing"
  INSTALLED_VERSION=$(tr -d '[:space:]' <"$GITLAB_VERSION_FILE")
  minor=$(minor_of "$INSTALLED_VERSION") ||
    die "installed GitLab version '$INSTALLED_VERSION' ($GITLAB_VERSION_FILE) is not X.Y.Z[-ee]"
  for supported in "${SUPPORTED_MINORS[@]}"; do
    if [[ "$minor" == "$supported" ]]; then
      INSTALLED_MINOR=$minor
      log "installed GitLab: $INSTALLED_VERSION"
      return 0
    fi
  done
  die "installed GitLab $INSTALLED_VERSION is not supported: gitlab-cfn supports ${SUPPORTED_MINORS[0]}.x to ${SUPPORTED_MINORS[-1]}.x (${SUPPORTED_MINORS[*]}); bake an image of a supported version"
}

# The gitlab.rb prefix of the Rails nginx settings on the installed version.
nginx_prefix() {
  if at_least "$INSTALLED_MINOR" "$NGINX_SUBKEY_FROM"; then
    printf "gitlab_rails['nginx']"
  else
    printf 'nginx'
  fi
}

# The Classic Load Balancer cannot redirect (its listeners have no rules), so
# nginx does: a request the load balancer forwarded as plain HTTP
# (X-Forwarded-Proto: http, docs.aws.amazon.com/elasticloadbalancing/latest/classic/x-forwarded-headers.html)
# gets a 301 to https://. The load balancer's health checks and local probes
# carry no X-Forwarded-Proto and are served. Goes inside GitLab's server block
# (omnibus-gitlab nginx-gitlab-rails.conf.erb, custom_gitlab_server_config).
redirect_snippet() {
  # shellcheck disable=SC2016  # nginx variables, not bash's
  printf 'if ($http_x_forwarded_proto ~* "^http$") { return 301 https://%s$request_uri; }' "$GITLAB_DOMAIN"
}

render_gitlab_rb() {
  local kind bucket nginx
  [[ -n "${BUCKETS_REGION:-}" ]] || BUCKETS_REGION=$(buckets_region) || return 1
  cat <<RUBY
# Written at boot by gitlab-cfn for GitLab $INSTALLED_VERSION ($ROLE); edits are overwritten on the next boot.
external_url $(ruby_string "https://$GITLAB_DOMAIN")

RUBY
  if [[ "$ROLE" == gitlab-app ]]; then
    nginx=$(nginx_prefix)
    cat <<RUBY
# TLS ends at the load balancer (guide: "Disable Let's Encrypt", "Add Support for Proxied SSL").
letsencrypt['enable'] = false
${nginx}['listen_port'] = $LISTEN_PORT
${nginx}['listen_https'] = false
${nginx}['proxy_set_headers'] = { 'X-Forwarded-Proto' => 'https', 'X-Forwarded-Ssl' => 'on' }
${nginx}['real_ip_trusted_addresses'] = [$(ruby_string "$VPC_CIDR")]
${nginx}['real_ip_header'] = 'X-Forwarded-For'
${nginx}['real_ip_recursive'] = 'on'
${nginx}['custom_gitlab_server_config'] = $(ruby_string "$(redirect_snippet)")
gitlab_rails['trusted_proxies'] = [$(ruby_string "$VPC_CIDR")]
# The load balancer's readiness checks come from the VPC.
gitlab_rails['monitoring_whitelist'] = ['127.0.0.0/8', '::1/128', $(ruby_string "$VPC_CIDR")]
# Sidekiq here too (the POC), or on servers of its own (RUN_SIDEKIQ 'false').
sidekiq['enable'] = $RUN_SIDEKIQ

RUBY
  else
    cat <<RUBY
# A Sidekiq server: no web server, no load balancer traffic, nothing else of the package.
letsencrypt['enable'] = false
puma['enable'] = false
gitlab_workhorse['enable'] = false
nginx['enable'] = false
gitlab_kas['enable'] = false
prometheus['enable'] = false
alertmanager['enable'] = false
gitlab_exporter['enable'] = false
sidekiq['enable'] = true
sidekiq['health_checks_enabled'] = true
sidekiq['health_checks_listen_port'] = $SIDEKIQ_HEALTH_PORT

RUBY
  fi
  cat <<RUBY
# Amazon RDS for PostgreSQL, TLS required.
postgresql['enable'] = false
postgres_exporter['enable'] = false
gitlab_rails['db_adapter'] = 'postgresql'
gitlab_rails['db_encoding'] = 'unicode'
gitlab_rails['db_database'] = $(ruby_string "$DB_NAME")
gitlab_rails['db_username'] = $(ruby_string "$DB_USER")
gitlab_rails['db_password'] = $(ruby_string "$DB_PASSWORD")
gitlab_rails['db_host'] = $(ruby_string "$DB_HOST")
gitlab_rails['db_port'] = $DB_PORT
gitlab_rails['db_sslmode'] = 'require'
# Migrations run once per boot wave, under a lock, from the boot script.
gitlab_rails['auto_migrate'] = false

# Amazon ElastiCache for Redis, TLS and AUTH.
redis['enable'] = false
redis_exporter['enable'] = false
gitlab_rails['redis_host'] = $(ruby_string "$REDIS_HOST")
gitlab_rails['redis_port'] = $REDIS_PORT
gitlab_rails['redis_ssl'] = true
gitlab_rails['redis_password'] = $(ruby_string "$REDIS_TOKEN")
RUBY
  if [[ -n "${REDIS_CACHE_HOST:-}" ]]; then
    # The cache on its own replication group (allkeys-lru), TLS (rediss://) and AUTH as the
    # persistent one: omnibus-gitlab gitlab/recipes/gitlab-rails.rb writes redis.cache.yml from
    # redis_cache_instance (a URL) and redis_cache_password (gitlab.rb template, "Separate instances support").
    # shellcheck disable=SC2153  # all three are set together (all_or_none)
    cat <<RUBY
gitlab_rails['redis_cache_instance'] = $(ruby_string "rediss://$REDIS_CACHE_HOST:$REDIS_CACHE_PORT")
gitlab_rails['redis_cache_password'] = $(ruby_string "$REDIS_CACHE_TOKEN")
RUBY
  fi
  cat <<RUBY

# Repositories: the Gitaly server, or Praefect's load balancer (the external token).
gitaly['enable'] = false
gitlab_rails['gitaly_token'] = $(ruby_string "$GITALY_TOKEN")
gitlab_rails['repositories_storages'] = {
  $(ruby_string "$GITALY_STORAGE") => { 'gitaly_address' => $(ruby_string "$GITALY_ADDRESS"), 'gitaly_token' => $(ruby_string "$GITALY_TOKEN") },
RUBY
  if [[ -n "${GITALY2_STORAGE:-}" ]]; then
    # shellcheck disable=SC2153  # all three are set together (all_or_none)
    printf "  %s => { 'gitaly_address' => %s, 'gitaly_token' => %s },\n" "$(ruby_string "$GITALY2_STORAGE")" \
      "$(ruby_string "$GITALY2_ADDRESS")" "$(ruby_string "$GITALY2_TOKEN")"
  fi
  cat <<RUBY
}

# S3 object storage through the instance profile: no keys anywhere.
gitlab_rails['object_store']['enabled'] = true
gitlab_rails['object_store']['proxy_download'] = false
gitlab_rails['object_store']['connection'] = { 'provider' => 'AWS', 'region' => $(ruby_string "$BUCKETS_REGION"), 'use_iam_profile' => true }
RUBY
  for kind in "${BUCKET_KINDS[@]}"; do
    bucket="BUCKET_${kind^^}"
    printf "gitlab_rails['object_store']['objects']['%s']['bucket'] = %s\n" "$kind" "$(ruby_string "${!bucket}")"
  done
  cat <<RUBY
gitlab_rails['external_diffs_enabled'] = true
gitlab_rails['backup_upload_connection'] = { 'provider' => 'AWS', 'region' => $(ruby_string "$BUCKETS_REGION"), 'use_iam_profile' => true }
gitlab_rails['backup_upload_remote_directory'] = $(ruby_string "$BUCKET_BACKUPS")
RUBY
}

# sshd on the shared host keys, once they are in /etc/ssh_static (written in
# the locked phase): sshd refuses a configuration naming missing keys. A
# drop-in that sshd -t refuses is removed again, so ssh keeps working.
configure_sshd() {
  local type conf=/etc/ssh/sshd_config.d/60-gitlab-cfn.conf
  for type in "${HOST_KEY_TYPES[@]}"; do
    [[ -s "/etc/ssh_static/ssh_host_${type}_key" ]] || die "shared host key /etc/ssh_static/ssh_host_${type}_key is missing"
  done
  install_file 0644 "$conf" <<'SSHD'
# gitlab-cfn: shared host keys; SSH keys looked up in GitLab's database.
HostKey /etc/ssh_static/ssh_host_ed25519_key
HostKey /etc/ssh_static/ssh_host_ecdsa_key
HostKey /etc/ssh_static/ssh_host_rsa_key
Match User git
    AuthorizedKeysCommand /opt/gitlab/embedded/service/gitlab-shell/bin/gitlab-shell-authorized-keys-check git %u %k
    AuthorizedKeysCommandUser git
Match all
SSHD
  if ((FILE_CHANGED)); then
    if ! sshd -t; then
      rm -f "$conf"
      die "sshd -t refuses $conf: removed it"
    fi
    systemctl try-reload-or-restart ssh
  fi
}

# wait_for_http PORT PATH WHAT: until http://127.0.0.1:PORT/PATH answers 200 (READINESS_TIMEOUT).
wait_for_http() {
  local port=$1 path=$2 what=$3 deadline=$((SECONDS + READINESS_TIMEOUT)) code
  log "waiting up to ${READINESS_TIMEOUT}s for $path on port $port"
  while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port$path" || true)
    if [[ "$code" == 200 ]]; then
      log "$what answers $path"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      die "$what did not answer $path with 200 on port $port within ${READINESS_TIMEOUT}s (last answer: ${code:-none}); see /var/log/gitlab"
    fi
    sleep "$READINESS_INTERVAL"
  done
}

# Success only once GitLab serves: /-/readiness through nginx on the load
# balancer's port (127.0.0.1 is in monitoring_whitelist).
wait_until_ready() {
  wait_for_http "$LISTEN_PORT" /-/readiness GitLab
}

# A Sidekiq server: Sidekiq's own health check, which answers 200 once Sidekiq
# is ready to process jobs (GitLab docs, doc/administration/sidekiq/sidekiq_health_check.md).
wait_until_sidekiq_ready() {
  wait_for_http "$SIDEKIQ_HEALTH_PORT" /readiness Sidekiq
}

# The first server's host keys, kept in Secrets Manager for all others.
restore_or_publish_host_keys() {
  local json type dir=/etc/ssh_static out files=()
  json=$(secret_string "$HOST_KEYS_SECRET_ARN")
  mkdir -p "$dir"
  chmod 755 "$dir"
  if [[ -n "$(printf '%s' "$json" | json_field ssh_host_ed25519_key)" ]]; then
    for type in "${HOST_KEY_TYPES[@]}"; do
      printf '%s' "$json" | json_field "ssh_host_${type}_key" | install_file 0600 "$dir/ssh_host_${type}_key"
      printf '%s' "$json" | json_field "ssh_host_${type}_key.pub" | install_file 0644 "$dir/ssh_host_${type}_key.pub"
    done
    return
  fi
  log "no shared host keys yet: publishing this server's"
  for type in "${HOST_KEY_TYPES[@]}"; do
    install_file 0600 "$dir/ssh_host_${type}_key" <"/etc/ssh/ssh_host_${type}_key"
    install_file 0644 "$dir/ssh_host_${type}_key.pub" <"/etc/ssh/ssh_host_${type}_key.pub"
    files+=("ssh_host_${type}_key=$dir/ssh_host_${type}_key" "ssh_host_${type}_key.pub=$dir/ssh_host_${type}_key.pub")
  done
  out=$(mktemp "$STATE_DIR/host-keys.XXXXXX")
  files_json "${files[@]}" >"$out"
  put_secret_json "$HOST_KEYS_SECRET_ARN" "$out"
  rm -f "$out"
}

# gitlab-secrets.json (keys of encrypted columns) must match on every server:
# the first generates it around Gitaly's shell secret and publishes it.
# A stack restored from another (gitlab-cfn restore) starts with the old stack's
# gitlab-secrets.json already published: its keys read the restored database, but its
# GitLab Shell secret is the old stack's, while Gitaly has this stack's. The first server
# to see that gives it this stack's and publishes it again; nothing else changes.
restore_rails_secrets() {
  local content rc=0
  content=$(secret_field "$RAILS_SECRETS_ARN" gitlab-secrets.json)
  PUBLISH_RAILS_SECRETS=0
  if [[ -n "$content" ]]; then
    printf '%s\n' "$content" | install_file 0600 /etc/gitlab/gitlab-secrets.json
  else
    log "no shared Rails secrets yet: this server generates them"
    PUBLISH_RAILS_SECRETS=1
  fi
  SHELL_SECRET="$SHELL_SECRET" python3 - /etc/gitlab/gitlab-secrets.json <<'PY' || rc=$?
import json, os, sys
path = sys.argv[1]
try:
    with open(path) as f:
        secrets = json.load(f)
except (FileNotFoundError, ValueError):
    secrets = {}
if secrets.get("gitlab_shell", {}).get("secret_token") == os.environ["SHELL_SECRET"]:
    sys.exit(0)
secrets.setdefault("gitlab_shell", {})["secret_token"] = os.environ["SHELL_SECRET"]
with open(path, "w") as f:
    json.dump(secrets, f, indent=2)
os.chmod(path, 0o600)
sys.exit(10)
PY
  case "$rc" in
    0) ;;
    10)
      if [[ -n "$content" ]]; then
        log "gitlab-secrets.json comes from another stack (a restore): it takes this stack's GitLab Shell secret"
      fi
      PUBLISH_RAILS_SECRETS=1
      ;;
    *) die "cannot write /etc/gitlab/gitlab-secrets.json (exit status $rc)" ;;
  esac
}

# A Sidekiq server never generates gitlab-secrets.json: it needs the application
# servers' keys (encrypted columns, sessions). Nothing published yet: NOT_YET.
restore_published_rails_secrets() {
  local content
  content=$(secret_field "$RAILS_SECRETS_ARN" gitlab-secrets.json)
  if [[ -z "$content" ]]; then
    log "no application server has published gitlab-secrets.json yet"
    exit "$NOT_YET"
  fi
  printf '%s\n' "$content" | install_file 0600 /etc/gitlab/gitlab-secrets.json
}

publish_rails_secrets() {
  local out
  out=$(mktemp "$STATE_DIR/rails-secrets.XXXXXX")
  files_json "gitlab-secrets.json=/etc/gitlab/gitlab-secrets.json" >"$out"
  put_secret_json "$RAILS_SECRETS_ARN" "$out"
  rm -f "$out"
}

# What must not run on two servers at once; called from the psql session
# that holds the advisory lock (bootstrap_under_lock). A Sidekiq server only
# reads the published gitlab-secrets.json here: holding the lock, it knows that
# the application server that published them has finished its locked phase.
locked_phase() {
  if [[ "$ROLE" == gitlab-sidekiq ]]; then
    restore_published_rails_secrets
    return
  fi
  SHELL_SECRET=$(secret_field "$SHELL_SECRET_ARN" token)
  [[ -n "$SHELL_SECRET" ]] || die "the GitLab Shell secret read from Secrets Manager is empty"
  restore_or_publish_host_keys
  restore_rails_secrets
  gitlab-ctl reconfigure
  if ((PUBLISH_RAILS_SECRETS)); then
    publish_rails_secrets
    # The first server of a new (or restored) stack: one backup at the end of its boot (lib/backup.sh).
    request_first_backup
  fi
  # Loads the schema and seeds an empty database, migrates an existing one. Only the
  # regular migrations: while a rolling upgrade replaces one server at a time, the old
  # servers still serve, so the post-deployment migrations wait for `gitlab-cfn upgrade`
  # to run them once every server runs the new version (GitLab's zero-downtime upgrade,
  # doc/update/zero_downtime.md). A schema load is complete either way.
  GITLAB_ROOT_PASSWORD=$(secret_field "$ROOT_PASSWORD_SECRET_ARN" password) \
    SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-rake gitlab:db:configure
  # Idempotent one-time settings: incremental job logs (several servers), no authorized_keys file.
  gitlab-rails runner \
    'Feature.enable(:ci_enable_live_trace) unless Feature.enabled?(:ci_enable_live_trace); ApplicationSetting.current.update!(authorized_keys_enabled: false)'
  gitlab-ctl restart
}

bootstrap_under_lock() {
  local rc_file="$STATE_DIR/locked-phase.rc" self extensions="" waited=0 rc
  self=$(printf '%q' "$0")
  export PGPASSWORD="$DB_PASSWORD"
  # application_name shows in pg_stat_activity which server holds or awaits the lock.
  local conn host
  host=$(hostname)
  conn="host=$DB_HOST port=$DB_PORT dbname=$DB_NAME user=$DB_USER sslmode=require connect_timeout=10 application_name=gitlab-cfn-$host"
  retry "$DB_ATTEMPTS" "$DB_DELAY" "$PSQL" "$conn" -qtAc 'SELECT 1' >/dev/null ||
    die "database $DB_HOST:$DB_PORT is not reachable with TLS"
  if [[ "$ROLE" == gitlab-app ]]; then
    extensions="CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE EXTENSION IF NOT EXISTS btree_gist;"
  fi
  while true; do
    rm -f "$rc_file"
    log "waiting for the bootstrap lock"
    "$PSQL" "$conn" -v ON_ERROR_STOP=1 -q -o /dev/null <<SQL
SELECT pg_advisory_lock($LOCK_KEY);
$extensions
\\! GITLAB_CFN_PHASE=locked bash $self </dev/null; echo \$? > $(printf '%q' "$rc_file")
SELECT pg_advisory_unlock($LOCK_KEY);
SQL
    rc=$(cat "$rc_file" 2>/dev/null || true)
    [[ "$rc" == "$NOT_YET" ]] || break
    if ((waited >= SECRETS_WAIT)); then
      die "no application server published gitlab-secrets.json within ${SECRETS_WAIT}s ($RAILS_SECRETS_ARN)"
    fi
    sleep "$SECRETS_INTERVAL"
    waited=$((waited + SECRETS_INTERVAL))
  done
  unset PGPASSWORD
  [[ "$rc" == 0 ]] || die "the locked bootstrap phase failed"
}

main() {
  # The scheduled backup (lib/backup.sh), run by cron with its own environment.
  case "${GITLAB_CFN_PHASE:-}" in
    backup) backup_phase; return ;;
    backup-locked) backup_locked_phase; return ;;
  esac
  if [[ "${GITLAB_CFN_PHASE:-}" == locked ]]; then
    # Re-entered from psql while the lock is held: no signal from here, and the
    # database password stays with the session that holds the lock.
    CFN_RESOURCE=""
    unset PGPASSWORD
    required_env
    check_installed_version
    locked_phase
    return
  fi
  start_boot
  required_env
  check_installed_version
  load_secrets
  BUCKETS_REGION=$(buckets_region) || exit 1
  # Rendered whole first: a failed part writes no gitlab.rb (a pipe would install what came
  # before it), and the && chain keeps each part's status ($(...) does not inherit set -e).
  local rb
  rb=$(render_gitlab_rb && email_gitlab_rb "${EMAIL_SENDER:-}" && exporters_gitlab_rb "$ROLE")
  printf '%s\n' "$rb" | install_file 0600 /etc/gitlab/gitlab.rb
  bootstrap_under_lock
  if [[ "$ROLE" == gitlab-sidekiq ]]; then
    # No migrations and no one-time settings here: the application servers own them.
    gitlab-ctl reconfigure
    gitlab-ctl restart sidekiq
    wait_until_sidekiq_ready
    # No backup schedule here: the nightly gitlab-backup runs on the application servers
    # only (lib/backup.sh; they exist at every size and one of them takes the lock).
    configure_cloudwatch_agent sidekiq
    log "Sidekiq is configured and ready"
    return
  fi
  configure_sshd
  install_backup_schedule "$(readlink -f "$0")"
  wait_until_ready
  start_first_backup "$(readlink -f "$0")"
  configure_cloudwatch_agent gitlab-app
  log "GitLab is configured and ready"
}

# Sourced (tests render gitlab.rb this way), nothing runs; executed, the boot does.
(return 0 2>/dev/null) || main "$@"
