"""The bastion boot script runs for real against a fake machine (see support/fakes.py).

It still runs in a scratch folder (GITLAB_CFN_ROOT): the bastion installs
packages (apt-get, the CloudFormation helper scripts from S3) that cannot run
isolated and offline here. The application server boots on the real-program
harness instead (test_boot_app.py, support/boot.py).
"""

import subprocess

from gitlab_cfn.compile import userdata

from support.fakes import FakeMachine


def program(role: str, **values: str) -> str:
    """The role's program as an instance runs it: the preamble's exports, then ``body(role)``."""
    exports = "".join(f"export {name}='{value}'\n" for name, value in sorted(values.items()))
    return "#!/bin/bash\n" + exports + userdata.body(role)


# Gitaly: tests/test_gitaly_boot.py (real disk programs on loop devices).


# -- bastions ---------------------------------------------------------------------------------

def test_bastion_hardening_is_idempotent(tmp_path):
    m = FakeMachine(tmp_path / "bastion")
    (m.bin / "cfn-signal").rename(m.bin / "cfn-signal-real")
    # First boot installs the helper scripts; the fake venv's cfn-signal stands in for them.
    script = program("bastion", AWS_REGION="ap-southeast-2", CFN_STACK="gitlab-production-BastionStack-1A2B3C",
                     CFN_RESOURCE="BastionA").replace(
        'python3 -m venv "$ROOT/opt/aws/cfn-bootstrap"',
        f'mkdir -p "$ROOT/opt/aws/cfn-bootstrap/bin"; cp {m.bin}/cfn-signal-real "$ROOT/opt/aws/cfn-bootstrap/bin/cfn-signal"; '
        f'cp {m.bin}/apt-get "$ROOT/opt/aws/cfn-bootstrap/bin/pip"')
    script = script.replace('export PATH="$PATH:/opt/aws/bin', 'export PATH="$PATH:$ROOT/opt/aws/bin')
    result = m.run(script)
    assert result.returncode == 0, result.stderr
    conf = m.file("etc/ssh/sshd_config.d/50-gitlab-cfn-bastion.conf")
    assert "PasswordAuthentication no" in conf and "PermitRootLogin no" in conf
    assert 'APT::Periodic::Unattended-Upgrade "1";' in m.file("etc/apt/apt.conf.d/20auto-upgrades")
    assert ["install", "-y", "-q", "unattended-upgrades"] in m.calls_to("apt-get")
    assert "sshd -t" in m.calls()
    assert m.calls_to("cfn-signal")[0][:2] == ["--exit-code", "0"]
    # The real sshd accepts the drop-in (here with a host key of its own: the image has them).
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")], check=True)
    (tmp_path / "sshd_config").write_text(
        f"Include {m.root}/etc/ssh/sshd_config.d/*.conf\nHostKey {tmp_path}/hostkey\n")
    # sshd wants its privilege separation directory: a /run of its own, not this machine's.
    check = subprocess.run(["unshare", "--mount", "bash", "-c", "mount -t tmpfs tmpfs /run && mkdir /run/sshd && "
                            f"/usr/sbin/sshd -t -f {tmp_path}/sshd_config"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    m.clear_calls()
    assert m.run(script).returncode == 0
    assert "sshd -t" not in m.calls()  # nothing changed, nothing reloaded
    assert not [c for c in m.calls_to("apt-get") if "python3-venv" in c]  # helper scripts already there
