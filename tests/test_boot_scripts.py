"""The Gitaly and bastion boot scripts run for real against a fake machine (see support/fakes.py).

They still run in a scratch folder (GITLAB_CFN_ROOT): the bastion installs
packages (apt-get, the CloudFormation helper scripts from S3) that cannot run
isolated and offline here. The application server boots on the real-program
harness instead (test_boot_app.py, support/boot.py).
"""

import shutil
import subprocess

from support.fakes import FakeMachine
from support.gitlab_rb import unknown_settings
from test_userdata import rendered, sample

SECRETS = {
    "DB_SECRET_ARN": {"username": "gitlab", "password": "s3cr3tDbPassw0rd"},
    "REDIS_SECRET_ARN": {"token": "redisAuthT0ken"},
    "GITALY_SECRET_ARN": {"token": "gitalyT0ken"},
    "SHELL_SECRET_ARN": {"token": "shellT0ken"},
    "ROOT_PASSWORD_SECRET_ARN": {"username": "root", "password": "r00tPassw0rd"},
    "RAILS_SECRETS_ARN": {},
    "HOST_KEYS_SECRET_ARN": {},
}


def machine(tmp_path, name="server-1", secrets=True) -> FakeMachine:
    m = FakeMachine(tmp_path / name)
    if secrets:
        for variable, value in SECRETS.items():
            m.put_secret(sample(variable), value)
    return m


def ruby_syntax_ok(path):
    ruby = shutil.which("ruby")
    assert ruby, "ruby is missing: `make test` installs it from Debian's packages"
    result = subprocess.run([ruby, "-c", str(path)], capture_output=True, text=True)
    return result.returncode == 0 and "Syntax OK" in result.stdout


# -- Gitaly -----------------------------------------------------------------------------------

DISK = "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"


def test_gitaly_formats_an_empty_volume_once_and_mounts_it_by_uuid(tmp_path):
    m = machine(tmp_path)
    m.add_disk(DISK)
    result = m.run(rendered("gitaly"))
    assert result.returncode == 0, result.stderr
    assert len(m.calls_to("mkfs.ext4")) == 1
    fstab = m.file("etc/fstab").splitlines()
    assert len(fstab) == 1 and fstab[0].startswith("UUID=3f1c2b9e-") and " /var/opt/gitlab/git-data ext4 " in fstab[0]
    assert m.calls_to("mount") == [[str(m.root / "var/opt/gitlab/git-data")]]
    rb = m.root / "etc/gitlab/gitlab.rb"
    assert ruby_syntax_ok(rb) and unknown_settings(rb.read_text()) == []
    assert "listen_addr: '0.0.0.0:8075'" in rb.read_text()
    assert "auth: { token: 'gitalyT0ken' }" in rb.read_text()
    assert "gitaly['gitlab_secret'] = 'shellT0ken'" in rb.read_text()
    assert m.calls_to("cfn-signal")[0][:6] == ["--exit-code", "0", "--stack", sample("CFN_STACK"), "--resource", "GitalyInstance"]

    # Second boot: nothing is formatted, fstab keeps one line, gitlab.rb is untouched.
    m.clear_calls()
    before = rb.read_bytes()
    assert m.run(rendered("gitaly")).returncode == 0
    assert m.calls_to("mkfs.ext4") == []
    assert m.calls_to("mount") == []
    assert len(m.file("etc/fstab").splitlines()) == 1
    assert rb.read_bytes() == before


def test_gitaly_never_reformats_a_volume_that_holds_data(tmp_path):
    # The instance was replaced; the volume comes back with its repositories.
    old = machine(tmp_path, "old")
    old.add_disk(DISK)
    assert old.run(rendered("gitaly")).returncode == 0
    new = machine(tmp_path, "new")
    new.add_disk(DISK)
    (new.state / "disks").mkdir()
    (new.state / "disks" / DISK).write_text((old.state / "disks" / DISK).read_text())
    assert new.run(rendered("gitaly")).returncode == 0
    assert new.calls_to("mkfs.ext4") == []
    assert new.file("etc/fstab") == old.file("etc/fstab")


def test_gitaly_waits_for_its_volume_and_fails_if_it_never_comes(tmp_path):
    m = machine(tmp_path)
    script = rendered("gitaly").replace("retry 60 5 find_data_device", "retry 2 0 find_data_device")
    result = m.run(script)
    assert result.returncode != 0
    assert "data volume vol-0123456789abcdef0 never appeared" in result.stderr
    assert m.calls_to("mkfs.ext4") == []
    assert m.calls_to("cfn-signal")[0][1] != "0"


# -- bastions ---------------------------------------------------------------------------------

def test_bastion_hardening_is_idempotent(tmp_path):
    m = machine(tmp_path, secrets=False)
    (m.bin / "cfn-signal").rename(m.bin / "cfn-signal-real")
    # First boot installs the helper scripts; the fake venv's cfn-signal stands in for them.
    script = rendered("bastion").replace(
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
