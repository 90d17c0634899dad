"""Build configuration: what is decided when the templates are compiled.

Everything here changes the *shape* of the templates (how many subnets, whether
bastions exist, which storage type a volume has), so it is chosen in Python at
build time instead of through CloudFormation Conditions. Values that an
operator may change on a live stack (instance sizes, CIDRs, the domain) are
template parameters; for those the config only sets the parameter's default.

The YAML file is optional and every key in it is optional: the defaults are the
proof-of-concept described in GitLab's AWS installation guide. Validation runs
before anything is rendered and fails on the first bad field with one line
naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitlab_cfn.compile import choices, sizes, strict_yaml
from gitlab_cfn.errors import ConfigError


def _one_of(choices):
    def check(path, value):
        if value not in choices:
            allowed = ", ".join(str(c) for c in choices)
            raise ConfigError(f"{path}: must be one of {allowed} (got {value!r})")
    return check


def _int_between(low, high):
    def check(path, value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                f"{path}: must be a whole number from {low} to {high} (got {value!r})"
            )
    return check


def _not_burstable(choices, prefix=""):
    """A choice from ``choices``; a burstable type (t2, t3, t3a, t4g...) gets its own answer."""
    inner = _one_of(choices)

    def check(path, value):
        if isinstance(value, str) and value.removeprefix(prefix).startswith("t") and value not in choices:
            raise ConfigError(
                f"{path}: burstable types are not allowed (GitLab's reference architectures forbid "
                f"them: CPU credits run out under sustained load) (got {value!r})")
        inner(path, value)
    return check


def _boolean(path, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: must be true or false (got {value!r})")


def _setting(default, check, doc):
    """A config field: its default, its validator and a one-line description."""
    return field(default=default, metadata={"check": check, "doc": doc})


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str = _setting(
        "db.m6i.large", _not_burstable(choices.DB_INSTANCE_CLASSES, "db."),
        "default RDS instance class (burstable db.t* classes are not offered)")
    storage_type: str = _setting(
        "io1", _one_of(("io1", "gp3")), "RDS storage type (the guide uses Provisioned IOPS, io1)")


@dataclass(frozen=True)
class CacheConfig:
    node_type: str = _setting(
        "cache.t3.medium", _one_of(choices.CACHE_NODE_TYPES),
        "default ElastiCache node type (the burstable cache.t3.medium of the guide is refused "
        "for every other size)")
    replicas: int = _setting(
        1, _int_between(1, 5), "read replicas besides the primary, spread over the AZs")
    separate_cache: bool = _setting(
        False, _boolean,
        "a second replication group for GitLab's cache (allkeys-lru), the first one keeping "
        "the persistent data (noeviction): GitLab's separate Redis instances, from 10k")


@dataclass(frozen=True)
class GitalyConfig:
    instance_type: str = _setting(
        "c5.xlarge", _not_burstable(choices.ALL_INSTANCE_TYPES), "default Gitaly instance type")
    volume_type: str = _setting(
        "io1", _one_of(("io1", "gp3")), "EBS type of the single Gitaly server's repository volume (a Gitaly Cluster's servers take gp3)")
    volume_iops: int = _setting(
        0, _int_between(0, 64000),
        "default IOPS of the single Gitaly server's volume; 0: the POC's (1000 on io1, 3000 on gp3), "
        "which every size keeps. GitLab recommends at least 8,000 read / 2,000 write (a Gitaly "
        "Cluster's servers take 8000)")
    nodes: int = _setting(
        1, _int_between(1, 9),
        "Gitaly servers: 1 (one server) or a Gitaly Cluster of at least 3, spread over the AZs, "
        "behind Praefect")
    keep_single_server: bool = _setting(
        False, _boolean,
        "with a Gitaly Cluster: keep the existing single Gitaly server and its volume as storage "
        "'default' (the cluster becomes storage 'cluster') until its repositories are moved")


@dataclass(frozen=True)
class PraefectConfig:
    instance_type: str = _setting(
        "c5.large", _not_burstable(choices.ALL_INSTANCE_TYPES), "default Praefect instance type")
    nodes: int = _setting(
        3, _int_between(1, 9), "Praefect servers (Auto Scaling group; at least 3 in a cluster)")
    database: str = _setting(
        "main", _one_of(("main", "own")),
        "Praefect's database: 'main' (database praefect_production and user praefect on the main "
        "RDS instance) or 'own' (a second RDS Multi-AZ instance)")
    db_instance_class: str = _setting(
        "db.m6i.large", _not_burstable(choices.DB_INSTANCE_CLASSES, "db."),
        "default RDS class of Praefect's own instance (database: own)")


@dataclass(frozen=True)
class SidekiqConfig:
    instance_type: str = _setting(
        "m5.xlarge", _not_burstable(choices.ALL_INSTANCE_TYPES), "default Sidekiq instance type")
    min_size: int = _setting(
        0, _int_between(0, 50),
        "Sidekiq Auto Scaling group minimum; 0: no Sidekiq group, the Rails servers run Sidekiq")
    max_size: int = _setting(0, _int_between(0, 100), "Sidekiq Auto Scaling group maximum")
    scale_out_cpu: int = _setting(
        60, _int_between(10, 95), "average CPU % above which one Sidekiq server is added")
    scale_in_cpu: int = _setting(
        45, _int_between(5, 90), "average CPU % below which one Sidekiq server is removed")


@dataclass(frozen=True)
class MonitoringConfig:
    node: bool = _setting(
        False, _boolean,
        "a monitoring server running the GitLab package's Prometheus only, scraping every server of the "
        "stack it finds by EC2 service discovery (GitLab's reference architectures' monitoring node); "
        "the other servers' exporters then listen on their private address, for it only")
    instance_type: str = _setting(
        "c5.large", _not_burstable(choices.ALL_INSTANCE_TYPES),
        "default instance type of the monitoring server (each size sets GitLab's)")


@dataclass(frozen=True)
class AppConfig:
    instance_type: str = _setting(
        "c5.xlarge", _not_burstable(choices.ALL_INSTANCE_TYPES), "default GitLab instance type")
    min_size: int = _setting(
        2, _int_between(1, 50),
        "Auto Scaling group minimum size: the servers a new stack starts with (no desired capacity "
        "is set, so a stack update never undoes a scale-out)")
    max_size: int = _setting(4, _int_between(1, 100), "Auto Scaling group maximum size")
    scale_out_cpu: int = _setting(
        60, _int_between(10, 95), "average CPU % above which one instance is added")
    scale_in_cpu: int = _setting(
        45, _int_between(5, 90), "average CPU % below which one instance is removed")
    gitlab_ami: str = _setting(
        "ssm-parameter", _one_of(("ssm-parameter", "image-id")),
        "how the GitLab AMI is given: an SSM parameter path, or a plain image id")


@dataclass(frozen=True)
class BuildConfig:
    size: str = _setting(
        "poc", _one_of(sizes.NAMES),
        "GitLab reference architecture the defaults follow (docs/sizes.md); poc: the guide's "
        "proof of concept")
    az_count: int = _setting(2, _one_of((2, 3)), "availability zones the VPC spans")
    nat_gateways: str = _setting(
        "per-az", _one_of(("per-az", "single")),
        "one NAT gateway per AZ, or a single shared one for cheaper test stacks")
    bastions: bool = _setting(True, _boolean, "bastion hosts A and B; false: Session Manager only")
    ssh_key_pair: bool = _setting(True, _boolean, "instances take an EC2 key pair parameter")
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    gitaly: GitalyConfig = field(default_factory=GitalyConfig)
    app: AppConfig = field(default_factory=AppConfig)
    sidekiq: SidekiqConfig = field(default_factory=SidekiqConfig)
    praefect: PraefectConfig = field(default_factory=PraefectConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    @property
    def cluster(self) -> bool:
        """A Gitaly Cluster (Praefect) instead of one Gitaly server."""
        return self.gitaly.nodes > 1

    @property
    def sidekiq_group(self) -> bool:
        """Sidekiq on its own servers (the Rails servers then run none)."""
        return self.sidekiq.min_size > 0

    def __post_init__(self):
        self._check_shape()
        app = self.app
        if not app.min_size <= app.max_size:
            raise ConfigError(
                "app: min_size <= max_size must hold "
                f"(got {app.min_size} and {app.max_size})")
        if app.scale_in_cpu >= app.scale_out_cpu:
            raise ConfigError(
                "app.scale_in_cpu: must be lower than app.scale_out_cpu "
                f"(got {app.scale_in_cpu} and {app.scale_out_cpu})")


def _check_shape(self) -> None:
    """Contradictions between keys, each refused with the key to change."""
    gitaly, praefect, sidekiq = self.gitaly, self.praefect, self.sidekiq
    if gitaly.nodes == 2:
        raise ConfigError(
            "gitaly.nodes: a Gitaly Cluster needs at least 3 Gitaly servers whatever the number of "
            "AZs; use 1 (one server) or 3 to 9 (got 2)")
    if self.cluster and praefect.nodes < 3:
        raise ConfigError(
            f"praefect.nodes: a Gitaly Cluster needs at least 3 Praefect servers (got {praefect.nodes})")
    if gitaly.keep_single_server and not self.cluster:
        raise ConfigError(
            "gitaly.keep_single_server: only with a Gitaly Cluster (gitaly.nodes 3 or more)")
    if self.size != "poc" and self.cache.node_type.startswith("cache.t"):
        raise ConfigError(
            f"cache.node_type: burstable types are not allowed for size {self.size} "
            f"(got {self.cache.node_type!r})")
    if sidekiq.min_size > sidekiq.max_size:
        raise ConfigError(
            "sidekiq: min_size <= max_size must hold "
            f"(got {sidekiq.min_size} and {sidekiq.max_size})")
    if sidekiq.scale_in_cpu >= sidekiq.scale_out_cpu:
        raise ConfigError(
            "sidekiq.scale_in_cpu: must be lower than sidekiq.scale_out_cpu "
            f"(got {sidekiq.scale_in_cpu} and {sidekiq.scale_out_cpu})")
    if gitaly.volume_iops:
        low, high = (100, 64000) if gitaly.volume_type == "io1" else (3000, 16000)
        if not low <= gitaly.volume_iops <= high:
            raise ConfigError(
                f"gitaly.volume_iops: {gitaly.volume_type} takes {low} to {high} IOPS "
                f"(got {gitaly.volume_iops})")


BuildConfig._check_shape = _check_shape


def _build(cls, data: Any, path: str):
    if not isinstance(data, dict):
        where = path or "config"
        raise ConfigError(f"{where}: must be a mapping of keys to values (got {data!r})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            if where in _REMOVED:
                raise ConfigError(f"{where}: no longer a setting: {_REMOVED[where]}")
            raise ConfigError(f"{where}: unknown key (allowed: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        where = f"{path}.{name}" if path else name
        value = data[name]
        if cls is BuildConfig and name in _NESTED:
            values[name] = _build(_NESTED[name], value, where)
        else:
            f.metadata["check"](where, value)
            values[name] = value
    return cls(**values)


# Settings that were removed, and why, for a clear answer to an old config.
_REMOVED = {
    "app.desired_capacity": "the group starts at app.min_size and keeps the capacity scaling gives it "
                            "(a desired capacity in the template would be restored by every stack update)",
}

_NESTED = {
    "database": DatabaseConfig,
    "cache": CacheConfig,
    "gitaly": GitalyConfig,
    "app": AppConfig,
    "sidekiq": SidekiqConfig,
    "praefect": PraefectConfig,
    "monitoring": MonitoringConfig,
}


def _merged(base: dict, over: dict) -> dict:
    """``over`` written over ``base``, nested mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(data: dict | None) -> BuildConfig:
    """Validate a mapping (as read from YAML) and return the build config: the
    size's defaults (``sizes``), with every key the mapping gives written over them."""
    data = data or {}
    if isinstance(data, dict) and "size" in data:
        BuildConfig.__dataclass_fields__["size"].metadata["check"]("size", data["size"])
        data = _merged(sizes.defaults(data["size"]), data)
    return _build(BuildConfig, data, "")


def load(path: str | Path | None) -> BuildConfig:
    """Read and validate a YAML config file; no file means all defaults."""
    if path is None:
        return BuildConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    try:
        data = strict_yaml.load(text)
    except strict_yaml.DuplicateKey as exc:
        raise ConfigError(f"--config: {path}: {exc.problem}; each key may be given once") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--config: {path} is not valid YAML{where}") from None
    return from_dict(data)


def describe() -> list[tuple[str, Any, str]]:
    """Every config key with its default and description, for docs and --help."""
    rows = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            if cls is BuildConfig and f.name in _NESTED:
                walk(_NESTED[f.name], key + ".")
            else:
                rows.append((key, f.default, f.metadata["doc"]))

    walk(BuildConfig, "")
    return rows
