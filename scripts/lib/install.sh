# shellcheck shell=bash
# Installs what a stock image lacks (bastions, the AMI builder); after lib/common.sh.

# Instance metadata through IMDSv2 (the launch templates require tokens).
imds() {
  local token
  token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# cfn-signal, from AWS's CloudFormation helper scripts, in its own virtualenv.
install_cfn_bootstrap() {
  if command -v cfn-signal >/dev/null; then
    return
  fi
  log "installing the CloudFormation helper scripts"
  retry 5 10 apt-get update -q
  DEBIAN_FRONTEND=noninteractive retry 5 10 apt-get install -y -q python3-venv
  python3 -m venv "$ROOT/opt/aws/cfn-bootstrap"
  retry 5 10 "$ROOT/opt/aws/cfn-bootstrap/bin/pip" install -q \
    "https://s3.amazonaws.com/cloudformation-examples/aws-cfn-bootstrap-py3-latest.tar.gz"
  mkdir -p "$ROOT/opt/aws/bin"
  ln -sf "$ROOT"/opt/aws/cfn-bootstrap/bin/cfn-* "$ROOT/opt/aws/bin/"
}

# The GitLab minors gitlab-cfn supports, oldest first: the same list as
# SUPPORTED_MINORS in templates_src/gitlab_cfn/compile/versions.py (a test
# keeps the two in agreement).
GITLAB_SUPPORTED_MINORS=(18.11 19.0 19.1 19.2 19.3)

# check_supported_gitlab VERSION: dies unless VERSION is X.Y.Z of a supported minor.
check_supported_gitlab() {
  local version=$1 minor supported
  [[ "$version" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]] ||
    die "GitLab version '$version' is not X.Y.Z (for example ${GITLAB_SUPPORTED_MINORS[-1]}.0)"
  minor="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
  for supported in "${GITLAB_SUPPORTED_MINORS[@]}"; do
    [[ "$supported" != "$minor" ]] || return 0
  done
  die "GitLab $version is not supported; gitlab-cfn supports ${GITLAB_SUPPORTED_MINORS[0]}.x to ${GITLAB_SUPPORTED_MINORS[-1]}.x (${GITLAB_SUPPORTED_MINORS[*]})"
}

# configure_gitlab_repository EDITION: GitLab's apt repository, signed by its
# key, for the install and for later in-place upgrades
# (apt-get install gitlab-ee=X.Y.Z-ee.0). File and key names are those of
# GitLab's own setup script
# (https://packages.gitlab.com/install/repositories/gitlab/gitlab-ee/script.deb.sh;
# the format is quoted in gitlab-org/omnibus-gitlab issue 9429), so the file a
# GitLab image already carries is replaced, not duplicated.
configure_gitlab_repository() {
  local edition=$1 name distro codename keyring armored gnupg
  name="gitlab_gitlab-${edition}"
  keyring="/usr/share/keyrings/${name}-archive-keyring.gpg"
  distro=$(sed -n 's/^ID=//p' "$ROOT/etc/os-release" | tr -d '"')
  codename=$(sed -n 's/^VERSION_CODENAME=//p' "$ROOT/etc/os-release" | tr -d '"')
  [[ "$distro" == ubuntu || "$distro" == debian ]] || die "/etc/os-release: GitLab's repository has no packages for '$distro'"
  [[ -n "$codename" ]] || die "/etc/os-release names no VERSION_CODENAME"
  armored="$STATE_DIR/${name}.asc"
  gnupg=$(mktemp -d "$STATE_DIR/gnupg.XXXXXX")
  retry 5 10 curl -fsSL -o "$armored" "https://packages.gitlab.com/gitlab/gitlab-${edition}/gpgkey"
  mkdir -p "$ROOT/usr/share/keyrings"
  gpg --homedir "$gnupg" --batch --yes --dearmor -o "$ROOT$keyring" "$armored"
  chmod 0644 "$ROOT$keyring"
  rm -rf "$gnupg" "$armored"
  printf 'deb [signed-by=%s] https://packages.gitlab.com/gitlab/gitlab-%s/%s/ %s main\n' \
    "$keyring" "$edition" "$distro" "$codename" | install_file 0644 "$ROOT/etc/apt/sources.list.d/${name}.list"
  retry 5 10 apt-get update -q
}
