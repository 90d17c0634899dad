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
