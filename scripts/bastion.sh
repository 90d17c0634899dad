# shellcheck shell=bash
# Bastion host: minimal hardening of a stock Ubuntu LTS image.
#
# No password or keyboard-interactive logins, no root login (agent forwarding
# stays on: the guide reaches the private instances through it), and
# unattended security upgrades.
#
# Expects from the preamble: AWS_REGION CFN_STACK CFN_RESOURCE.

ROLE=bastion

harden_sshd() {
  install_file 0644 "$ROOT/etc/ssh/sshd_config.d/50-gitlab-cfn-bastion.conf" <<'SSHD'
# Written by gitlab-cfn: keys only, no root.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
X11Forwarding no
AllowAgentForwarding yes
SSHD
  if ((FILE_CHANGED)); then
    sshd -t
    systemctl try-reload-or-restart ssh
  fi
}

enable_security_upgrades() {
  DEBIAN_FRONTEND=noninteractive retry 5 10 apt-get install -y -q unattended-upgrades
  install_file 0644 "$ROOT/etc/apt/apt.conf.d/20auto-upgrades" <<'APT'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT
}

main() {
  require_env AWS_REGION CFN_STACK
  # Before the EXIT trap: without cfn-signal there is nobody to tell.
  install_cfn_bootstrap
  start_boot
  harden_sshd
  enable_security_upgrades
  log "bastion is ready"
}

main "$@"
