# shellcheck shell=bash
# Gitaly server: the repository data volume and the Gitaly role of the GitLab package.
#
# Finds the data volume by its volume id, formats it only when neither blkid
# nor wipefs finds any signature on it (never formats a volume that holds a
# filesystem, a partition table or anything unrecognised), mounts it by UUID
# on the repositories path, writes /etc/gitlab/gitlab.rb for a Gitaly-only
# server listening on 8075 with its auth token, reconfigures, and succeeds
# only once Gitaly accepts connections on its port.
#
# Expects from the preamble: AWS_REGION CFN_STACK CFN_RESOURCE GITLAB_DOMAIN
# GITALY_SECRET_ARN SHELL_SECRET_ARN DATA_VOLUME_ID LOG_GROUP_PREFIX, and GITALY_STORAGE.
#
# One server (no cluster): GITALY_STORAGE is 'default' and GITALY_SECRET_ARN the
# token the application servers hold. A node of a Gitaly Cluster: GITALY_STORAGE
# is the node's name in Praefect's virtual storage ('gitaly-1', ...; Praefect
# addresses a node's storage by that name) and GITALY_SECRET_ARN the Praefect
# internal token, the only token this node accepts (GitLab docs,
# doc/administration/gitaly/praefect/configure.md, "Gitaly": auth token =
# PRAEFECT_INTERNAL_TOKEN, storage name = the node's name in Praefect's configuration).
# A preamble written before the cluster existed has no GITALY_STORAGE: 'default'.
#
# Server-side repository backups (a Gitaly Cluster's nodes; optional BACKUP_BUCKET_NAME):
# see gitaly_backup_url below.

ROLE=gitaly
DATA_DIR=/var/opt/gitlab/git-data
GITALY_PORT=8075
GITALY_STORAGE=${GITALY_STORAGE:-default}
STORAGE_NAME='^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
# How long to wait for the volume to appear and for Gitaly to listen (seconds).
VOLUME_WAIT=${GITALY_VOLUME_WAIT:-300}
READY_TIMEOUT=${GITALY_READY_TIMEOUT:-300}

# The NVMe device of an EBS volume carries the volume id (without its dash)
# as serial number; older instance types show it under its xvd name.
find_data_device() {
  local id=${DATA_VOLUME_ID//-/} candidate
  for candidate in \
    "$ROOT/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${id}" \
    "$ROOT/dev/xvdf" "$ROOT/dev/sdf"; do
    if [[ -b "$candidate" ]]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

# wait_for_data_device: the device path once the volume is attached.
wait_for_data_device() {
  local deadline=$((SECONDS + VOLUME_WAIT)) device
  until device=$(find_data_device); do
    ((SECONDS < deadline)) || die "data volume $DATA_VOLUME_ID never appeared (waited ${VOLUME_WAIT}s)"
    sleep 1
  done
  printf '%s' "$device"
}

# probe_volume DEVICE: sets VOLUME_TYPE and VOLUME_UUID ("" and "" when the
# volume is blank); dies on anything that is neither blank nor one filesystem.
#
# blkid's exit status (util-linux 2.38, blkid(8) "EXIT STATUS",
# misc-utils/blkid.8.adoc): 0 something was identified, 2 nothing could be
# identified, 4 usage or other error, 8 ambivalent result of the low-level
# probe (-p), that is several colliding signatures.
probe_volume() {
  local device=$1 probe status=0 signatures pttype
  probe=$(blkid -p -o export "$device") || status=$?
  # wipefs lists every signature it knows, partition tables included (-n: no writes).
  signatures=$(wipefs -n -i -O TYPE,OFFSET "$device") ||
    die "wipefs cannot read data volume $DATA_VOLUME_ID ($device)"
  signatures=$(printf '%s' "$signatures" | tr -s ' \n' ' ' | sed 's/ $//')
  case $status in
    2)
      [[ -z "$signatures" ]] ||
        die "data volume $DATA_VOLUME_ID: blkid finds nothing but wipefs finds signatures ($signatures); not formatting it"
      VOLUME_TYPE='' VOLUME_UUID=''
      return 0
      ;;
    8) die "data volume $DATA_VOLUME_ID holds ambiguous signatures ($signatures); not formatting it" ;;
    0) ;;
    *) die "blkid cannot probe data volume $DATA_VOLUME_ID ($device): exit status $status" ;;
  esac
  VOLUME_TYPE=$(printf '%s\n' "$probe" | sed -n 's/^TYPE=//p')
  VOLUME_UUID=$(printf '%s\n' "$probe" | sed -n 's/^UUID=//p')
  pttype=$(printf '%s\n' "$probe" | sed -n 's/^PTTYPE=//p')
  if [[ -n "$pttype" ]]; then
    die "data volume $DATA_VOLUME_ID holds a $pttype partition table${VOLUME_TYPE:+ and a $VOLUME_TYPE filesystem}; gitlab-cfn uses the whole volume as one ext4 filesystem and formats only blank volumes"
  fi
  case $VOLUME_TYPE in
    ext4 | xfs) ;;
    '') die "data volume $DATA_VOLUME_ID holds signatures but no filesystem ($signatures); not formatting it" ;;
    *) die "data volume $DATA_VOLUME_ID holds $VOLUME_TYPE, which is not a filesystem gitlab-cfn mounts (ext4, xfs)" ;;
  esac
  [[ -n "$VOLUME_UUID" ]] || die "data volume $DATA_VOLUME_ID: its $VOLUME_TYPE filesystem has no UUID"
}

