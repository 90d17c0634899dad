"""The boot scripts run for real against a fake machine (see support/fakes.py).

What can run here does: gitlab.rb rendering, the "format only if empty"
decision, the locked bootstrap, secret publishing, signals, and second runs
that must change nothing.
"""

import shutil
import subprocess

from support.fakes import FakeMachine
from support.gitlab_rb import TEMPLATE, unknown_settings
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
SECRET_VALUES = ["s3cr3tDbPassw0rd", "redisAuthT0ken", "gitalyT0ken", "shellT0ken", "r00tPassw0rd"]


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


# -- the gitlab.rb checker itself ------------------------------------------------------------

def test_settings_checker_accepts_real_settings_and_rejects_typos():
    assert unknown_settings("gitlab_rails['db_host'] = 'x'\nexternal_url 'https://a.b'\n") == []
    assert unknown_settings("gitlab_rail['db_host'] = 'x'\n") == ["gitlab_rail['db_host']"]
    assert unknown_settings("gitlab_rails['db_hots'] = 'x'\n") == ["gitlab_rails['db_hots']"]
    assert unknown_settings("gitaly['configuration'] = {\n  listen_adr: '0.0.0.0:8075',\n}\n") == [
        "gitaly['configuration'][:listen_adr]"]
    assert unknown_settings("extrnal_url 'https://a.b'\n") == ["extrnal_url"]
    assert TEMPLATE.exists()


# -- application servers ----------------------------------------------------------------------

def test_app_first_boot_configures_everything_and_signals_success(tmp_path):
    m = machine(tmp_path)
    result = m.run(rendered("gitlab-app"))
    assert result.returncode == 0, result.stderr

    rb = m.root / "etc/gitlab/gitlab.rb"
    assert oct(rb.stat().st_mode & 0o777) == "0o600"
    assert ruby_syntax_ok(rb)
    assert unknown_settings(rb.read_text()) == []
    text = rb.read_text()
    for expected in (
        "external_url 'https://gitlab.engineering.example.com'",
        "letsencrypt['enable'] = false",
        "postgresql['enable'] = false",
        "redis['enable'] = false",
        "gitlab_rails['db_sslmode'] = 'require'",
        "gitlab_rails['db_password'] = 's3cr3tDbPassw0rd'",
        "gitlab_rails['redis_ssl'] = true",
        "gitlab_rails['redis_password'] = 'redisAuthT0ken'",
        "'gitaly_address' => 'tcp://10.0.1.123:8075'",
        "'use_iam_profile' => true",
        "gitlab_rails['object_store']['objects']['lfs']['bucket'] = 'gl-lfs-123456789012-ap-southeast-2-0a1b2c3d'",
        "gitlab_rails['backup_upload_remote_directory'] = 'gl-backups-123456789012-ap-southeast-2-0a1b2c3d'",
        "gitlab_rails['nginx']['listen_https'] = false",
        "gitlab_rails['monitoring_whitelist'] = ['127.0.0.0/8', '::1/128', '10.0.0.0/16']",
        "gitlab_rails['auto_migrate'] = false",
    ):
        assert expected in text, expected

    sshd = m.file("etc/ssh/sshd_config.d/60-gitlab-cfn.conf")
    assert "AuthorizedKeysCommand /opt/gitlab/embedded/service/gitlab-shell/bin/gitlab-shell-authorized-keys-check git %u %k" in sshd
    assert "HostKey /etc/ssh_static/ssh_host_ed25519_key" in sshd

    # The database work happens inside the advisory lock: extensions first, then the locked phase.
    (psql,) = [c for c in m.calls() if c.startswith("psql") and "<<<" in c]
    assert psql.index("pg_advisory_lock") < psql.index("CREATE EXTENSION IF NOT EXISTS pg_trgm") \
        < psql.index("CREATE EXTENSION IF NOT EXISTS btree_gist") < psql.index("pg_advisory_unlock")
    calls = m.calls()
    assert calls.index("gitlab-ctl reconfigure") < calls.index(
        "gitlab-rake gitlab:db:configure [GITLAB_ROOT_PASSWORD set]")
    assert any(c.startswith("gitlab-rails runner") and "ci_enable_live_trace" in c for c in calls)

    # First server: publishes gitlab-secrets.json (around Gitaly's shell secret) and its host keys.
    rails = m.secret(sample("RAILS_SECRETS_ARN"))
    published = __import__("json").loads(rails["gitlab-secrets.json"])
    assert published["gitlab_shell"]["secret_token"] == "shellT0ken"
    assert "db_key_base" in published["gitlab_rails"]
    keys = m.secret(sample("HOST_KEYS_SECRET_ARN"))
    assert keys["ssh_host_ed25519_key"] == m.file("etc/ssh/ssh_host_ed25519_key")
    assert m.file("etc/ssh_static/ssh_host_rsa_key") == m.file("etc/ssh/ssh_host_rsa_key")

    assert m.calls_to("cfn-signal") == [["--exit-code", "0", "--stack", sample("CFN_STACK"),
                                         "--resource", "AppAutoScalingGroup", "--region", "ap-southeast-2"]]
    # No secret value on any command line (ps would show it) or in the boot log.
    everything = "\n".join(calls) + result.stderr
    assert [s for s in SECRET_VALUES if s in everything] == []


