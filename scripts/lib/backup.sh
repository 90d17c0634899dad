# shellcheck shell=bash
# GitLab's scheduled backup, on exactly one GitLab server: every server schedules it,
# and at run time a PostgreSQL advisory lock (BACKUP_LOCK_KEY, on the stack's RDS
# database) lets the first one run it and the others skip. After lib/common.sh.
#
# What the backup holds: GitLab's backup of the repositories (gitlab-backup create),
# uploaded to the backups bucket by GitLab itself through the instance role
# (gitlab_rails['backup_upload_connection'] with use_iam_profile, written by gitlab-app.sh).
# Skipped, as GitLab's guidance for RDS and S3 says
# (https://docs.gitlab.com/administration/backup_restore/backup_large_reference_architectures/:
# the database by AWS's own backups, since pg_dump does not suit large databases; object
# storage by its own protection, here S3 versioning):
# the database and every object-storage kind (SKIP names from
# https://docs.gitlab.com/administration/backup_restore/backup_gitlab/#excluding-specific-data-from-the-backup).
# Each run publishes BackupSucceeded (1 or 0) in the stack's namespace; the monitoring
# tier's BackupAlarm goes to ALARM on a 0, and to INSUFFICIENT_DATA (notified too) when no
# run reported for 27 hours (late or stopped).
#
# The stack's first backup: a new alarm sits in INSUFFICIENT_DATA and acts only on a change of
# state, so a schedule broken from day one would never be heard. The application server that
# publishes the stack's gitlab-secrets.json first (under the bootstrap lock: the first server
# of a new stack, the one that seeds the database, or of a restored one) asks for one real
# backup at the end of its first boot (request_first_backup, then start_first_backup once
# GitLab answers): the cron job's command, started in the background under the backup lock,
# whose result turns the alarm OK (or ALARM); if the nightly runs never follow, 27 hours of
# silence then turn it INSUFFICIENT_DATA, which notifies. Nothing is published that did not
# happen. It runs on the instance after the boot script ends: cloud-init's final stage
# (cloud-final.service) has KillMode=process (canonical/cloud-init
# systemd/cloud-final.service.tmpl), so the boot's background processes live on.
#
# Gitaly Cluster (BACKUP_SERVER_SIDE=true, from the app tier when every storage is a cluster
# node): `gitlab-backup create REPOSITORIES_SERVER_SIDE=true` makes each Gitaly node stream
# the repositories it hosts straight to the backups bucket (its go_cloud_url, scripts/gitaly.sh),
# and the archive GitLab uploads holds only the metadata the restore needs
# (https://docs.gitlab.com/administration/backup_restore/backup_gitlab/#create-server-side-repository-backups;
# backup_large_reference_architectures.md, "Configure backup of Git repositories").
# A Gitaly node without a destination refuses: Gitaly's BackupRepository answers
# FailedPrecondition "backup repository: server-side backups are not configured" when it has no
# backup sink (gitlab-org/gitaly internal/gitaly/service/repository/backup_repository.go), which
# gitaly-backup prints on its stderr, left to gitlab-backup's (gitlabhq lib/backup/gitaly_backup.rb:
# Open3.popen2, then "gitaly-backup exit status N" fails the backup). That is a cluster updated from before
# server-side backups whose nodes have not re-run their boot script (docs/operations.md):
# the run then backs the repositories up the normal way, through Praefect and this server,
# says so in its log, publishes BackupSucceeded of that backup (the truth: the repositories are
# backed up) and BackupServerSideUnavailable 1 (0 after a server-side backup that worked).
# Any other failure is a failure (BackupSucceeded 0), with no second attempt.

