"""GitLab application servers booted as EC2 boots them (tests/support/boot.py).

The program is the role's real one, on the real paths, in its own namespaces;
sshd -t, PostgreSQL (TLS only), psql, the AWS CLI against the stand-in, curl
and ruby are the real programs. Only GitLab's commands, cfn-signal and
systemctl are fakes, and they check what they are given.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import boto3
from gitlab_cfn.compile import userdata
from gitlab_cfn.standin import StandIn

from support import boot
from support.boot_fixtures import boot_tools, cloud, postgres  # noqa: F401  (fixtures)
from support.gitlab_rb import unknown_settings

SSHD_DROP_IN = "/etc/ssh/sshd_config.d/60-gitlab-cfn.conf"
LOCK_KEY = int(re.search(r"^LOCK_KEY=(\d+)", userdata.body("gitlab-app"), re.M).group(1))


def actions(server: boot.Server) -> list[str]:
    return [f"{e['command']} {e.get('action') or e.get('verb') or e.get('exit_code')}" for e in server.events()]


def assert_succeeded(result: boot.Boot, server: boot.Server) -> None:
    assert result.returncode == 0, result.stderr
    assert [s["exit_code"] for s in server.signals()] == [0], result.stderr


def test_first_server_configures_gitlab_and_signals_success_once_gitlab_serves(cloud):
    server = cloud.server()
    # Rails answers /-/readiness 2 s after it is started.
    env = {**cloud.env, "FAKE_RAILS_START_SECONDS": "2", "GITLAB_CFN_READINESS_INTERVAL": "1"}
    result = server.boot(env)
    assert_succeeded(result, server)
    (start,) = [e for e in server.events("gitlab-ctl") if e["action"] == "restart"]
    (signal,) = server.signals()
    assert signal["at"] - start["at"] >= 2, "signalled before GitLab answered /-/readiness"
    assert "GitLab answers /-/readiness" in result.stderr

    # gitlab.rb: root only, valid Ruby, every key documented for the installed version.
    rb = server.path("/etc/gitlab/gitlab.rb")
    assert oct(rb.stat().st_mode & 0o777) == "0o600"
    assert unknown_settings(rb.read_text(), "19.3.0") == []
    settings = boot.evaluate_gitlab_rb(rb.read_text())["settings"]
    rails = settings["gitlab_rails"]
    assert (rails["db_host"], rails["db_port"], rails["db_sslmode"]) == (boot.HOST, cloud.pg.port, "require")
    assert rails["db_password"] == "s3cr3tDbPassw0rd" and rails["redis_password"] == "redisAuthT0ken"
    assert rails["monitoring_whitelist"] == ["127.0.0.0/8", "::1/128", "10.0.0.0/16"]
    assert rails["auto_migrate"] is False

    # The order a first boot must keep: configure, load the schema, settings, start, sshd, ready,
    # the CloudWatch agent (its configuration validated by the fake control script), signal.
    assert actions(server) == ["gitlab-ctl reconfigure", "gitlab-rake gitlab:db:configure", "gitlab-rails runner",
                               "gitlab-ctl restart", "systemctl try-reload-or-restart",
                               "amazon-cloudwatch-agent-ctl fetch-config", "cfn-signal 0"]
    assert server.events("gitlab-rake")[0]["step"] == "load schema and seed"

    # The real database: extensions created by the boot (under the lock), schema loaded over TLS.
    assert cloud.pg.query("SELECT extname FROM pg_extension WHERE extname IN ('pg_trgm', 'btree_gist') "
                          "ORDER BY 1") == [["btree_gist"], ["pg_trgm"]]
    assert cloud.pg.query("SELECT count(*) FROM schema_migrations") == [["1"]]

    # The first server publishes its host keys and gitlab-secrets.json (around Gitaly's shell secret).
    keys = cloud.secret("HOST_KEYS_SECRET_ARN")
    for kind in boot.HOST_KEY_TYPES:
        assert keys[f"ssh_host_{kind}_key"] == server.read(f"/etc/ssh/ssh_host_{kind}_key")
        assert server.read(f"/etc/ssh_static/ssh_host_{kind}_key") == server.read(f"/etc/ssh/ssh_host_{kind}_key")
    published = json.loads(cloud.secret("RAILS_SECRETS_ARN")["gitlab-secrets.json"])
    assert published["gitlab_shell"]["secret_token"] == "shellT0ken"
    assert published == json.loads(server.read("/etc/gitlab/gitlab-secrets.json"))

    # sshd: the drop-in names the shared keys, which exist; the reload re-ran the real sshd -t.
    assert "HostKey /etc/ssh_static/ssh_host_ed25519_key" in server.read(SSHD_DROP_IN)

    # No secret value in the boot's output or in what the fakes recorded.
    everything = result.stdout + result.stderr + server.read("/var/log/gitlab-cfn-fakes.log")
    assert [s for s in boot.SECRET_VALUES if s in everything] == []


def test_two_servers_booting_at_once_take_turns_and_share_the_first_ones_secrets(cloud):
    """The second server waits on PostgreSQL's advisory lock until the first's locked phase ends.

    Evidence from the database itself: the fake gitlab-rake records, with the
    server's clock_timestamp(), when each locked phase ran and which sessions
    held (true) or awaited (false) the bootstrap lock (pg_locks).
    """
    env = {**cloud.env, "FAKE_DB_CONFIGURE_SECONDS": "2"}
    servers = [cloud.server("server-1"), cloud.server("server-2")]
    # An observer of its own: pg_locks, sampled while both boot.
    seen, done = [], threading.Event()

    def observe():
        while not done.is_set():
            seen.append(tuple(cloud.pg.lock_sessions(LOCK_KEY)))
            time.sleep(0.1)

    observer = threading.Thread(target=observe)
    observer.start()
    running = [s.start(env) for s in servers]
    try:
        results = [boot.Server.wait(p) for p in running]
    finally:
        done.set()
        observer.join()
    # Never two holders; at some moment one held the lock while the other waited for it.
    assert all(sum(granted for _, granted in sample) <= 1 for sample in seen)
    assert {("gitlab-cfn-server-1", True), ("gitlab-cfn-server-2", False)} in [set(s) for s in seen] or \
        {("gitlab-cfn-server-2", True), ("gitlab-cfn-server-1", False)} in [set(s) for s in seen]
    for server, result in zip(servers, results):
        assert_succeeded(result, server)

    rows = cloud.pg.query("SELECT host, step, extract(epoch FROM at), lock FROM boot_evidence ORDER BY at")
    assert [(host, step) for host, step, _, _ in rows][0][1] == "start"
    first, second = rows[0][0], rows[2][0]
    assert {first, second} == {"server-1", "server-2"}
    assert [(h, s) for h, s, _, _ in rows] == [(first, "start"), (first, "end"), (second, "start"), (second, "end")]
    # The second's locked phase began after the first's ended ...
    assert float(rows[2][2]) >= float(rows[1][2])
    # ... because it was waiting for the lock the first held while it ran.
    assert rows[1][3] == f"gitlab-cfn-{first}:true,gitlab-cfn-{second}:false"
    assert rows[2][3] == f"gitlab-cfn-{second}:true"

    one, two = (servers if first == "server-1" else servers[::-1])
    assert one.events("gitlab-rake")[0]["step"] == "load schema and seed"
    assert two.events("gitlab-rake")[0]["step"] == "migrate"
    # The stack's first backup (lib/backup.sh): started by the server that seeded, only.
    by_name = dict(zip((s.name for s in servers), results))
    assert ["starting its first backup" in by_name[s.name].stderr for s in (one, two)] == [True, False]
    # A server joining a running GitLab (a scale-out, a rolling upgrade) runs only the regular
    # migrations: old servers still serve; upgrade runs the post-deployment ones once at the end.
    assert [e["skip_post_deployment_migrations"] for e in one.events("gitlab-rake") + two.events("gitlab-rake")] \
        == ["true", "true"]
    # The second restored the first's host keys (sshd -t accepted them) and gitlab-secrets.json.
    for kind in boot.HOST_KEY_TYPES:
        assert two.read(f"/etc/ssh_static/ssh_host_{kind}_key") == one.read(f"/etc/ssh/ssh_host_{kind}_key")
        assert two.read(f"/etc/ssh/ssh_host_{kind}_key") != one.read(f"/etc/ssh/ssh_host_{kind}_key")
    assert json.loads(two.read("/etc/gitlab/gitlab-secrets.json")) == json.loads(one.read("/etc/gitlab/gitlab-secrets.json"))
    assert cloud.secret_versions("HOST_KEYS_SECRET_ARN") == 2  # the initial "{}" and the first server's keys
    assert [e["command"] for e in two.events("systemctl")] == ["systemctl"]

    # A reboot of each, both at once again: the same files, nothing published, sshd not
    # reloaded, the schema migrated (not loaded again).
    before = {s.name: s.snapshot("/etc/gitlab", "/etc/ssh", "/etc/ssh_static") for s in servers}
    for server in servers:
        server.clear_events()
    running = [s.start(cloud.env) for s in servers]
    for server, process in zip(servers, running):
        rebooted = boot.Server.wait(process)
        assert_succeeded(rebooted, server)
        assert "first backup" not in rebooted.stderr
        assert server.snapshot("/etc/gitlab", "/etc/ssh", "/etc/ssh_static") == before[server.name]
        assert not server.events("systemctl")
        assert server.events("gitlab-rake")[0]["step"] == "migrate"
    assert cloud.pg.query("SELECT count(*) FROM schema_migrations") == [["1"]]
    assert cloud.secret_versions("HOST_KEYS_SECRET_ARN") == 2
    assert cloud.secret_versions("RAILS_SECRETS_ARN") == 2


# -- readiness --------------------------------------------------------------------------------

def test_a_restored_stacks_first_server_keeps_the_old_keys_takes_its_shell_secret_and_migrates(cloud):
    """gitlab-cfn restore: the database comes from a snapshot (already migrated once) and
    gitlab-secrets.json is seeded from the old stack's secret before any server boots."""
    cloud.pg.query(f"CREATE TABLE schema_migrations (version text PRIMARY KEY); "
                   f"INSERT INTO schema_migrations VALUES ('20250101000000'); "
                   f"ALTER TABLE schema_migrations OWNER TO {cloud.pg.user}")
    old = {"gitlab_rails": {"db_key_base": "0ld-db-key-base", "secret_key_base": "0ld-secret-key-base"},
           "gitlab_shell": {"secret_token": "0ld-shell-secret"}}
    client = boot.secrets_client(cloud.standin.endpoint)
    client.put_secret_value(SecretId=cloud.arns["RAILS_SECRETS_ARN"],
                            SecretString=json.dumps({"gitlab-secrets.json": json.dumps(old)}))
    server = cloud.server()
    result = server.boot(cloud.env)
    assert_succeeded(result, server)
    # The restored database is migrated, never seeded again (its root user is the old one).
    assert server.events("gitlab-rake")[0]["step"] == "migrate"
    assert cloud.pg.query("SELECT count(*) FROM schema_migrations") == [["2"]]
    # The old keys read the restored encrypted columns; the shell secret is this stack's, which
    # Gitaly has, and the fixed file is published for the servers that follow.
    installed = json.loads(server.read("/etc/gitlab/gitlab-secrets.json"))
    # (reconfigure adds the keys the old file lacked, as GitLab does, and keeps the others)
    assert old["gitlab_rails"].items() <= installed["gitlab_rails"].items()
    assert installed["gitlab_shell"]["secret_token"] == "shellT0ken"
    assert json.loads(cloud.secret("RAILS_SECRETS_ARN")["gitlab-secrets.json"]) == installed
    assert "gitlab-secrets.json comes from another stack (a restore)" in result.stderr
    assert cloud.secret_versions("RAILS_SECRETS_ARN") == 3   # created, seeded, fixed once