# write_fstab_entry UUID TYPE: one line mounting the volume by UUID on DATA_DIR
# (a line for DATA_DIR naming another filesystem is replaced).
write_fstab_entry() {
  local uuid=$1 type=$2 fstab="$ROOT/etc/fstab" line
  # nofail: a reboot without the volume still reaches Session Manager. A nofail mount is
  # not ordered before local-fs.target (systemd.mount(5), "nofail"), and GitLab's services
  # start from gitlab-runsvdir.service, ordered only after multi-user.target (omnibus-gitlab
  # files/gitlab-cookbooks/package/templates/gitlab-runsvdir.service.erb): without the
  # x-systemd options Gitaly could start on the empty folder of the root volume and take
  # writes there. With them the volume is mounted before GitLab starts, and GitLab does
  # not start without it (systemd.mount(5), x-systemd.before=, x-systemd.required-by=;
  # mount(8) passes x-* options to no filesystem).
  line="UUID=$uuid $DATA_DIR $type defaults,nofail,noatime,x-systemd.before=gitlab-runsvdir.service,x-systemd.required-by=gitlab-runsvdir.service 0 2"
  touch "$fstab"
  if grep -qxF "$line" "$fstab"; then
    return 0
  fi
  { awk -v dir="$DATA_DIR" '$2 != dir' "$fstab"; printf '%s\n' "$line"; } | install_file 0644 "$fstab"
}

prepare_data_volume() {
  local device mounted
  device=$(wait_for_data_device)
  probe_volume "$device"
  if [[ -z "$VOLUME_TYPE" ]]; then
    log "data volume $DATA_VOLUME_ID is blank (no signature, no partition table): formatting it"
    mkfs.ext4 -q -L gitaly-data "$device"
    probe_volume "$device"
  else
    log "data volume $DATA_VOLUME_ID holds $VOLUME_TYPE $VOLUME_UUID: keeping its data"
  fi
  write_fstab_entry "$VOLUME_UUID" "$VOLUME_TYPE"
  mkdir -p "$ROOT$DATA_DIR"
  if ! mountpoint -q "$ROOT$DATA_DIR"; then
    mount "$ROOT$DATA_DIR"
  fi
  mounted=$(findmnt -n -o UUID --mountpoint "$ROOT$DATA_DIR" || true)
  [[ "$mounted" == "$VOLUME_UUID" ]] ||
    die "$DATA_DIR holds filesystem ${mounted:-unknown}, not the data volume's $VOLUME_UUID"
  log "data volume $DATA_VOLUME_ID mounted on $DATA_DIR"
}

# Server-side repository backups (Gitaly Cluster): with BACKUP_BUCKET_NAME (the stack's
# backups bucket, given to the cluster's nodes), Gitaly streams each repository's backup
# straight to S3 when the nightly `gitlab-backup create REPOSITORIES_SERVER_SIDE=true` asks
# it to (lib/backup.sh), through the instance role (the Go Cloud S3 driver's default
# credentials; the gitaly tier's GitalyServerSideBackup grant). GitLab docs,
# doc/administration/gitaly/configure_gitaly.md "Configure server-side backups" /
# "Configure S3 storage": gitaly['configuration'] = { backup: { go_cloud_url:
# 's3://<bucket>?region=<region>' } }. The Linux package writes gitaly['configuration']
# whole into config.toml (omnibus-gitlab files/gitlab-cookbooks/gitaly/templates/default/
# gitaly-config.toml.erb: Tomlib.dump(@configuration), 18.11.11+ee.0 to 19.3.0+ee.0), so the
# key reaches Gitaly's [backup] section on every supported version (data/gitlab-rb-settings.json,
# beyond_template). The bucket is encrypted with the stack's key: S3 uses it for Gitaly.
GITALY_BACKUP_URL=""
BUCKET_NAME='^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'

