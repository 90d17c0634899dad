"""Praefect servers of a Gitaly Cluster booted as EC2 boots them (tests/support/boot.py).

The program is ``userdata.body("praefect")`` on the real paths in its own
namespaces; PostgreSQL (TLS only), psql, the AWS CLI against the stand-in, bash
are the real programs. GitLab's ``gitlab-ctl`` and Praefect's ``praefect
sql-migrate`` are fakes that act on the real database (support/fakebin/services.py,
praefect.py): reconfigure renders config.toml as the package does and migrates
when ``praefect['auto_migrate']`` is on (its default), Praefect refuses what its
own validation refuses, needs its database to start, and listens where
``listen_addr`` says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from gitlab_cfn.compile import userdata, versions

from support import boot
from support.boot_fixtures import boot_tools, postgres  # noqa: F401  (fixtures)
from support.gitlab_rb import unknown_settings

LOCK_KEY = int(re.search(r"^LOCK_KEY=(\d+)", userdata.body("praefect"), re.M).group(1))
APP_LOCK_KEY = int(re.search(r"^LOCK_KEY=(\d+)", userdata.body("gitlab-app"), re.M).group(1))
MASTER = ("rds_master", "rdsMasterPassw0rd")
SECRETS = {
    "DB_SECRET_ARN": ("database", {"username": MASTER[0], "password": MASTER[1]}),
    "PRAEFECT_DB_SECRET_ARN": ("praefect-database", {"username": "praefect", "password": "praefectSqlPassw0rd"}),
    "PRAEFECT_EXTERNAL_SECRET_ARN": ("praefect-external-token", {"token": "praefectExternalT0ken"}),
    "PRAEFECT_INTERNAL_SECRET_ARN": ("praefect-internal-token", {"token": "praefectInternalT0ken"}),
}
SECRET_VALUES = [MASTER[1], "praefectSqlPassw0rd", "praefectExternalT0ken", "praefectInternalT0ken"]
NODES = {"gitaly-1": "10.0.1.23", "gitaly-2": "10.0.2.41", "gitaly-3": "10.0.1.77"}
GITALY_NODES = ",".join(f"{name}={ip}" for name, ip in NODES.items())
DATABASE = "praefect_production"


def install_praefect(server: boot.Server) -> None:
    """The package's Praefect binary (the fake), where the cookbook runs it from."""
    header = (f"#!{sys.executable}\nimport sys\nsys.path[:0] = [{str(boot.FAKEBIN)!r}, {str(boot.REPO / 'tests')!r}, "
              f"{str(boot.REPO / 'templates_src')!r}]\n")
    server.write("/opt/gitlab/embedded/bin/praefect", header + (boot.FAKEBIN / "praefect.py").read_text(), 0o755)


class Cluster:
    def __init__(self, standin, pg, base: Path):
        self.standin, self.pg, self.base = standin, pg, base
        standin.reset()
        self.clean()
        # The RDS master user: it may create roles and databases (rds_superuser), nothing more.
        pg.admin(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MASTER[0]}') THEN "
                 f"CREATE ROLE {MASTER[0]} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER[1]}'; END IF; END $$")
        client = boot.secrets_client(standin.endpoint)
        import json
        self.arns = {v: client.create_secret(Name=f"gitlab-test/{name}", SecretString=json.dumps(value))["ARN"]
                     for v, (name, value) in SECRETS.items()}
        self.env = {
            "AWS_REGION": boot.REGION, "CFN_STACK": "gitlab-test", "CFN_RESOURCE": "PraefectAutoScalingGroup",
            "BOOT_ROLE": "praefect", "DB_HOST": boot.HOST, "DB_PORT": str(pg.port), "PRAEFECT_DB_NAME": DATABASE,
            "GITALY_NODES": GITALY_NODES, "VIRTUAL_STORAGE": "default", **self.arns,
            "LOG_GROUP_ID": "0a1b2c3d", "BUNDLE_PARAMETER": "/gitlab-cfn/gitlab-test/praefect/boot-bundle",
            "AWS_ENDPOINT_URL": f"http://{boot.HOST}:{standin.port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "GITLAB_CFN_DB_ATTEMPTS": "3", "GITLAB_CFN_DB_DELAY": "1",
            "GITLAB_CFN_READINESS_TIMEOUT": "10",
        }

    def clean(self) -> None:
        self.pg.admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        self.pg.admin("DROP ROLE IF EXISTS praefect")

    def server(self, name: str, version: str = "19.3.0-ee") -> boot.Server:
        server = boot.Server(self.base, name, version, role="praefect")
        install_praefect(server)
        return server

    def praefect_db(self, sql: str) -> list[list[str]]:
        out = self.pg.admin(sql, DATABASE)
        return [line.split("|") for line in out.splitlines()] if out else []

    def oids(self) -> tuple[str, str]:
        return (self.pg.admin("SELECT oid FROM pg_roles WHERE rolname = 'praefect'"),
                self.pg.admin(f"SELECT oid FROM pg_database WHERE datname = '{DATABASE}'"))