def test_app_second_boot_changes_nothing_and_publishes_nothing(tmp_path):
    m = machine(tmp_path)
    assert m.run(rendered("gitlab-app")).returncode == 0
    before = {p: p.read_bytes() for p in (m.root / "etc").rglob("*") if p.is_file()}
    m.clear_calls()
    result = m.run(rendered("gitlab-app"))
    assert result.returncode == 0, result.stderr
    after = {p: p.read_bytes() for p in (m.root / "etc").rglob("*") if p.is_file()}
    assert after == before
    assert m.puts() == []
    assert "systemctl try-reload-or-restart ssh" not in m.calls()
    assert m.calls_to("cfn-signal")[0][:2] == ["--exit-code", "0"]


def test_a_second_server_restores_the_first_ones_secrets_and_host_keys(tmp_path):
    first = machine(tmp_path, "server-1")
    assert first.run(rendered("gitlab-app")).returncode == 0
    second = machine(tmp_path, "server-2", secrets=False)
    first.share_secrets_with(second)
    result = second.run(rendered("gitlab-app"))
    assert result.returncode == 0, result.stderr
    assert second.puts() == []
    assert second.file("etc/gitlab/gitlab-secrets.json").strip() == first.file("etc/gitlab/gitlab-secrets.json").strip()
    for kind in ("ed25519", "ecdsa", "rsa"):
        assert second.file(f"etc/ssh_static/ssh_host_{kind}_key") == first.file(f"etc/ssh/ssh_host_{kind}_key")
        assert second.file(f"etc/ssh/ssh_host_{kind}_key") != first.file(f"etc/ssh/ssh_host_{kind}_key")


def test_a_secret_that_cannot_be_read_fails_the_boot_and_signals_failure(tmp_path):
    m = machine(tmp_path)
    (m.state / "aws-fails").touch()
    # No retries' sleeps here: the fake aws fails at once, retry sleeps 6 s between attempts.
    script = rendered("gitlab-app").replace("retry 10 6 aws", "retry 1 0 aws")
    result = m.run(script)
    assert result.returncode != 0
    (signal,) = m.calls_to("cfn-signal")
    assert signal[:2] == ["--exit-code", str(result.returncode)] and signal[1] != "0"
    assert not m.exists("etc/gitlab/gitlab.rb")


def test_a_failed_reconfigure_fails_the_boot(tmp_path):
    m = machine(tmp_path)
    (m.state / "reconfigure-fails").touch()
    result = m.run(rendered("gitlab-app"))
    assert result.returncode != 0
    assert "the locked bootstrap phase failed" in result.stderr
    assert m.calls_to("cfn-signal")[0][1] != "0"
    assert "gitlab-rake gitlab:db:configure [GITLAB_ROOT_PASSWORD set]" not in m.calls()


# Gitaly: tests/test_gitaly_boot.py (real disk programs on loop devices).


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

    m.clear_calls()
    assert m.run(script).returncode == 0
    assert "sshd -t" not in m.calls()  # nothing changed, nothing reloaded
    assert not [c for c in m.calls_to("apt-get") if "python3-venv" in c]  # helper scripts already there
