# shellcheck shell=bash
# AMI builder: prepares an instance to become the GitLab AMI.
#
# Installs the AWS CLI and the CloudFormation helper scripts (the boot scripts
# need both); on a plain Ubuntu source also the GitLab package at the chosen
# version. Then tags its own instance gitlab-cfn:bake=success (or =failed),
# which is what `gitlab-cfn bake-ami` waits for before creating the image.
#
# Expects from the preamble: AWS_REGION GITLAB_VERSION GITLAB_EDITION BAKE_SOURCE.

ROLE=bake

report() {
  local status=$? result=success instance
  trap - EXIT
  ((status == 0)) || result=failed
  log "bake $result (exit code $status)"
  if ! instance=$(imds instance-id) ||
    ! retry 10 6 aws ec2 create-tags --region "$AWS_REGION" --resources "$instance" \
      --tags "Key=gitlab-cfn:bake,Value=$result"; then
    log "could not report the result"
  fi
  exit "$status"
}

install_aws_cli() {
  if command -v aws >/dev/null; then
    return
  fi
  retry 5 10 snap install aws-cli --classic
  ln -sf /snap/bin/aws "$ROOT/usr/local/bin/aws"
}

install_gitlab_package() {
  local package="gitlab-${GITLAB_EDITION}"
  retry 5 10 curl -fsSL -o "$STATE_DIR/gitlab-repo.sh" \
    "https://packages.gitlab.com/install/repositories/gitlab/${package}/script.deb.sh"
  bash "$STATE_DIR/gitlab-repo.sh"
  # No EXTERNAL_URL: the package installs without configuring; boot does that.
  DEBIAN_FRONTEND=noninteractive retry 5 10 apt-get install -y -q \
    "${package}=${GITLAB_VERSION}-${GITLAB_EDITION}.0"
}

main() {
  require_env AWS_REGION GITLAB_VERSION GITLAB_EDITION BAKE_SOURCE
  mkdir -p "$STATE_DIR"
  trap report EXIT
  retry 5 10 apt-get update -q
  install_aws_cli
  install_cfn_bootstrap
  if [[ "$BAKE_SOURCE" == ubuntu ]]; then
    install_gitlab_package
  fi
  local installed
  installed=$(dpkg-query -W -f '${Version}' "gitlab-${GITLAB_EDITION}")
  [[ "$installed" == "${GITLAB_VERSION}"* ]] ||
    die "gitlab-${GITLAB_EDITION} $installed is installed, not $GITLAB_VERSION"
  # The image must not carry this builder's state into every server.
  rm -f "$ROOT/etc/gitlab/initial_root_password"
  log "GitLab $installed is ready to be imaged"
}

main "$@"