BACKUP_LOCK_KEY=80751002  # pg_try_advisory_lock key of the scheduled backup
BACKUP_SKIP=db,uploads,builds,artifacts,lfs,terraform_state,registry,pages,packages,ci_secure_files,external_diffs
BACKUP_CRON=/etc/cron.d/gitlab-cfn-backup
BACKUP_ENV=/etc/gitlab-cfn/backup.env
BACKUP_LOG=/var/log/gitlab-cfn-backup.log
# 02:30 UTC daily (cron runs in the server's zone, UTC on the stack's images).
BACKUP_SCHEDULE="${GITLAB_CFN_BACKUP_SCHEDULE:-30 2 * * *}"
# What a Gitaly node without a backup sink answers (backup_repository.go, above).
BACKUP_NO_DESTINATION='server-side backups are not configured'

# backup_metric VALUE [NAME]: NAME (BackupSucceeded) in the stack's namespace (the CloudWatch
# agent's policy allows PutMetricData there only).
backup_metric() {
  local stack=${LOG_GROUP_PREFIX#/gitlab-cfn/}
  stack=${stack%/*}
  aws_call cloudwatch put-metric-data --region "$AWS_REGION" --namespace "gitlab-cfn/$stack" \
    --metric-name "${2:-BackupSucceeded}" --dimensions "Stack=$stack" --unit Count --value "$1"
}

# backup_server_side OPTIONS...: gitlab-backup create REPOSITORIES_SERVER_SIDE=true OPTIONS, or,
# when the Gitaly nodes have no backup destination, the normal repository backup instead.
backup_server_side() {
  local status=0 out
  out=$(mktemp "$STATE_DIR/backup-output.XXXXXX")
  log "this server holds the backup lock: running gitlab-backup create REPOSITORIES_SERVER_SIDE=true $*"
  gitlab-backup create REPOSITORIES_SERVER_SIDE=true "$@" 2>&1 | tee "$out" >&2 || status=$?
  if ((status == 0)); then
    rm -f "$out"
    backup_metric 0 BackupServerSideUnavailable || true
    return 0
  fi
  if ! grep -qF "$BACKUP_NO_DESTINATION" "$out"; then
    rm -f "$out"
    return "$status"
  fi
  rm -f "$out"
  log "warning: the Gitaly nodes have no server-side backup destination (Gitaly: '$BACKUP_NO_DESTINATION'): their boot script has not run since the stack gained server-side backups; run it on each node (docs/operations.md, \"Updating a stack built before these tiers\")"
  backup_metric 1 BackupServerSideUnavailable || true
  log "backing up the repositories through Praefect instead: gitlab-backup create $*"
  gitlab-backup create "$@"
}

# backup_locked_phase: what the lock holder runs (from psql, while it holds the lock).
backup_locked_phase() {
  local status=0
  unset PGPASSWORD
  local options=("SKIP=$BACKUP_SKIP" CRON=1)
  if [[ "${BACKUP_SERVER_SIDE:-}" == true ]]; then
    backup_server_side "${options[@]}" || status=$?
  else
    log "this server holds the backup lock: running gitlab-backup create ${options[*]}"
    gitlab-backup create "${options[@]}" || status=$?
  fi
  if ((status == 0)); then
    log "backup done and uploaded to $BUCKET_BACKUPS"
    backup_metric 1
  else
    log "error: gitlab-backup create failed (exit code $status)"
    backup_metric 0 || true
  fi
  return "$status"
}

# backup_under_lock: runs the backup if no other server runs it now; exit status of the
# backup, 0 when skipped.
backup_under_lock() {
  local rc_file="$STATE_DIR/backup.rc" self conn
  self=$(printf '%q' "$0")
  mkdir -p "$STATE_DIR"
  rm -f "$rc_file"
  export PGPASSWORD="$DB_PASSWORD"
  conn="host=$DB_HOST port=$DB_PORT dbname=$DB_NAME user=$DB_USER sslmode=require connect_timeout=10 application_name=gitlab-cfn-backup-$(hostname)"
  "$PSQL" "$conn" -v ON_ERROR_STOP=1 -q -o /dev/null <<SQL || die "database $DB_HOST:$DB_PORT is not reachable for the backup lock"
SELECT pg_try_advisory_lock($BACKUP_LOCK_KEY) AS got \\gset
\\if :got
\\! GITLAB_CFN_PHASE=backup-locked bash $self </dev/null; echo \$? > $(printf '%q' "$rc_file")
SELECT pg_advisory_unlock($BACKUP_LOCK_KEY);
\\endif
SQL
  unset PGPASSWORD
  if [[ ! -e "$rc_file" ]]; then
    log "another server holds the backup lock: this one skips the backup"
    return 0
  fi
  return "$(cat "$rc_file")"
}

# backup_phase: the cron job's entry (GITLAB_CFN_PHASE=backup): the database user from
# its secret, then the backup if this server takes the lock.
backup_phase() {
  local db
  require_env AWS_REGION DB_HOST DB_PORT DB_NAME DB_SECRET_ARN BUCKET_BACKUPS LOG_GROUP_PREFIX
  db=$(secret_string "$DB_SECRET_ARN")
  DB_USER=$(printf '%s' "$db" | json_field username)
  DB_PASSWORD=$(printf '%s' "$db" | json_field password)
  [[ -n "$DB_PASSWORD" ]] || die "the database secret read from Secrets Manager is empty"
  backup_under_lock
}

# install_backup_schedule PROGRAM: the cron entry running PROGRAM's backup phase, with
# the values it needs (ARNs and names, never a secret's value).
install_backup_schedule() {
  local program=$1 name
  [[ -z "${BACKUP_SERVER_SIDE:-}" || "$BACKUP_SERVER_SIDE" == true ]] ||
    die "BACKUP_SERVER_SIDE: '$BACKUP_SERVER_SIDE' is not 'true' (or unset: repositories through this server)"
  {
    for name in AWS_REGION DB_HOST DB_PORT DB_NAME DB_SECRET_ARN BUCKET_BACKUPS LOG_GROUP_PREFIX; do
      printf 'export %s=%q\n' "$name" "${!name}"
    done
    if [[ "${BACKUP_SERVER_SIDE:-}" == true ]]; then
      printf 'export BACKUP_SERVER_SIDE=true\n'
    fi
  } | install_file 0600 "$ROOT$BACKUP_ENV"
  printf '# gitlab-cfn: GitLab backup, on whichever server takes the lock first.\n%s root . %s && GITLAB_CFN_PHASE=backup bash %q >>%s 2>&1\n' \
    "$BACKUP_SCHEDULE" "$BACKUP_ENV" "$program" "$BACKUP_LOG" | install_file 0644 "$ROOT$BACKUP_CRON"
}

# request_first_backup: called by the locked phase of the server that publishes the stack's
# gitlab-secrets.json first; start_first_backup, at the end of its boot, runs what it asks.
request_first_backup() {
  mkdir -p "$STATE_DIR"
  : >"$STATE_DIR/first-backup"
}

# start_first_backup PROGRAM: when asked (request_first_backup), once: the cron job's command
# (install_backup_schedule: its environment file, PROGRAM's backup phase, its log), started in
# a session of its own in the background; the boot does not wait for it.
start_first_backup() {
  local program=$1 request="$STATE_DIR/first-backup"
  [[ -e "$request" ]] || return 0
  rm -f "$request"
  mkdir -p "$(dirname "$ROOT$BACKUP_LOG")"
  log "this server made the stack's GitLab: starting its first backup in the background (log: $BACKUP_LOG), so that BackupAlarm hears from the backups before the first night"
  # shellcheck disable=SC2016  # expanded by the started shell
  setsid bash -c '. "$1" && GITLAB_CFN_PHASE=backup exec bash "$2"' first-backup "$ROOT$BACKUP_ENV" "$program" \
    </dev/null >>"$ROOT$BACKUP_LOG" 2>&1 &
}
