"""What the monitoring node scrapes: each server role's exporters, and where they are.

One table, ``PORTS`` with ``servers`` (which roles run which exporters) and ``jobs``, read by the
security groups (monitoring node -> each exporter port, and nothing else), by the monitoring
node's user data (``SCRAPE_JOBS``, from which
``scripts/monitoring.sh`` writes Prometheus's ``ec2_sd_configs``) and by the flow check
(``verify/flows.py``: the same value, read back from the built template).

The servers are found by EC2 service discovery, never listed: a job selects the running
instances of the stack's VPC whose ``aws:cloudformation:logical-id`` tag (set by
CloudFormation on the instances it creates, and propagated by an Auto Scaling group to the
instances it launches, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-resource-tags.html)
names the group or instance of that role. The VPC is the stack's own, so no other stack's
servers match.

Ports and paths are the Linux package's defaults for every supported release (omnibus-gitlab
files/gitlab-config-template/gitlab.rb.template, 18.11.11+ee.0 to 19.3.0+ee.0, and
``gitlab_cfn/data/gitlab-rb-settings.json``): node_exporter ``localhost:9100``, Workhorse
``gitlab_workhorse['prometheus_listen_addr'] = "localhost:9229"``, Puma's exporter
``puma['exporter_port'] = 8083`` (off by default: the boot turns it on), Sidekiq's
``sidekiq['listen_port'] = 8082``, Gitaly ``prometheus_listen_addr: 'localhost:9236'``,
Praefect ``prometheus_listen_addr: 'localhost:9652'``; every one serves ``/metrics``.
When the stack has a monitoring node the boot scripts move each one to the server's private
address (``scripts/lib/exporters.sh``); without one they stay on localhost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitlab_cfn.compile.config import BuildConfig

# Exporter name -> port (the package's defaults, see above).
PORTS = {
    "node": 9100,
    "workhorse": 9229,
    "puma": 8083,
    "sidekiq": 8082,
    "gitaly": 9236,
    "praefect": 9652,
}
# Prometheus's own port on the monitoring node (prometheus['listen_address'], 'localhost:9090').
PROMETHEUS_PORT = 9090


@dataclass(frozen=True)
class Job:
    """One scrape job: an exporter on the servers of one role."""
    role: str                 # boot role of the servers (userdata.ROLES)
    group: str                # security group of those servers (security_groups: <group>SecurityGroup)
    exporter: str             # key of PORTS
    logical_ids: tuple[str, ...]   # aws:cloudformation:logical-id of the servers (EC2 filter values)

    @property
    def port(self) -> int:
        return PORTS[self.exporter]

    @property
    def name(self) -> str:
        return f"{self.role}-{self.exporter}"


def servers(cfg: BuildConfig) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(role, security group, logical ids, exporters) of every server role of a build."""
    out = []
    app = ("node", "workhorse", "puma") + (() if cfg.sidekiq_group else ("sidekiq",))
    out.append(("gitlab-app", "App", ("AppAutoScalingGroup",), app))
    if cfg.sidekiq_group:
        out.append(("gitlab-sidekiq", "Sidekiq", ("SidekiqAutoScalingGroup",), ("node", "sidekiq")))
    gitaly = []
    if not cfg.cluster or cfg.gitaly.keep_single_server:
        gitaly.append("GitalyInstance")
    if cfg.cluster:
        gitaly += [f"Gitaly{n}Instance" for n in range(1, cfg.gitaly.nodes + 1)]
        out.append(("praefect", "Praefect", ("PraefectAutoScalingGroup",), ("node", "praefect")))
    out.insert(1, ("gitaly", "Gitaly", tuple(gitaly), ("node", "gitaly")))
    return out


def jobs(cfg: BuildConfig) -> list[Job]:
    return [Job(role, group, exporter, ids)
            for role, group, ids, exporters in servers(cfg) for exporter in exporters]


# SCRAPE_JOBS: 'role:exporter:port:LogicalId+LogicalId;...' (letters, digits, '-', ':', '+', ';').
_JOB = re.compile(r"^([a-z][a-z-]*):([a-z]+):(\d{2,5}):([A-Za-z0-9]+(?:\+[A-Za-z0-9]+)*)$")


def encode(items: list[Job]) -> str:
    """The user data value ``SCRAPE_JOBS`` of the monitoring node."""
    return ";".join(f"{j.role}:{j.exporter}:{j.port}:{'+'.join(j.logical_ids)}" for j in items)


def decode(text: str) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """(role, exporter, port, logical ids) of each job of a ``SCRAPE_JOBS`` value; ValueError
    names the first entry that is not ``role:exporter:port:Id[+Id...]``."""
    out = []
    for entry in str(text).split(";"):
        match = _JOB.match(entry)
        if not match:
            raise ValueError(f"SCRAPE_JOBS entry {entry!r} is not role:exporter:port:LogicalId[+LogicalId...]")
        out.append((match.group(1), match.group(2), int(match.group(3)), tuple(match.group(4).split("+"))))
    return out


def user_data_values(cfg: BuildConfig) -> dict[str, str]:
    """What a scraped server's preamble says (scripts/lib/exporters.sh): ``METRICS_SCRAPED``
    with a monitoring server; nothing without one, so those servers' user data stays as it was."""
    return {"METRICS_SCRAPED": "true"} if cfg.monitoring.node else {}