@pytest.fixture
def cluster(standin, postgres, tmp_path, boot_tools):  # noqa: F811
    c = Cluster(standin, postgres, tmp_path)
    yield c
    c.clean()


def assert_succeeded(result: boot.Boot, server: boot.Server) -> None:
    assert result.returncode == 0, result.stderr
    assert [s["exit_code"] for s in server.signals()] == [0], result.stderr


def test_two_praefect_servers_create_the_database_once_and_migrate_once_under_the_lock(cluster):
    servers = [cluster.server("praefect-1"), cluster.server("praefect-2")]
    seen, done = [], threading.Event()

    def observe():
        while not done.is_set():
            seen.append(tuple(cluster.pg.lock_sessions(LOCK_KEY)))
            time.sleep(0.05)

    observer = threading.Thread(target=observe)
    observer.start()
    env = {**cluster.env, "FAKE_MIGRATION_SECONDS": "0.3"}
    running = [s.start(env) for s in servers]
    try:
        results = [boot.Server.wait(p, timeout=120) for p in running]
    finally:
        done.set()
        observer.join()
    for server, result in zip(servers, results):
        assert_succeeded(result, server)
        assert re.search(r"Praefect accepts connections on 10\.0\.2\.\d+:2305", result.stderr), result.stderr
        # Then the CloudWatch agent: Praefect's log and the boot log, to the stack's groups.
        agent = json.loads(server.read("/opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json"))
        shipped = {e["file_path"]: e["log_group_name"] for e in agent["logs"]["logs_collected"]["files"]["collect_list"]}
        assert shipped == {"/var/log/gitlab/praefect/current": "/gitlab-cfn/gitlab-test/0a1b2c3d/praefect",
                           "/var/log/cloud-init-output.log": "/gitlab-cfn/gitlab-test/0a1b2c3d/boot"}

    # One server created the user and the database, the other found them.
    created = [r for r in results if "created database user praefect" in r.stderr]
    assert len(created) == 1 and "created database praefect_production" in created[0].stderr
    assert sum("the Praefect database user and database exist already: kept" in r.stderr for r in results) == 1
    assert cluster.pg.admin(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DATABASE}'") == "praefect"

    # Never two holders of the lock; one held it while the other waited.
    assert all(sum(granted for _, granted in sample) <= 1 for sample in seen)
    assert any(len(sample) == 2 for sample in seen), seen
    # Each migration applied once; the second run found nothing to do; each ran holding the lock.
    assert [r[0] for r in cluster.praefect_db("SELECT id FROM schema_migrations ORDER BY id")] == [
        "20200109161404_hello_world", "20200113151438_1_test_migration", "20200224220728_job_queue",
        "20210525173505_valid_primaries_view", "20220211161203_json_job_data"]
    runs = cluster.praefect_db("SELECT host, applied, lock FROM praefect_boot_evidence ORDER BY at")
    assert [int(applied) for _, applied, _ in runs] == [5, 0]
    for host, _, lock in runs:
        assert lock.split(",")[0] == f"gitlab-cfn-{host}:true", runs
    # reconfigure did not migrate on its own: one sql-migrate per server, the boot script's.
    for server in servers:
        assert [e["action"] for e in server.events() if e["command"] in ("praefect", "gitlab-ctl")] == [
            "reconfigure", "sql-migrate", "restart"]

    # gitlab.rb: every key documented on every supported version; the values Praefect needs.
    rb = servers[0].read("/etc/gitlab/gitlab.rb")
    assert oct(servers[0].path("/etc/gitlab/gitlab.rb").stat().st_mode & 0o777) == "0o600"
    assert unknown_settings(rb) == []
    settings = boot.evaluate_gitlab_rb(rb)["settings"]
    praefect = settings["praefect"]
    assert praefect["enable"] is True and praefect["auto_migrate"] is False
    conf = praefect["configuration"]
    assert conf["listen_addr"] == "0.0.0.0:2305"
    assert conf["auth"] == {"token": "praefectExternalT0ken", "transitioning": False}
    assert conf["database"] == {"host": boot.HOST, "port": cluster.pg.port, "user": "praefect",
                                "password": "praefectSqlPassw0rd", "dbname": DATABASE, "sslmode": "require"}
    assert conf["failover"] == {"enabled": True}
    (storage,) = conf["virtual_storage"]
    assert storage["name"] == "default" and storage["default_replication_factor"] == 3
    assert storage["node"] == [{"storage": n, "address": f"tcp://{ip}:8075", "token": "praefectInternalT0ken"}
                               for n, ip in NODES.items()]
    assert all(settings[s]["enable"] is False for s in ("gitaly", "puma", "sidekiq", "nginx", "postgresql", "redis"))

    everything = "".join(r.stdout + r.stderr for r in results) + "".join(
        s.read("/var/log/gitlab-cfn-fakes.log") for s in servers)
    assert [s for s in SECRET_VALUES if s in everything] == []

    # A reboot: nothing created again (same role and database), nothing left to migrate.
    oids = cluster.oids()
    servers[0].clear_events()
    again = servers[0].boot(cluster.env, timeout=120)
    assert_succeeded(again, servers[0])
    assert "created" not in again.stderr
    assert cluster.oids() == oids
    assert [int(r[0]) for r in cluster.praefect_db("SELECT applied FROM praefect_boot_evidence ORDER BY at")] == [5, 0, 0]


