# shellcheck shell=bash
# Gitaly server: the repository data volume and the Gitaly role of the GitLab package.
#
# Finds the data volume by its volume id, formats it only when it has no
# filesystem (never reformats data), mounts it by UUID on the repositories
# path, writes /etc/gitlab/gitlab.rb for a Gitaly-only server listening on
# 8075 with its auth token, and reconfigures.
#
# Expects from the preamble: AWS_REGION CFN_STACK CFN_RESOURCE GITLAB_DOMAIN
# GITALY_SECRET_ARN SHELL_SECRET_ARN DATA_VOLUME_ID.

ROLE=gitaly
DATA_DIR=/var/opt/gitlab/git-data
GITALY_PORT=8075

# The NVMe device of an EBS volume carries the volume id (without its dash)
# as serial number; older instance types show it under its xvd name.
find_data_device() {
  local id=${DATA_VOLUME_ID//-/} candidate
  for candidate in \
    "$ROOT/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${id}" \
    "$ROOT/dev/xvdf" "$ROOT/dev/sdf"; do
    if [[ -b "$candidate" || -f "$candidate" ]]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

prepare_data_volume() {
  local device fstype uuid
  device=$(retry 60 5 find_data_device) || die "data volume $DATA_VOLUME_ID never appeared"
  fstype=$(blkid -o value -s TYPE "$device" || true)
  if [[ -z "$fstype" ]]; then
    log "data volume $DATA_VOLUME_ID has no filesystem: formatting it"
    mkfs.ext4 -q -L gitaly-data "$device"
  else
    log "data volume $DATA_VOLUME_ID already holds $fstype: keeping its data"
  fi
  uuid=$(blkid -o value -s UUID "$device")
  [[ -n "$uuid" ]] || die "data volume $DATA_VOLUME_ID has no filesystem UUID"
  mkdir -p "$ROOT$DATA_DIR"
  touch "$ROOT/etc/fstab"
  if ! grep -q "^UUID=$uuid " "$ROOT/etc/fstab"; then
    printf 'UUID=%s %s ext4 defaults,nofail,noatime 0 2\n' "$uuid" "$DATA_DIR" >>"$ROOT/etc/fstab"
    log "added $DATA_DIR to fstab"
  fi
  if ! mountpoint -q "$ROOT$DATA_DIR"; then
    mount "$ROOT$DATA_DIR"
  fi
}

render_gitlab_rb() {
  cat <<RUBY
# Written at boot by gitlab-cfn; edits are overwritten on the next boot.
# A Gitaly-only server: nothing else of the GitLab package runs here.
postgresql['enable'] = false
redis['enable'] = false
nginx['enable'] = false
puma['enable'] = false
sidekiq['enable'] = false
gitlab_workhorse['enable'] = false
prometheus['enable'] = false
alertmanager['enable'] = false
gitlab_exporter['enable'] = false
gitlab_kas['enable'] = false
letsencrypt['enable'] = false
gitlab_rails['auto_migrate'] = false

# Secret of Gitaly's calls back into GitLab (the gitlab_shell secret of the application servers).
gitaly['gitlab_secret'] = $(ruby_string "$SHELL_SECRET")
gitaly['configuration'] = {
  listen_addr: $(ruby_string "0.0.0.0:$GITALY_PORT"),
  auth: { token: $(ruby_string "$GITALY_TOKEN") },
  gitlab: { url: $(ruby_string "https://$GITLAB_DOMAIN") },
  storage: [{ name: 'default', path: $(ruby_string "$DATA_DIR/repositories") }],
}
RUBY
}

main() {
  start_boot
  require_env AWS_REGION CFN_STACK GITLAB_DOMAIN GITALY_SECRET_ARN SHELL_SECRET_ARN DATA_VOLUME_ID
  GITALY_TOKEN=$(secret_field "$GITALY_SECRET_ARN" token)
  SHELL_SECRET=$(secret_field "$SHELL_SECRET_ARN" token)
  [[ -n "$GITALY_TOKEN" && -n "$SHELL_SECRET" ]] || die "a secret read from Secrets Manager is empty"
  prepare_data_volume
  render_gitlab_rb | install_file 0600 "$ROOT/etc/gitlab/gitlab.rb"
  gitlab-ctl reconfigure
  retry 30 5 gitlab-ctl status gitaly >/dev/null || die "gitaly is not running"
  log "Gitaly listens on $GITALY_PORT"
}

main "$@"