def test_a_gitlab_rb_part_that_fails_leaves_no_gitlab_rb_and_fails_the_boot(cloud):
    """gitlab.rb is rendered whole before it is written: with a monitoring server
    (METRICS_SCRAPED) the exporters' part needs the private IPv4 address, and a server
    whose `hostname -I` names none stops with one line, before any gitlab.rb (which would
    lack the exporter lines) is written and before any reconfigure."""
    server = cloud.server()
    server.write("/usr/local/bin/hostname", "#!/bin/sh\n[ \"$1\" = -I ] && exit 0\nexec /bin/hostname \"$@\"\n", 0o755)
    result = server.boot({**cloud.env, "METRICS_SCRAPED": "true"})
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert error.endswith("error: this server has no private IPv4 address for its exporters (hostname -I: '')")
    assert [s["exit_code"] for s in server.signals()] == [1]
    assert not server.exists("/etc/gitlab/gitlab.rb")
    assert [e for e in server.events("gitlab-ctl") if e["action"] == "reconfigure"] == []


def test_gitlab_that_never_gets_ready_fails_the_boot_with_the_reason(cloud):
    server = cloud.server()
    env = {**cloud.env, "FAKE_RAILS_START_SECONDS": "600", "GITLAB_CFN_READINESS_TIMEOUT": "2",
           "GITLAB_CFN_READINESS_INTERVAL": "1"}
    result = server.boot(env)
    assert result.returncode == 1
    assert [s["exit_code"] for s in server.signals()] == [1]
    assert "GitLab did not answer /-/readiness with 200 on port 80 within 2s (last answer: 503)" in result.stderr


