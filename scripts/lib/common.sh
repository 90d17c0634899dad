# shellcheck shell=bash
# Shared by every gitlab-cfn boot script. The program of a role is this file,
# [lib/install.sh], the role script, run by bash with the values CloudFormation
# knows exported before it. Secrets are read from Secrets Manager at boot,
# never passed in. GITLAB_CFN_ROOT (unset on a server) prefixes the paths of
# the scripts that tests still run in a scratch folder (the bastion's package
# installs cannot run isolated); the application server's program is tested
# in its own namespaces on the real paths and ignores it.

set -euo pipefail

ROOT="${GITLAB_CFN_ROOT:-}"
# Set by install_file; read by the role scripts that reload a service on change.
# shellcheck disable=SC2034
FILE_CHANGED=0
STATE_DIR="$ROOT/var/lib/gitlab-cfn"
# Appended, so that what is already on PATH comes first.
export PATH="$PATH:/opt/aws/bin:/opt/gitlab/bin:/snap/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() {
  printf '%s gitlab-cfn[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${ROLE:-boot}" "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

# retry ATTEMPTS DELAY COMMAND...: run COMMAND until it succeeds.
retry() {
  local attempts=$1 delay=$2 n=1
  shift 2
  until "$@"; do
    if ((n >= attempts)); then
      return 1
    fi
    log "retrying in ${delay}s ($n/$attempts): $1"
    n=$((n + 1))
    sleep "$delay"
  done
}

require_env() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "$name is not set by the user data preamble"
  done
}

# The exit status goes to CloudFormation: a broken configuration fails the deploy.
signal_cloudformation() {
  local status=$?
  trap - EXIT
  if [[ -n "${CFN_RESOURCE:-}" ]]; then
    log "signalling $CFN_RESOURCE with exit code $status"
    retry 5 10 cfn-signal --exit-code "$status" --stack "$CFN_STACK" \
      --resource "$CFN_RESOURCE" --region "$AWS_REGION" || log "cfn-signal failed"
  fi
  exit "$status"
}

start_boot() {
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  trap signal_cloudformation EXIT
  log "starting"
}

# Secrets Manager answers AccessDenied until the IAM grants of a new stack
# reach every endpoint: IAM is eventually consistent ("Changes that I make are
# not always immediately visible", https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency),
# and the SDKs retry only throttling and server errors, never a 4xx such as
# AccessDeniedException (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
# So AccessDenied is retried with a growing wait for up to DENIED_BUDGET
# seconds; other errors (network, throttling left over) a few times quickly.
QUICK_ATTEMPTS="${GITLAB_CFN_QUICK_ATTEMPTS:-10}"
QUICK_DELAY="${GITLAB_CFN_QUICK_DELAY:-6}"
DENIED_DELAY="${GITLAB_CFN_DENIED_DELAY:-10}"
DENIED_MAX_DELAY="${GITLAB_CFN_DENIED_MAX_DELAY:-60}"
DENIED_BUDGET="${GITLAB_CFN_DENIED_BUDGET:-600}"

# aws_call AWS-ARGS...: the AWS CLI with the retries above; stdout is the
# answer (never logged), the last error line is logged.
aws_call() {
  local err quick=1 waited=0 delay=$DENIED_DELAY rc reason
  err=$(mktemp)
  while true; do
    rc=0
    aws "$@" 2>"$err" || rc=$?
    if ((rc == 0)); then
      rm -f "$err"
      return 0
    fi
    reason=$(grep -m1 -o 'An error occurred.*' "$err" || tail -n1 "$err")
    if ((rc == 126 || rc == 127)); then
      log "aws $1 $2: the AWS CLI cannot run: $reason"
      rm -f "$err"
      return "$rc"
    fi
    if grep -q 'AccessDenied' "$err"; then
      if ((waited >= DENIED_BUDGET)); then
        log "aws $1 $2: access still denied after ${waited}s: $reason"
        rm -f "$err"
        return "$rc"
      fi
      log "aws $1 $2: access denied (IAM grants may still be propagating), retrying in ${delay}s: $reason"
      sleep "$delay"
      waited=$((waited + delay))
      delay=$((delay * 2 > DENIED_MAX_DELAY ? DENIED_MAX_DELAY : delay * 2))
    else
      if ((quick >= QUICK_ATTEMPTS)); then
        log "aws $1 $2 failed ($quick attempts): $reason"
        rm -f "$err"
        return "$rc"
      fi
      log "aws $1 $2 failed, retrying in ${QUICK_DELAY}s ($quick/$QUICK_ATTEMPTS): $reason"
      quick=$((quick + 1))
      sleep "$QUICK_DELAY"
    fi
  done
}

secret_string() {
  aws_call secretsmanager get-secret-value --region "$AWS_REGION" \
    --secret-id "$1" --query SecretString --output text
}

# json_field KEY < JSON: the string value of one top-level key ("" if absent).
json_field() {
  python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""), end="")' "$1"
}

# secret_field ARN KEY: one key of a JSON secret.
secret_field() {
  local json
  json=$(secret_string "$1")
  printf '%s' "$json" | json_field "$2"
}

# put_secret_json ARN FILE: a secret's new value, from a file (never argv).
put_secret_json() {
  aws_call secretsmanager put-secret-value --region "$AWS_REGION" \
    --secret-id "$1" --secret-string "file://$2" >/dev/null
}

# ruby_string VALUE: VALUE as a single-quoted Ruby string literal.
ruby_string() {
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\\\'}"
}

# install_file MODE PATH < CONTENT: replace PATH only when CONTENT differs;
# FILE_CHANGED tells whether it did.
install_file() {
  local mode=$1 path=$2 tmp
  mkdir -p "$(dirname "$path")"
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    # shellcheck disable=SC2034
    FILE_CHANGED=0
  else
    mv -f "$tmp" "$path"
    # shellcheck disable=SC2034
    FILE_CHANGED=1
    log "wrote ${path#"$ROOT"}"
  fi
}

# files_json KEY=PATH...: a JSON object of file contents, for put_secret_json.
files_json() {
  python3 -c 'import json, sys; print(json.dumps({k: open(p).read() for k, p in (a.split("=", 1) for a in sys.argv[1:])}))' "$@"
}
