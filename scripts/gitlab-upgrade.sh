#!/bin/bash
# shellcheck shell=bash
# Run on a GitLab server through SSM Run Command by `gitlab-cfn upgrade`; the
# command sends this file's text and runs it with bash, so it depends on
# nothing but the GitLab package and the system.
#
#   gitlab-upgrade.sh package VERSION [PORT]
#                                          install exactly VERSION of the GitLab
#                                          package in place, reconfigure; with PORT
#                                          (Gitaly's), restart Gitaly gracefully and
#                                          wait until PORT accepts connections again
#                                          (the repository servers, never replaced)
#   gitlab-upgrade.sh post-deployment-migrations
#                                          the post-deployment migrations, once,
#                                          after every Rails server runs the new version
#
# GitLab's zero-downtime upgrade for multi-node Linux package installations
# (gitlab docs, doc/update/zero_downtime.md): create /etc/gitlab/skip-auto-reconfigure
# so the package does not reconfigure or migrate on its own, upgrade Gitaly
# first, then the Rails nodes (their regular migrations run with
# SKIP_POST_DEPLOYMENT_MIGRATIONS=true), and finally run `gitlab-rake db:migrate`
# once for the post-deployment migrations. With a Gitaly Cluster, GitLab's order is
# Gitaly, Praefect, Rails, Sidekiq ("Upgrade order"): the Gitaly nodes here, one at a
# time; the Praefect servers are not upgraded in place but replaced by their Auto
# Scaling group's rolling update in the same stack update as the Rails servers, before
# them, each new server running Praefect's migrations under the bootstrap lock at boot
# (scripts/praefect.sh; docs/gitaly-cluster.md, "Upgrading a cluster").

set -euo pipefail

ROOT="${GITLAB_CFN_ROOT:-}"
VERSION_PATTERN='^[0-9]+\.[0-9]+\.[0-9]+$'

log() {
  printf '%s gitlab-cfn[upgrade]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

installed_package() {
  local edition
  for edition in ee ce; do
    if dpkg-query -W -f '${Status}' "gitlab-$edition" 2>/dev/null | grep -q 'install ok installed'; then
      printf 'gitlab-%s' "$edition"
      return 0
    fi
  done
  return 1
}

# install_package VERSION: exactly VERSION of the installed edition, without the
# package reconfiguring on its own; then reconfigure.
install_package() {
  local version=$1 package edition installed
  [[ "$version" =~ $VERSION_PATTERN ]] || die "not a GitLab version: $version"
  package=$(installed_package) || die "no GitLab package is installed"
  edition=${package#gitlab-}
  installed=$(dpkg-query -W -f '${Version}' "$package")
  if [[ "$installed" == "$version-$edition.0" ]]; then
    log "$package $installed is already installed"
  else
    log "upgrading $package $installed to $version-$edition.0"
    touch "$ROOT/etc/gitlab/skip-auto-reconfigure"
    # Ubuntu's apt-daily and unattended-upgrades hold the dpkg lock at boot and daily:
    # wait for it rather than fail (apt.conf(5), DPkg::Lock::Timeout).
    apt-get -o DPkg::Lock::Timeout=600 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
      -o Dpkg::Options::=--force-confold "$package=$version-$edition.0"
  fi
  gitlab-ctl reconfigure
}

upgrade_package() {
  local version=$1 port=${2:-} package
  install_package "$version"
  package=$(installed_package)
  # The new Gitaly binary takes over without dropping connections: Gitaly's graceful
  # restart on SIGHUP (gitlab docs, doc/administration/gitaly/configure_gitaly.md,
  # "gitlab-ctl hup gitaly"); a full restart would fail every repository call meanwhile.
  if [[ -n "$port" ]]; then
    gitlab-ctl hup gitaly
    wait_for_port "$port"
  fi
  log "$package is at $(dpkg-query -W -f '${Version}' "$package")"
}

# wait_for_port PORT: until a local TCP connection to PORT succeeds (5 minutes at most).
wait_for_port() {
  local port=$1 n
  for ((n = 0; n < ${GITLAB_CFN_PORT_WAIT:-60}; n++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      log "port $port accepts connections"
      return 0
    fi
    sleep 5
  done
  die "nothing accepts connections on port $port after the upgrade"
}

post_deployment_migrations() {
  log "running the post-deployment migrations"
  gitlab-rake db:migrate
  log "post-deployment migrations done"
}

main() {
  case "${1:-}" in
    package) upgrade_package "${2:-}" "${3:-}" ;;
    post-deployment-migrations) post_deployment_migrations ;;
    *) die "usage: gitlab-upgrade.sh package VERSION [PORT] | post-deployment-migrations" ;;
  esac
}

main "$@"
