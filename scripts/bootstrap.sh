# shellcheck shell=bash
# gitlab-cfn bootstrap: an instance's user data after the preamble (which exports
# AWS_REGION CFN_STACK CFN_RESOURCE BOOT_ROLE). Reads where the boot bundle is from the
# SSM parameter BUNDLE_PARAMETER, {"bucket", "key", "region", "sha256"} (a preamble's
# BUNDLE_SHA256 must match it), or from BUNDLE_BUCKET BUNDLE_KEY BUNDLE_REGION
# BUNDLE_SHA256; downloads and checks it, unpacks it under /opt/gitlab-cfn/boot/<sha256>/
# and runs its <role>.sh, which signals; failures before that are signalled here.
# GITLAB_CFN_ROOT prefixes every path (tests).

set -euo pipefail
shopt -s inherit_errexit

ROOT_PREFIX="${GITLAB_CFN_ROOT:-}"
BOOT_DIR="$ROOT_PREFIX/opt/gitlab-cfn/boot"
# Appended: what is on PATH comes first.
export PATH="$PATH:/opt/aws/bin:/snap/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

boot_log() {
  printf '%s gitlab-cfn[bootstrap]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

boot_die() {
  boot_log "error: $*"
  exit 1
}

# boot_retry ATTEMPTS DELAY COMMAND...
boot_retry() {
  local attempts=$1 delay=$2 n=1
  shift 2
  until "$@"; do
    if ((n >= attempts)); then
      return 1
    fi
    boot_log "retrying in ${delay}s ($n/$attempts): $1"
    n=$((n + 1))
    sleep "$delay"
  done
}

# boot_aws AWS-ARGS...: the AWS CLI, retried as aws_call does (scripts/lib/common.sh):
# AccessDenied (IAM propagating) for up to 600 s, other errors 12 times.
BOOT_DENIED_BUDGET="${GITLAB_CFN_DENIED_BUDGET:-600}"
BOOT_DENIED_DELAY="${GITLAB_CFN_DENIED_DELAY:-10}"
BOOT_QUICK_ATTEMPTS="${GITLAB_CFN_QUICK_ATTEMPTS:-12}"
boot_aws() {
  local err rc quick=1 waited=0 denied=$BOOT_DENIED_DELAY pause reason
  err=$(mktemp)
  while true; do
    rc=0
    aws "$@" 2>"$err" || rc=$?
    ((rc != 0)) || break
    reason=$(grep -m1 -o 'An error occurred.*' "$err" || tail -n1 "$err")
    if ((rc == 126 || rc == 127)); then
      break
    elif grep -q AccessDenied "$err"; then
      ((waited < BOOT_DENIED_BUDGET)) || break
      pause=$denied waited=$((waited + denied)) denied=$((denied * 2 > 60 ? 60 : denied * 2))
    else
      ((quick < BOOT_QUICK_ATTEMPTS)) || break
      pause=10 quick=$((quick + 1))
    fi
    boot_log "aws $1 $2: retrying in ${pause}s: $reason"
    sleep "$pause"
  done
  rm -f "$err"
  ((rc == 0)) || boot_log "aws $1 $2 failed: $reason"
  return "$rc"
}

# EXIT trap until the role script runs: a failure.
boot_signal_failure() {
  local status=$?
  trap - EXIT
  ((status != 0)) || status=1
  boot_log "bootstrap failed (exit code $status): signalling ${CFN_RESOURCE:-nothing}"
  if [[ -n "${CFN_RESOURCE:-}" ]]; then
    if command -v cfn-signal >/dev/null; then
      boot_retry 5 10 cfn-signal --exit-code "$status" --stack "$CFN_STACK" \
        --resource "$CFN_RESOURCE" --region "$AWS_REGION" || boot_log "cfn-signal failed"
    else
      boot_log "no cfn-signal: the stack fails at the signal timeout"
    fi
  fi
  exit "$status"
}

boot_require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || boot_die "$name is not set by the user data preamble"
  done
}

# The bastions' Ubuntu has neither tool; the GitLab image has both.
boot_install_tools() {
  if ! command -v cfn-signal >/dev/null; then
    boot_log "installing the CloudFormation helper scripts"
    boot_retry 5 10 apt-get update -q
    DEBIAN_FRONTEND=noninteractive boot_retry 5 10 apt-get install -y -q python3-venv
    python3 -m venv "$ROOT_PREFIX/opt/aws/cfn-bootstrap"
    boot_retry 5 10 "$ROOT_PREFIX/opt/aws/cfn-bootstrap/bin/pip" install -q \
      "https://s3.amazonaws.com/cloudformation-examples/aws-cfn-bootstrap-py3-latest.tar.gz"
    mkdir -p "$ROOT_PREFIX/opt/aws/bin"
    ln -sf "$ROOT_PREFIX"/opt/aws/cfn-bootstrap/bin/cfn-* "$ROOT_PREFIX/opt/aws/bin/"
  fi
  if ! command -v aws >/dev/null; then
    boot_log "installing the AWS CLI"
    boot_retry 5 10 snap install aws-cli --classic
  fi
}

