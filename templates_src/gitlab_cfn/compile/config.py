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

from gitlab_cfn.compile import choices, strict_yaml
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


def _boolean(path, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: must be true or false (got {value!r})")


def _setting(default, check, doc):
    """A config field: its default, its validator and a one-line description."""
    return field(default=default, metadata={"check": check, "doc": doc})


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str = _setting(
        "db.m6i.large", _one_of(choices.DB_INSTANCE_CLASSES),
        "default RDS instance class (burstable db.t* classes are not offered)")
    storage_type: str = _setting(
        "io1", _one_of(("io1", "gp3")), "RDS storage type (the guide uses Provisioned IOPS, io1)")


@dataclass(frozen=True)
class CacheConfig:
    node_type: str = _setting(
        "cache.t3.medium", _one_of(choices.CACHE_NODE_TYPES), "default ElastiCache node type")
    replicas: int = _setting(
        1, _int_between(1, 5), "read replicas besides the primary, spread over the AZs")


@dataclass(frozen=True)
class GitalyConfig:
    instance_type: str = _setting(
        "c5.xlarge", _one_of(choices.GITLAB_INSTANCE_TYPES), "default Gitaly instance type")
    volume_type: str = _setting(
        "io1", _one_of(("io1", "gp3")), "EBS type of the repository data volume")


@dataclass(frozen=True)
class AppConfig:
    instance_type: str = _setting(
        "c5.xlarge", _one_of(choices.GITLAB_INSTANCE_TYPES), "default GitLab instance type")
    min_size: int = _setting(
        2, _int_between(1, 20),
        "Auto Scaling group minimum size: the servers a new stack starts with (no desired capacity "
        "is set, so a stack update never undoes a scale-out)")
    max_size: int = _setting(4, _int_between(1, 20), "Auto Scaling group maximum size")
    scale_out_cpu: int = _setting(
        60, _int_between(10, 95), "average CPU % above which one instance is added")
    scale_in_cpu: int = _setting(
        45, _int_between(5, 90), "average CPU % below which one instance is removed")
    gitlab_ami: str = _setting(
        "ssm-parameter", _one_of(("ssm-parameter", "image-id")),
        "how the GitLab AMI is given: an SSM parameter path, or a plain image id")


@dataclass(frozen=True)
class BuildConfig:
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

    def __post_init__(self):
        app = self.app
        if not app.min_size <= app.max_size:
            raise ConfigError(
                "app: min_size <= max_size must hold "
                f"(got {app.min_size} and {app.max_size})")
        if app.scale_in_cpu >= app.scale_out_cpu:
            raise ConfigError(
                "app.scale_in_cpu: must be lower than app.scale_out_cpu "
                f"(got {app.scale_in_cpu} and {app.scale_out_cpu})")


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
        if name in _NESTED:
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
}


def from_dict(data: dict | None) -> BuildConfig:
    """Validate a mapping (as read from YAML) and return the build config."""
    return _build(BuildConfig, data or {}, "")


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
            if f.name in _NESTED:
                walk(_NESTED[f.name], key + ".")
            else:
                rows.append((key, f.default, f.metadata["doc"]))

    walk(BuildConfig, "")
    return rows
