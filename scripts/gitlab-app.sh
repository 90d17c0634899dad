# shellcheck shell=bash
# GitLab application server: configures the custom AMI at boot.
# gitlab.rb for RDS, ElastiCache, Gitaly, S3 and proxied SSL; fast SSH key
# lookup; shared host keys. Under a PostgreSQL advisory lock, one server at a
# time: extensions, shared gitlab-secrets.json, reconfigure, migrations or
# seeding, one-time settings. Preamble variables: see required_env.

ROLE=gitlab-app
PSQL="${PSQL:-/opt/gitlab/embedded/bin/psql}"
LOCK_KEY=80751001  # pg_advisory_lock key of the gitlab-cfn bootstrap
BUCKET_KINDS=(artifacts external_diffs lfs uploads packages dependency_proxy terraform_state ci_secure_files pages)
HOST_KEY_TYPES=(ed25519 ecdsa rsa)

required_env() {
  require_env AWS_REGION CFN_STACK GITLAB_DOMAIN VPC_CIDR DB_HOST DB_PORT DB_NAME \
    DB_SECRET_ARN REDIS_HOST REDIS_PORT REDIS_SECRET_ARN GITALY_ADDRESS GITALY_SECRET_ARN \
    SHELL_SECRET_ARN RAILS_SECRETS_ARN HOST_KEYS_SECRET_ARN ROOT_PASSWORD_SECRET_ARN BUCKET_BACKUPS
  local kind
  for kind in "${BUCKET_KINDS[@]}"; do
    require_env "BUCKET_${kind^^}"
  done
}

load_secrets() {
  DB_USER=$(secret_field "$DB_SECRET_ARN" username)
  DB_PASSWORD=$(secret_field "$DB_SECRET_ARN" password)
  REDIS_TOKEN=$(secret_field "$REDIS_SECRET_ARN" token)
  GITALY_TOKEN=$(secret_field "$GITALY_SECRET_ARN" token)
  SHELL_SECRET=$(secret_field "$SHELL_SECRET_ARN" token)
  [[ -n "$DB_PASSWORD" && -n "$REDIS_TOKEN" && -n "$GITALY_TOKEN" && -n "$SHELL_SECRET" ]] ||
    die "a secret read from Secrets Manager is empty"
}

render_gitlab_rb() {
  local kind bucket
  cat <<RUBY
# Written at boot by gitlab-cfn; edits are overwritten on the next boot.
external_url $(ruby_string "https://$GITLAB_DOMAIN")

# TLS ends at the load balancer (guide: "Disable Let's Encrypt", "Add Support for Proxied SSL").
letsencrypt['enable'] = false
gitlab_rails['nginx']['listen_port'] = 80
gitlab_rails['nginx']['listen_https'] = false
gitlab_rails['nginx']['proxy_set_headers'] = { 'X-Forwarded-Proto' => 'https', 'X-Forwarded-Ssl' => 'on' }
gitlab_rails['nginx']['real_ip_trusted_addresses'] = [$(ruby_string "$VPC_CIDR")]
gitlab_rails['nginx']['real_ip_header'] = 'X-Forwarded-For'
gitlab_rails['nginx']['real_ip_recursive'] = 'on'
gitlab_rails['trusted_proxies'] = [$(ruby_string "$VPC_CIDR")]
# The load balancer's readiness checks come from the VPC.
gitlab_rails['monitoring_whitelist'] = ['127.0.0.0/8', '::1/128', $(ruby_string "$VPC_CIDR")]

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

# The Gitaly server.
gitaly['enable'] = false
gitlab_rails['gitaly_token'] = $(ruby_string "$GITALY_TOKEN")
gitlab_rails['repositories_storages'] = {
  'default' => { 'gitaly_address' => $(ruby_string "$GITALY_ADDRESS"), 'gitaly_token' => $(ruby_string "$GITALY_TOKEN") }
}

# S3 object storage through the instance profile: no keys anywhere.
gitlab_rails['object_store']['enabled'] = true
gitlab_rails['object_store']['proxy_download'] = false
gitlab_rails['object_store']['connection'] = { 'provider' => 'AWS', 'region' => $(ruby_string "$AWS_REGION"), 'use_iam_profile' => true }
RUBY
  for kind in "${BUCKET_KINDS[@]}"; do
    bucket="BUCKET_${kind^^}"
    printf "gitlab_rails['object_store']['objects']['%s']['bucket'] = %s\n" "$kind" "$(ruby_string "${!bucket}")"
  done
  cat <<RUBY
gitlab_rails['external_diffs_enabled'] = true
gitlab_rails['backup_upload_connection'] = { 'provider' => 'AWS', 'region' => $(ruby_string "$AWS_REGION"), 'use_iam_profile' => true }
gitlab_rails['backup_upload_remote_directory'] = $(ruby_string "$BUCKET_BACKUPS")
RUBY
}

configure_sshd() {
  install_file 0644 "$ROOT/etc/ssh/sshd_config.d/60-gitlab-cfn.conf" <<'SSHD'
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
    sshd -t
    systemctl try-reload-or-restart ssh
  fi
}