# BUNDLE_PARAMETER -> BUNDLE_BUCKET BUNDLE_KEY BUNDLE_REGION BUNDLE_SHA256.
boot_read_location() {
  local json fields expected=${BUNDLE_SHA256:-}
  json=$(boot_aws ssm get-parameter --region "$AWS_REGION" \
    --name "$BUNDLE_PARAMETER" --query Parameter.Value --output text) ||
    boot_die "cannot read SSM parameter $BUNDLE_PARAMETER"
  fields=$(printf '%s' "$json" | python3 -c '
import json, sys
value = json.load(sys.stdin)
print("\t".join(str(value.get(k, "")) for k in ("bucket", "key", "region", "sha256")))' 2>/dev/null) ||
    boot_die "SSM parameter $BUNDLE_PARAMETER does not hold the bundle's location as JSON"
  IFS=$'\t' read -r BUNDLE_BUCKET BUNDLE_KEY BUNDLE_REGION BUNDLE_SHA256 <<<"$fields"
  # A preamble's BUNDLE_SHA256 (the launch template's) must be the parameter's.
  [[ -z "$expected" || "$BUNDLE_SHA256" == "$expected" ]] ||
    boot_die "SSM parameter $BUNDLE_PARAMETER names bundle '$BUNDLE_SHA256', the launch template $expected: not running it"
}

boot_check_location() {
  boot_require BUNDLE_BUCKET BUNDLE_KEY BUNDLE_REGION BUNDLE_SHA256
  [[ "$BUNDLE_SHA256" =~ ^[0-9a-f]{64}$ ]] || boot_die "BUNDLE_SHA256 is not a sha256 (got '$BUNDLE_SHA256')"
  [[ "$BUNDLE_KEY" == *"scripts/boot-$BUNDLE_SHA256.tar.gz" ]] ||
    boot_die "BUNDLE_KEY $BUNDLE_KEY does not name the bundle $BUNDLE_SHA256"
}

# boot_fetch FILE: the bundle, downloaded and checked against its sha256.
boot_fetch() {
  local file=$1 actual
  boot_log "downloading s3://$BUNDLE_BUCKET/$BUNDLE_KEY ($BUNDLE_REGION)"
  boot_aws s3api get-object --region "$BUNDLE_REGION" --bucket "$BUNDLE_BUCKET" \
    --key "$BUNDLE_KEY" "$file" >/dev/null ||
    boot_die "cannot download s3://$BUNDLE_BUCKET/$BUNDLE_KEY"
  actual=$(sha256sum "$file" | cut -d ' ' -f 1)
  [[ "$actual" == "$BUNDLE_SHA256" ]] ||
    boot_die "boot bundle s3://$BUNDLE_BUCKET/$BUNDLE_KEY has sha256 $actual, expected $BUNDLE_SHA256: not running it"
}

# boot_unpack FILE: into BOOT_UNPACKED, complete or not at all.
boot_unpack() {
  local file=$1 target="$BOOT_DIR/$BUNDLE_SHA256" staging
  mkdir -p "$BOOT_DIR"
  chmod 700 "$BOOT_DIR"
  staging=$(mktemp -d "$BOOT_DIR/.unpack.XXXXXX")
  tar -xzf "$file" -C "$staging" --no-same-owner --no-same-permissions
  [[ -f "$staging/$BOOT_ROLE.sh" ]] || boot_die "the boot bundle holds no $BOOT_ROLE.sh"
  rm -rf "$target"
  mv "$staging" "$target"
  BOOT_UNPACKED=$target
}

boot_main() {
  trap boot_signal_failure EXIT
  boot_require AWS_REGION CFN_STACK BOOT_ROLE
  boot_install_tools
  if [[ -n "${BUNDLE_PARAMETER:-}" ]]; then
    boot_read_location
  fi
  boot_check_location
  local file
  mkdir -p "$BOOT_DIR"
  file=$(mktemp "$BOOT_DIR/.bundle.XXXXXX")
  boot_fetch "$file"
  boot_unpack "$file"
  rm -f "$file"
  boot_log "running $BOOT_ROLE.sh of bundle $BUNDLE_SHA256"
  trap - EXIT
  exec bash "$BOOT_UNPACKED/$BOOT_ROLE.sh"
}

boot_main "$@"