# -- Secrets Manager access denied while IAM propagates -----------------------------------------

def test_access_denied_is_retried_with_a_growing_wait_until_the_grant_arrives(cloud, tmp_path):
    """The real AWS CLI, signed with a user's keys, against a stand-in that enforces IAM:
    the grant is attached a few seconds into the boot, as a new stack's grants reach IAM late."""
    # moto authorizes every request after the first three (the administrator's own setup).
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    try:
        enforcing = StandIn(log=tmp_path / "standin.log").start()
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        iam = boto3.client("iam", endpoint_url=enforcing.endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        admin = iam.create_access_key(UserName="admin")["AccessKey"]
        iam = boto3.client("iam", endpoint_url=enforcing.endpoint, region_name="us-east-1",
                           aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"])
        iam.create_user(UserName="gitlab-server")
        server_key = iam.create_access_key(UserName="gitlab-server")["AccessKey"]
        client = boot.secrets_client(enforcing.endpoint, key=admin["AccessKeyId"], secret=admin["SecretAccessKey"])
        arns = {variable: client.create_secret(Name=f"gitlab-test/{name}", SecretString=json.dumps(value))["ARN"]
                for variable, (name, value) in boot.SECRETS.items()}

        server = cloud.server()
        env = {**boot.preamble_values(cloud.pg.port, cloud.pg.database, arns), **cloud.redis_env(), "AWS_ENDPOINT_URL": f"http://{boot.HOST}:{enforcing.port}",
               "AWS_ACCESS_KEY_ID": server_key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": server_key["SecretAccessKey"],
               "GITLAB_CFN_DENIED_DELAY": "1", "GITLAB_CFN_DENIED_MAX_DELAY": "2", "GITLAB_CFN_DENIED_BUDGET": "60",
               # Any other error is retried quickly and gives up at once here: a denial must not count as one.
               "GITLAB_CFN_QUICK_ATTEMPTS": "1", "GITLAB_CFN_QUICK_DELAY": "0"}
        grant = threading.Timer(4, lambda: iam.put_user_policy(
            UserName="gitlab-server", PolicyName="secrets", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                    "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]}]})))
        started = time.monotonic()
        grant.start()
        try:
            result = server.boot(env)
        finally:
            grant.cancel()
        assert_succeeded(result, server)
        waits = [line.split("retrying in ")[1].split("s:")[0] for line in result.stderr.splitlines()
                 if "access denied (IAM grants may still be propagating), retrying in" in line]
        assert len(waits) >= 2 and waits[:2] == ["1", "2"], result.stderr
        # AWS answers AccessDeniedException; moto's IAM enforcement answers an XML 403 whose body says AccessDenied.
        assert "when calling the GetSecretValue operation" in result.stderr
        assert time.monotonic() - started >= 4
    finally:
        enforcing.stop()


def test_a_secret_that_stays_unreadable_fails_the_boot_after_quick_retries(cloud):
    server = cloud.server()
    env = {**cloud.env, "DB_SECRET_ARN": cloud.arns["DB_SECRET_ARN"] + "-gone",
           "GITLAB_CFN_QUICK_ATTEMPTS": "2", "GITLAB_CFN_QUICK_DELAY": "0"}
    result = server.boot(env)
    assert result.returncode != 0
    assert [s["exit_code"] for s in server.signals()] == [result.returncode]
    assert "failed, retrying in 0s (1/2): An error occurred (ResourceNotFoundException)" in result.stderr
    assert "access denied" not in result.stderr
    assert not server.exists("/etc/gitlab/gitlab.rb")


def test_host_keys_sshd_refuses_leave_no_drop_in_behind_and_fail_the_boot(cloud):
    """Shared host keys that are not keys (a damaged secret): the real sshd -t refuses the
    drop-in naming them, the boot removes it again (ssh keeps its own keys) and fails."""
    client = boot.secrets_client(cloud.standin.endpoint)
    damaged = {f"ssh_host_{kind}_key{ext}": "not a key\n" for kind in boot.HOST_KEY_TYPES for ext in ("", ".pub")}
    client.put_secret_value(SecretId=cloud.arns["HOST_KEYS_SECRET_ARN"], SecretString=json.dumps(damaged))
    server = cloud.server()
    result = server.boot(cloud.env)
    assert result.returncode == 1
    assert [s["exit_code"] for s in server.signals()] == [1]
    assert f"error: sshd -t refuses {SSHD_DROP_IN}: removed it" in result.stderr
    assert not server.exists(SSHD_DROP_IN)
    assert not server.events("systemctl")


def test_the_harness_exports_what_the_app_template_exports():
    """The boots here get the preamble the built app template gives its servers
    (apart from how the bootstrap finds the program)."""
    from conftest import templates_for

    def subs(tree):
        if isinstance(tree, dict):
            if "Fn::Sub" in tree and isinstance(tree["Fn::Sub"], list):
                yield tree["Fn::Sub"][1]
            for value in tree.values():
                yield from subs(value)
        elif isinstance(tree, list):
            for value in tree:
                yield from subs(value)

    (exported,) = [set(v) for v in subs(templates_for({})["app"]["Resources"]["AppLaunchTemplate"]) if "DB_HOST" in v]
    ours = set(boot.preamble_values(5432, "gitlabhq_production", {v: "arn" for v in boot.SECRETS}))
    assert ours <= exported
    assert {n for n in exported - ours if not n.startswith(("BOOT_", "BUNDLE_"))} == set()