# The first server's host keys, kept in Secrets Manager for all others.
restore_or_publish_host_keys() {
  local json type dir="$ROOT/etc/ssh_static" out files=()
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
    install_file 0600 "$dir/ssh_host_${type}_key" <"$ROOT/etc/ssh/ssh_host_${type}_key"
    install_file 0644 "$dir/ssh_host_${type}_key.pub" <"$ROOT/etc/ssh/ssh_host_${type}_key.pub"
    files+=("ssh_host_${type}_key=$dir/ssh_host_${type}_key" "ssh_host_${type}_key.pub=$dir/ssh_host_${type}_key.pub")
  done
  out=$(mktemp "$STATE_DIR/host-keys.XXXXXX")
  files_json "${files[@]}" >"$out"
  put_secret_json "$HOST_KEYS_SECRET_ARN" "$out"
  rm -f "$out"
}

# gitlab-secrets.json (keys of encrypted columns) must match on every server:
# the first generates it around Gitaly's shell secret and publishes it.
restore_rails_secrets() {
  local content
  content=$(secret_field "$RAILS_SECRETS_ARN" gitlab-secrets.json)
  if [[ -n "$content" ]]; then
    printf '%s\n' "$content" | install_file 0600 "$ROOT/etc/gitlab/gitlab-secrets.json"
    PUBLISH_RAILS_SECRETS=0
  else
    log "no shared Rails secrets yet: this server generates them"
    SHELL_SECRET="$SHELL_SECRET" python3 - "$ROOT/etc/gitlab/gitlab-secrets.json" <<'PY'
import json, os, sys
path = sys.argv[1]
try:
    with open(path) as f:
        secrets = json.load(f)
except (FileNotFoundError, ValueError):
    secrets = {}
secrets.setdefault("gitlab_shell", {})["secret_token"] = os.environ["SHELL_SECRET"]
with open(path, "w") as f:
    json.dump(secrets, f, indent=2)
os.chmod(path, 0o600)
PY
    PUBLISH_RAILS_SECRETS=1
  fi
}

publish_rails_secrets() {
  local out
  out=$(mktemp "$STATE_DIR/rails-secrets.XXXXXX")
  files_json "gitlab-secrets.json=$ROOT/etc/gitlab/gitlab-secrets.json" >"$out"
  put_secret_json "$RAILS_SECRETS_ARN" "$out"
  rm -f "$out"
}

# What must not run on two servers at once; called from the psql session
# that holds the advisory lock (bootstrap_under_lock).
locked_phase() {
  load_secrets
  restore_or_publish_host_keys
  restore_rails_secrets
  gitlab-ctl reconfigure
  if ((PUBLISH_RAILS_SECRETS)); then
    publish_rails_secrets
  fi
  # Loads the schema and seeds an empty database, migrates an existing one.
  GITLAB_ROOT_PASSWORD=$(secret_field "$ROOT_PASSWORD_SECRET_ARN" password) \
    gitlab-rake gitlab:db:configure
  # Idempotent one-time settings: incremental job logs (several servers), no authorized_keys file.
  gitlab-rails runner \
    'Feature.enable(:ci_enable_live_trace) unless Feature.enabled?(:ci_enable_live_trace); ApplicationSetting.current.update!(authorized_keys_enabled: false)'
  gitlab-ctl restart
}

bootstrap_under_lock() {
  local rc_file="$STATE_DIR/locked-phase.rc" self
  self=$(printf '%q' "$0")
  export PGPASSWORD="$DB_PASSWORD"
  local conn="host=$DB_HOST port=$DB_PORT dbname=$DB_NAME user=$DB_USER sslmode=require connect_timeout=10"
  retry 30 10 "$PSQL" "$conn" -qtAc 'SELECT 1' >/dev/null || die "database $DB_HOST is not reachable"
  rm -f "$rc_file"
  log "waiting for the bootstrap lock"
  "$PSQL" "$conn" -v ON_ERROR_STOP=1 -q <<SQL
SELECT pg_advisory_lock($LOCK_KEY);
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gist;
\\! GITLAB_CFN_PHASE=locked $self; echo \$? > $(printf '%q' "$rc_file")
SELECT pg_advisory_unlock($LOCK_KEY);
SQL
  unset PGPASSWORD
  [[ "$(cat "$rc_file" 2>/dev/null)" == 0 ]] || die "the locked bootstrap phase failed"
}

main() {
  if [[ "${GITLAB_CFN_PHASE:-}" == locked ]]; then
    # Re-entered from psql while the lock is held: no signal from here.
    CFN_RESOURCE=""
    required_env
    locked_phase
    return
  fi
  start_boot
  required_env
  load_secrets
  render_gitlab_rb | install_file 0600 "$ROOT/etc/gitlab/gitlab.rb"
  configure_sshd
  bootstrap_under_lock
  log "GitLab is configured"
}

main "$@"