def render(env: dict[str, str], secrets: dict[str, str] | None = None, within: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess:
    """praefect.sh sourced (it then runs nothing) and its own functions rendering gitlab.rb (the
    command prefixed by WITHIN, such as a namespace of its own)."""
    secrets = secrets or {"DB_USER": MASTER[0], "DB_PASSWORD": MASTER[1], "PRAEFECT_DB_USER": "praefect",
                          "PRAEFECT_DB_PASSWORD": "praefectSqlPassw0rd", "EXTERNAL_TOKEN": "praefectExternalT0ken",
                          "INTERNAL_TOKEN": "praefectInternalT0ken"}
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as program:
        program.write(userdata.body("praefect"))
        program.flush()
        return subprocess.run([*within, "bash", "-c",
                               f"source {program.name}\nrequired_env\nparse_gitaly_nodes\nrender_gitlab_rb\n"],
                              capture_output=True, text=True, timeout=30,
                              env={"PATH": boot.BOOT_PATH, "LANG": "C.UTF-8", **env, **secrets})


RENDER_ENV = {"AWS_REGION": boot.REGION, "CFN_STACK": "gitlab-test", "DB_HOST": "praefect.abc.rds.amazonaws.com",
              "DB_PORT": "5432", "PRAEFECT_DB_NAME": DATABASE, "GITALY_NODES": GITALY_NODES, "VIRTUAL_STORAGE": "cluster",
              "LOG_GROUP_ID": "0a1b2c3d", "BUNDLE_PARAMETER": "/gitlab-cfn/gitlab-test/praefect/boot-bundle",
              **{v: f"arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:{n}-AbCdEf" for v, (n, _) in SECRETS.items()}}


@pytest.mark.parametrize("minor", versions.SUPPORTED_MINORS, ids=lambda m: f"{m[0]}.{m[1]}")
def test_the_praefect_gitlab_rb_is_documented_on_every_supported_version(minor):
    done = render(RENDER_ENV)
    assert done.returncode == 0, done.stderr
    assert unknown_settings(done.stdout, versions.SETTINGS_RELEASE[minor]) == []
    conf = boot.evaluate_gitlab_rb(done.stdout)["settings"]["praefect"]["configuration"]
    assert conf["virtual_storage"][0]["name"] == "cluster"


def test_no_private_address_for_the_exporters_fails_the_render_in_one_line():
    """With a monitoring server (METRICS_SCRAPED) the exporters listen on the private IPv4
    address; a network namespace of its own has none (only loopback), so lib/exporters.sh's
    metrics_host fails, and the render stops with nothing printed: the boot (which renders
    gitlab.rb into a variable under set -e before writing it) stops there too."""
    done = render({**RENDER_ENV, "METRICS_SCRAPED": "true"}, within=("unshare", "--net"))
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.endswith("error: this server has no private IPv4 address for its exporters (hostname -I: '')")
    # The same render with an address: the exporter key is there.
    done = render({**RENDER_ENV, "METRICS_SCRAPED": "true"})
    assert done.returncode == 0 and "prometheus_listen_addr: " in done.stdout


@pytest.mark.parametrize("nodes, message", [
    ("gitaly-1=10.0.1.23,gitaly-2=10.0.2.41",
     "GITALY_NODES: 2 Gitaly node(s); a Gitaly Cluster needs at least 3 (the replication factor)"),
    ("gitaly-1=10.0.1.23,gitaly-2=10.0.2.41,gitaly-1=10.0.1.77", "GITALY_NODES: node name 'gitaly-1' appears twice"),
    ("gitaly-1=10.0.1.23,gitaly-2,gitaly-3=10.0.1.77",
     "GITALY_NODES: 'gitaly-2' is not NAME=PRIVATE_IPV4 (for example gitaly-1=10.0.1.23)"),
])
def test_gitaly_nodes_that_cannot_make_a_cluster_are_refused_with_one_line(nodes, message):
    done = render({**RENDER_ENV, "GITALY_NODES": nodes})
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.endswith("error: " + message)


def test_a_praefect_whose_database_password_differs_fails_its_boot_with_the_reason(cluster):
    """The Praefect user exists already with another password (a secret made anew): the user
    is kept as it is, and the migration's login fails the boot, signalled, with PostgreSQL's reason."""
    cluster.pg.admin("CREATE ROLE praefect LOGIN PASSWORD 'anotherPassw0rd'")
    server = cluster.server("praefect-1")
    result = server.boot(cluster.env, timeout=120)
    assert result.returncode == 1
    assert [s["exit_code"] for s in server.signals()] == [1]
    assert "created database praefect_production" in result.stderr
    assert "created database user" not in result.stderr
    assert 'password authentication failed for user "praefect"' in result.stderr
    assert "error: the locked bootstrap phase failed" in result.stderr


@pytest.mark.parametrize("role", ["praefect", "gitlab-sidekiq"])
def test_the_new_roles_programs_as_run_are_shellcheck_clean(tmp_path, role):
    """What the bootstrap runs for the new roles, with their preamble's variables exported."""
    names = sorted(RENDER_ENV) + ["CFN_RESOURCE", "BOOT_ROLE"] if role == "praefect" else sorted(
        set(boot.preamble_values(5432, "db", {v: "arn" for v in boot.SECRETS})) | {"BOOT_ROLE", "RUN_SIDEKIQ"}
        | {"GITALY_STORAGE", "CFN_RESOURCE"})
    preamble = userdata.render(role, {n: "x" for n in names})[:-len(userdata.script(role))]
    path = tmp_path / f"{role}.sh"
    path.write_text(preamble + userdata.body(role))
    done = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_settings_check_refuses_praefect_keys_no_supported_version_documents():
    """The gate above can fail: the pre-14.0 elector key and a misspelt replication factor."""
    text = render(RENDER_ENV).stdout
    wrong = text.replace("default_replication_factor", "replication_factor").replace("  failover:", "  elector:")
    assert unknown_settings(wrong) == ["praefect['configuration'][:elector]",
                                       "praefect['configuration'][:replication_factor]"]


def test_the_same_value_in_both_praefect_tokens_fails_the_boot_before_anything_is_written(cluster):
    """With one token for both, a client of the load balancer could call the Gitaly nodes directly."""
    import json

    boot.secrets_client(cluster.standin.endpoint).put_secret_value(
        SecretId=cluster.arns["PRAEFECT_INTERNAL_SECRET_ARN"], SecretString=json.dumps({"token": "praefectExternalT0ken"}))
    server = cluster.server("praefect-1")
    result = server.boot(cluster.env, timeout=60)
    assert result.returncode == 1 and [s["exit_code"] for s in server.signals()] == [1]
    assert "error: the Praefect external and internal tokens are the same secret value" in result.stderr
    assert not server.exists("/etc/gitlab/gitlab.rb")
    assert cluster.pg.admin("SELECT count(*) FROM pg_roles WHERE rolname = 'praefect'") == "0"
