"""The monitoring server booted as EC2 boots it, and the exporters of the servers it scrapes.

The program is ``userdata.body("monitoring")`` on the real paths in its own namespaces
(tests/support/boot.py). ``gitlab-ctl reconfigure`` is the fake of support/fakebin: it refuses a
gitlab.rb key the installed release does not document, writes Prometheus's configuration as the
package does (support/fakebin/prometheus_fake.py) and checks it with the real ``promtool check
config`` (Debian's prometheus package) before starting a Prometheus that answers ``/-/ready``.

The exporters' gitlab.rb lines (scripts/lib/exporters.sh) are rendered by each role's own
script, evaluated by the package's settings DSL (support/gitlab_rb_eval.rb) and checked against
every supported release's documented settings, and against the ports the monitoring server
scrapes (compile/scrape.py).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from gitlab_cfn.compile import config, scrape, userdata, versions

from support import boot
from support.boot_fixtures import boot_tools  # noqa: F401  (fixture)
from support.gitlab_rb import unknown_settings

CLUSTER = config.from_dict({"size": "10k", "az_count": 3, "gitaly": {"keep_single_server": True},
                            "monitoring": {"node": True}})
VPC = "vpc-0a1b2c3d4e5f60718"
ENV = {
    "AWS_REGION": boot.REGION, "CFN_STACK": "gitlab-test-PrometheusStack-1A2B3C", "BOOT_ROLE": "monitoring",
    "CFN_RESOURCE": "PrometheusAutoScalingGroup", "VPC_ID": VPC,
    "SCRAPE_JOBS": scrape.encode(scrape.jobs(CLUSTER)),
    "BUNDLE_PARAMETER": "/gitlab-cfn/gitlab-test/monitoring/boot-bundle", "GITLAB_CFN_READINESS_TIMEOUT": "10",
    "LOG_GROUP_ID": "0a1b2c3d",
}
# The oldest and newest supported releases (the package's keys are checked against each one's).
OLDEST, NEWEST = (f"{versions.SETTINGS_RELEASE[v]}-ee" for v in (min(versions.SETTINGS_RELEASE),
                                                                  max(versions.SETTINGS_RELEASE)))


def monitoring_server(tmp_path, version: str, program: str | None = None) -> boot.Server:
    server = boot.Server(tmp_path, "monitoring-1", version, role="monitoring")
    if program is not None:
        server.program = program
        server.write(server.program_path, program, 0o755)
    return server


@pytest.mark.parametrize("version", sorted({OLDEST, NEWEST}))
def test_the_monitoring_server_runs_prometheus_discovering_the_stacks_servers(tmp_path, boot_tools, version):  # noqa: F811
    server = monitoring_server(tmp_path, version)
    result = server.boot(ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [s["exit_code"] for s in server.signals()] == [0]
    rb = server.read("/etc/gitlab/gitlab.rb")
    assert unknown_settings(rb, versions.SETTINGS_RELEASE[tuple(int(p) for p in version.split(".")[:2])]) == []
    assert "roles ['monitoring_role']" in rb
    conf = yaml.safe_load(server.read("/var/opt/gitlab/prometheus/prometheus.yml"))
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert not any("kubernetes_sd_configs" in j for j in jobs.values())
    expected = scrape.jobs(CLUSTER)
    assert set(jobs) == {"prometheus"} | {j.name for j in expected}
    for job in expected:
        (sd,) = jobs[job.name]["ec2_sd_configs"]
        filters = {f["name"]: f["values"] for f in sd["filters"]}
        assert (sd["region"], sd["port"]) == (boot.REGION, job.port)
        assert filters == {"vpc-id": [VPC], "instance-state-name": ["running"],
                           "tag:aws:cloudformation:logical-id": list(job.logical_ids)}
        assert {"target_label": "role", "replacement": job.role} in jobs[job.name]["relabel_configs"]
    # Prometheus stays on localhost: Session Manager port forwarding reaches it, the network does not.
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    assert [e["action"] for e in server.events("gitlab-ctl")] == ["prometheus", "reconfigure"]
    # Then the CloudWatch agent: the boot log, to the stack's group.
    agent = json.loads(server.read("/opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json"))
    shipped = {e["file_path"]: e["log_group_name"] for e in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    assert shipped == {"/var/log/cloud-init-output.log": "/gitlab-cfn/gitlab-test/0a1b2c3d/boot"}   # Prometheus starts within reconfigure


def mutated(old: str, new: str) -> str:
    program = userdata.body("monitoring")
    assert program.count(old) == 1, old
    return program.replace(old, new)


@pytest.mark.parametrize("old, new, reason", [
    # A duration Prometheus cannot parse: promtool refuses the configuration.
    ("'refresh_interval' => '60s'", "'refresh_interval' => 'every minute'", "is refused"),
    # The Kubernetes jobs left in: no cluster to discover on an EC2 server.
    ("prometheus['monitor_kubernetes'] = false\nprometheus['scrape", "prometheus['scrape", "in-cluster configuration"),
    # A misspelt setting: the release does not document it.
    ("prometheus['listen_address'] = $", "prometheus['listen_adress'] = $", "does not document"),
], ids=["bad-duration", "kubernetes-jobs", "misspelt-key"])
def test_a_bad_prometheus_configuration_fails_the_boot(tmp_path, boot_tools, old, new, reason):  # noqa: F811
    server = monitoring_server(tmp_path, NEWEST, mutated(old, new))
    result = server.boot(ENV, timeout=120)
    assert result.returncode != 0
    assert [s["exit_code"] for s in server.signals()] == [result.returncode]
    assert reason in result.stderr, result.stderr


def test_a_malformed_scrape_job_fails_the_boot_naming_it(tmp_path, boot_tools):  # noqa: F811
    server = monitoring_server(tmp_path, NEWEST)
    result = server.boot({**ENV, "SCRAPE_JOBS": "gitaly:gitaly:port:GitalyInstance"}, timeout=60)
    assert result.returncode != 0
    assert "SCRAPE_JOBS: 'gitaly:gitaly:port:GitalyInstance' is not role:exporter:port" in result.stderr


# -- the exporters of the scraped servers ---------------------------------------------------------

def private_ipv4() -> str:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
    return next(a for a in out if re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", a))


def rendered(role: str, scraped: bool) -> str:
    """The gitlab.rb lines each role's own script renders that its exporters depend on: the
    program sourced with its last line (``main``) cut, its functions called."""
    program = userdata.body(role)
    program = program[:program.rstrip("\n").rfind("\n") + 1]
    env = {"PATH": boot.BOOT_PATH, "LANG": "C.UTF-8", **({"METRICS_SCRAPED": "true"} if scraped else {})}
    if role in ("gitlab-app", "gitlab-sidekiq"):
        calls = f"exporters_gitlab_rb {role}"
    elif role == "gitaly":
        env.update(GITALY_STORAGE="default", GITALY_TOKEN="t", SHELL_SECRET="s", GITLAB_DOMAIN="gitlab.example.com")
        calls = "DATA_DIR=/var/opt/gitlab/git-data; render_gitlab_rb"
    else:
        env.update(GITALY_NODES="gitaly-1=10.0.1.23,gitaly-2=10.0.2.41,gitaly-3=10.0.1.77", VIRTUAL_STORAGE="default",
                   DB_HOST="db", DB_PORT="5432", PRAEFECT_DB_NAME="praefect_production")
        calls = ("parse_gitaly_nodes; EXTERNAL_TOKEN=e INTERNAL_TOKEN=i PRAEFECT_DB_USER=p PRAEFECT_DB_PASSWORD=w; "
                 "render_gitlab_rb")
    done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{program}\n{calls}\n"], capture_output=True, text=True,
                          env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def listen_addresses(role: str, settings: dict) -> dict[str, str]:
    """Exporter -> host:port it listens on, as the package reads the settings (its defaults when unset)."""
    node = settings.get("node_exporter", {}).get("listen_address", "localhost:9100")
    out = {"node": node}
    if role == "gitlab-app":
        out["workhorse"] = settings.get("gitlab_workhorse", {}).get("prometheus_listen_addr", "localhost:9229")
        puma = settings.get("puma", {})
        if puma.get("exporter_enabled"):
            out["puma"] = f"{puma['exporter_address']}:{puma['exporter_port']}"
    if role in ("gitlab-app", "gitlab-sidekiq"):
        sidekiq = settings.get("sidekiq", {})
        out["sidekiq"] = f"{sidekiq.get('listen_address', 'localhost')}:{sidekiq.get('listen_port', 8082)}"
    if role in ("gitaly", "praefect"):
        out[role] = settings.get(role, {}).get("configuration", {}).get(
            "prometheus_listen_addr", f"localhost:{scrape.PORTS[role]}")
    return out


@pytest.mark.parametrize("role", ["gitlab-app", "gitlab-sidekiq", "gitaly", "praefect"])
def test_scraped_exporters_listen_on_the_private_address_at_the_scraped_ports(role):
    ip = private_ipv4()
    text = rendered(role, scraped=True)
    assert unknown_settings(text) == []          # documented by every supported release
    settings = boot.evaluate_gitlab_rb(text)["settings"]
    addresses = listen_addresses(role, settings)
    wanted = {j.exporter: j.port for j in scrape.jobs(CLUSTER) if j.role == role}
    assert {e: a for e, a in addresses.items() if e in wanted} == {e: f"{ip}:{p}" for e, p in wanted.items()}
    assert "localhost" not in text and "127.0.0.1" not in text.replace("'127.0.0.0/8'", "")


@pytest.mark.parametrize("role", ["gitlab-app", "gitlab-sidekiq", "gitaly", "praefect"])
def test_without_a_monitoring_server_the_exporters_stay_on_localhost(role):
    text = rendered(role, scraped=False)
    assert "node_exporter" not in text and "prometheus_listen_addr" not in text and "exporter_" not in text
    settings = boot.evaluate_gitlab_rb(text)["settings"] if text.strip() else {}
    assert all(a.startswith("localhost:") for a in listen_addresses(role, settings).values())
