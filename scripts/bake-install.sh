# shellcheck shell=bash
# AMI builder: prepares an instance to become the GitLab AMI.
#
# Refuses a GitLab version gitlab-cfn does not support; installs the AWS CLI
# and the CloudFormation helper scripts (the boot scripts need both) and the
# CloudWatch agent (its signature checked);
# configures GitLab's signed apt repository (for in-place upgrades later); on
# a plain Ubuntu source also installs the GitLab package at the chosen
# version. Then removes everything GitLab's image and this builder's first
# boot leave behind, so that every server configures itself from scratch, and
# tags its own instance gitlab-cfn:bake=success (or =failed), which is what
# `gitlab-cfn bake-ami` waits for before creating the image.
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

# The CloudWatch agent, signature checked (docs/operations.md; AWS: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/download-CloudWatch-Agent-on-EC2-Instance-commandline-first.html).
CLOUDWATCH_AGENT_FINGERPRINT="${GITLAB_CFN_CLOUDWATCH_AGENT_FINGERPRINT:-937616F3450B7D806CBD9725D58167303B789C72}"

install_cloudwatch_agent() {
  local dir url gnupg fingerprint
  if dpkg-query -W -f '${Status}' amazon-cloudwatch-agent 2>/dev/null | grep -q 'install ok installed'; then
    return
  fi
  url="https://amazoncloudwatch-agent-${AWS_REGION}.s3.${AWS_REGION}.amazonaws.com/ubuntu/amd64/latest"
  dir=$(mktemp -d "$STATE_DIR/cloudwatch-agent.XXXXXX")
  retry 5 10 curl -fsSL -o "$dir/amazon-cloudwatch-agent.deb" "$url/amazon-cloudwatch-agent.deb"
  retry 5 10 curl -fsSL -o "$dir/amazon-cloudwatch-agent.deb.sig" "$url/amazon-cloudwatch-agent.deb.sig"
  retry 5 10 curl -fsSL -o "$dir/amazon-cloudwatch-agent.gpg" https://amazoncloudwatch-agent.s3.amazonaws.com/assets/amazon-cloudwatch-agent.gpg
  gnupg="$dir/gnupg"
  mkdir -m 700 "$gnupg"
  # --no-autostart: importing and verifying public keys needs no gpg-agent, and one started
  # here would outlive the bake (and the builder's image would keep its socket folder).
  gpg --homedir "$gnupg" --batch --no-autostart --quiet --import "$dir/amazon-cloudwatch-agent.gpg" 2>/dev/null ||
    die "the CloudWatch agent's key is not an OpenPGP key"
  fingerprint=$(gpg --homedir "$gnupg" --batch --no-autostart --with-colons --fingerprint | awk -F: '$1 == "fpr" {print $10; exit}')
  [[ "$fingerprint" == "$CLOUDWATCH_AGENT_FINGERPRINT" ]] ||
    die "the CloudWatch agent's signing key has fingerprint '$fingerprint', not AWS's $CLOUDWATCH_AGENT_FINGERPRINT"
  gpg --homedir "$gnupg" --batch --no-autostart -q --verify "$dir"/amazon-cloudwatch-agent.deb{.sig,} 2>/dev/null ||
    die "the CloudWatch agent package does not match its signature"
  dpkg -i -E "$dir/amazon-cloudwatch-agent.deb" >/dev/null
  rm -rf "$dir"
  log "installed the CloudWatch agent $(dpkg-query -W -f '${Version}' amazon-cloudwatch-agent)"
}

install_gitlab_package() {
  # No EXTERNAL_URL: the package installs without configuring; boot does that
  # (omnibus-gitlab files/gitlab-ctl-commands/upgrade.rb, external_url_unset?).
  DEBIAN_FRONTEND=noninteractive retry 5 10 apt-get install -y -q \
    "gitlab-${GITLAB_EDITION}=${GITLAB_VERSION}-${GITLAB_EDITION}.0"
}

# forget_first_boot: what GitLab's image and a first boot leave behind. Paths
# are those of omnibus-gitlab 19.3.0+ee.0; a server's own reconfigure makes
# every one of them again from its own gitlab.rb.
forget_first_boot() {
  # GitLab's image runs this on each new instance, before the user data: it
  # sets external_url to the instance's public name, the root password to the
  # instance id, and reconfigures with the bundled PostgreSQL
  # (support/packer/ami-startup-script.sh, installed by update-script-ee.sh).
  rm -f "$ROOT/var/lib/cloud/scripts/per-instance/gitlab"
  # Stop what that reconfigure started: runit services under /opt/gitlab/service
  # (package/attributes/default.rb, runit service_dir and sv_dir).
  if compgen -G "$ROOT/opt/gitlab/service/*" >/dev/null; then
    gitlab-ctl stop || log "warning: gitlab-ctl stop failed; removing the services anyway"
  fi
  rm -rf "$ROOT"/opt/gitlab/service/* "$ROOT"/opt/gitlab/sv/*
  # Chef's node state, named after this builder (gitlab-ctl-commands/lib/gitlab_ctl/util.rb).
  rm -f "$ROOT"/opt/gitlab/embedded/nodes/*.json
  # The local database and Redis, Gitaly's and Rails' secrets, the bootstrapped
  # marker (package/recipes/default.rb creates /var/opt/gitlab again).
  rm -rf "$ROOT/var/opt/gitlab" "$ROOT/var/log/gitlab"
  # gitlab.rb with the builder's external_url, gitlab-secrets.json,
  # initial_root_password, generated certificates.
  if [[ -d "$ROOT/etc/gitlab" ]]; then
    find "$ROOT/etc/gitlab" -mindepth 1 -delete
  fi
  # The builder's identity: SSH host keys (cloud-init makes new ones on each
  # new instance), logins, shell histories, this script's own state.
  rm -f "$ROOT"/etc/ssh/ssh_host_*
  rm -f "$ROOT/root/.ssh/authorized_keys" "$ROOT"/home/*/.ssh/authorized_keys
  rm -f "$ROOT"/root/.*_history "$ROOT"/home/*/.*_history
  rm -rf "$STATE_DIR"
  # cloud-init's record of this instance and its logs; a new machine-id at next boot.
  cloud-init clean --logs --machine-id
  log "removed the first boot's state: GitLab data, secrets, host keys, cloud-init instance state"
}

main() {
  trap report EXIT
  require_env AWS_REGION GITLAB_VERSION GITLAB_EDITION BAKE_SOURCE
  check_supported_gitlab "$GITLAB_VERSION"
  mkdir -p "$STATE_DIR"
  retry 5 10 apt-get update -q
  install_aws_cli
  install_cfn_bootstrap
  configure_gitlab_repository "$GITLAB_EDITION"
  if [[ "$BAKE_SOURCE" == ubuntu ]]; then
    install_gitlab_package
  fi
  local installed expected="${GITLAB_VERSION}-${GITLAB_EDITION}.0"
  installed=$(dpkg-query -W -f '${Version}' "gitlab-${GITLAB_EDITION}") ||
    die "gitlab-${GITLAB_EDITION} is not installed"
  [[ "$installed" == "$expected" ]] ||
    die "gitlab-${GITLAB_EDITION} $installed is installed, not $expected"
  check_supported_gitlab "${installed%%-*}"
  install_cloudwatch_agent
  forget_first_boot
  log "GitLab $installed is ready to be imaged"
}

main "$@"