# gitaly_backup_url BUCKET: the go_cloud_url of the backups bucket in this region.
gitaly_backup_url() {
  [[ "$1" =~ $BUCKET_NAME ]] || die "BACKUP_BUCKET_NAME: '$1' is not an S3 bucket name"
  printf 's3://%s?region=%s' "$1" "$AWS_REGION"
}

# gitaly_configuration_end: the exporter line of gitaly['configuration'] (with a monitoring
# server), the backup line (with a URL) and the hash's closing brace (the single server's
# gitlab.rb stays as it was).
gitaly_configuration_end() {
  exporter_configuration_key 9236 || return
  if [[ -n "$GITALY_BACKUP_URL" ]]; then
    printf '  backup: { go_cloud_url: %s },\n' "$(ruby_string "$GITALY_BACKUP_URL")"
  fi
  printf '}'
}

# render_gitlab_rb: fails (and prints nothing) when a part fails, such as a missing private
# address for the exporters: the parts are computed before the heredoc, whose substitutions
# would lose their exit status (lib/exporters.sh).
render_gitlab_rb() {
  local exporters end
  exporters=$(exporters_gitlab_rb gitaly) || return
  end=$(gitaly_configuration_end) || return
  cat <<RUBY
# Written at boot by gitlab-cfn; edits are overwritten on the next boot.
# A Gitaly-only server: nothing else of the GitLab package runs here.
$(gitlab_rb_other_services_off)
$exporters

# Secret of Gitaly's calls back into GitLab (the gitlab_shell secret of the application servers).
gitaly['gitlab_secret'] = $(ruby_string "$SHELL_SECRET")
gitaly['configuration'] = {
  listen_addr: $(ruby_string "0.0.0.0:$GITALY_PORT"),
  auth: { token: $(ruby_string "$GITALY_TOKEN") },
  gitlab: { url: $(ruby_string "https://$GITLAB_DOMAIN") },
  storage: [{ name: $(ruby_string "$GITALY_STORAGE"), path: $(ruby_string "$DATA_DIR/repositories") }],
$end
RUBY
}

# wait_for_gitaly: succeeds once something accepts TCP connections on
# GITALY_PORT. `gitaly check` is no help here: it tests Gitaly's calls back
# into GitLab, which need the application servers (GitLab docs,
# administration/gitaly/configure_gitaly.md).
wait_for_gitaly() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until (exec 3<>"/dev/tcp/127.0.0.1/$GITALY_PORT") 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "gitlab-ctl status gitaly: $(gitlab-ctl status gitaly 2>&1 || true)"
      die "Gitaly does not accept connections on port $GITALY_PORT after ${READY_TIMEOUT}s (see /var/log/gitlab/gitaly/current)"
    fi
    sleep 1
  done
}

main() {
  local rb
  start_boot
  require_env AWS_REGION CFN_STACK GITLAB_DOMAIN GITALY_SECRET_ARN SHELL_SECRET_ARN DATA_VOLUME_ID LOG_GROUP_PREFIX
  [[ "$GITALY_STORAGE" =~ $STORAGE_NAME ]] ||
    die "GITALY_STORAGE: '$GITALY_STORAGE' is not a storage name (default, or a cluster node's name such as gitaly-1)"
  GITALY_TOKEN=$(secret_field "$GITALY_SECRET_ARN" token)
  SHELL_SECRET=$(secret_field "$SHELL_SECRET_ARN" token)
  [[ -n "$GITALY_TOKEN" && -n "$SHELL_SECRET" ]] || die "a secret read from Secrets Manager is empty"
  if [[ -n "${BACKUP_BUCKET_NAME:-}" ]]; then
    GITALY_BACKUP_URL=$(gitaly_backup_url "$BACKUP_BUCKET_NAME")
  fi
  prepare_data_volume
  # Rendered whole first: a failed render writes no gitlab.rb (a pipe would install what came before).
  rb=$(render_gitlab_rb)
  printf '%s\n' "$rb" | install_file 0600 "$ROOT/etc/gitlab/gitlab.rb"
  gitlab-ctl reconfigure
  wait_for_gitaly
  log "Gitaly accepts connections on port $GITALY_PORT"
  configure_cloudwatch_agent gitaly
}

main "$@"
