"""User data: a short preamble of exported values, then a script joined in unchanged.

The boot scripts in ``scripts/`` are real bash files with no CloudFormation
syntax in them. The servers of the stack (``BOOTSTRAPPED``) receive::

    #!/bin/bash
    export AWS_REGION='...'        <- the preamble: Fn::Sub over ${NAME} placeholders
    export BOOT_ROLE='gitaly'         (the role, and where the boot bundle is)
    ...
    <scripts/bootstrap.sh>         <- joined in as literal text, never through Fn::Sub

and the bootstrap fetches the boot bundle (``bundle``), whose ``<role>.sh`` is
``body(role)``: ``scripts/lib/common.sh``, ``[scripts/lib/install.sh]``,
``scripts/<role>.sh`` joined, run with the preamble's variables exported. The
AMI builder, which runs outside a stack, gets the preamble and ``body("bake")``
directly. A ``${VAR}`` in a script is bash's, not CloudFormation's. Secrets are
never values here: the scripts read them from Secrets Manager at boot.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from troposphere import Base64, Join, Sub

from gitlab_cfn.errors import GitlabCfnError

SCRIPTS_DIR = Path(__file__).resolve().parents[3] / "scripts"
# The files of each role's user data, in order: libraries, then the role script.
ROLES = {
    "gitlab-app": ("lib/common.sh", "lib/cloudwatch.sh", "lib/backup.sh", "lib/email.sh", "lib/exporters.sh",
                   "gitlab-app.sh"),
    # Sidekiq-only servers (sizes from 2k): the application script, which branches on BOOT_ROLE
    # (it sources the backup functions too, but schedules no backup on a Sidekiq server).
    "gitlab-sidekiq": ("lib/common.sh", "lib/cloudwatch.sh", "lib/backup.sh", "lib/email.sh", "lib/exporters.sh",
                   "gitlab-app.sh"),
    "gitaly": ("lib/common.sh", "lib/cloudwatch.sh", "lib/single-service.sh", "lib/exporters.sh", "gitaly.sh"),
    "praefect": ("lib/common.sh", "lib/cloudwatch.sh", "lib/single-service.sh", "lib/exporters.sh",
                 "praefect.sh"),
    # The monitoring server (config monitoring.node): the GitLab package's Prometheus only.
    "monitoring": ("lib/common.sh", "lib/cloudwatch.sh", "monitoring.sh"),
    "bastion": ("lib/common.sh", "lib/install.sh", "bastion.sh"),
    "bake": ("lib/common.sh", "lib/install.sh", "bake-install.sh"),
}
# The roles whose user data is the bootstrap, and whose scripts are in the boot bundle.
BOOTSTRAPPED = ("bastion", "gitaly", "gitlab-app", "gitlab-sidekiq", "monitoring", "praefect")
BOOTSTRAP = "bootstrap.sh"
# EC2 refuses user data over 16 KB (before base64).
MAX_BYTES = 16 * 1024
# Longest value each kind of variable can take, for the build-time size check.
# A literal string counts at its own length.
MAX_LENGTHS = (
    ("CFN_STACK", 128),       # CloudFormation stack names
    ("GITLAB_DOMAIN", 253),   # a DNS name
    ("BUCKET_", 63),          # S3 bucket names
    ("_ARN", 112),            # secret ARNs: partition, region, account, generated name
    ("_HOST", 120),           # RDS and ElastiCache endpoints
    ("_CIDR", 18),
    ("_PORT", 5),
    ("AWS_REGION", 16),
    # /gitlab-cfn/<parent stack name, at most 128>/<role>/boot-bundle
    ("BUNDLE_PARAMETER", len("/gitlab-cfn//gitlab-app/boot-bundle") + 128),
    # gitaly-1=<private IPv4>,...: at most 9 nodes (config gitaly.nodes), 25 bytes each.
    ("GITALY_NODES", 9 * len("gitaly-9=255.255.255.255,")),
    ("_STORAGE", 16),         # storage names: default, cluster, gitaly-<n>
    # tcp://<private IPv4>:8075, or tcp://<internal load balancer DNS name>:2305; a DNS
    # name is at most 253 bytes.
    ("ADDRESS", len("tcp://") + 253 + len(":2305")),
    ("LOG_GROUP_ID", 8),      # 8 characters of the logs stack's id (tier logs, LogGroupId)
    ("_ID", 32),              # volume ids
    ("_NAME", 64),
    ("EMAIL_SENDER", 80),     # catalog.EMAIL_SENDER_MAX_LENGTH
    ("BACKUP_SERVER_SIDE", 4),  # 'true' (lib/backup.sh)
)
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class UserDataError(GitlabCfnError):
    pass


def body(role: str) -> str:
    """The libraries and the role script, exactly as they are in ``scripts/``."""
    try:
        parts = [(SCRIPTS_DIR / name).read_text() for name in ROLES[role]]
    except FileNotFoundError as exc:
        raise UserDataError(f"boot script missing: {exc.filename} (is the package installed from its checkout?)") from None
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


def script(role: str) -> str:
    """What follows the preamble in the user data of ``role``."""
    if role not in BOOTSTRAPPED:
        return body(role)
    try:
        return (SCRIPTS_DIR / BOOTSTRAP).read_text()
    except FileNotFoundError as exc:
        raise UserDataError(f"boot script missing: {exc.filename} (is the package installed from its checkout?)") from None


def preamble(role: str, names: list[str]) -> str:
    """The preamble with ``${NAME}`` placeholders, in a stable order."""
    for name in names:
        if not NAME.match(name):
            raise UserDataError(f"user data variable {name!r} must be UPPER_SNAKE_CASE")
    lines = ["#!/bin/bash", f"# gitlab-cfn user data ({role})"]
    lines += [f"export {name}='${{{name}}}'" for name in sorted(names)]
    return "\n".join(lines) + "\n"


def render(role: str, values: dict[str, str]) -> str:
    """The exact text an instance receives, for given values (tests, previews)."""
    values = with_role(role, values)
    text = preamble(role, list(values))
    for name, value in values.items():
        if "'" in value or "\n" in value:
            raise UserDataError(f"{name}: a user data value cannot hold quotes or newlines")
        text = text.replace(f"${{{name}}}", value)
    return text + script(role)


def with_role(role: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values, and ``BOOT_ROLE`` for a role that boots through the bootstrap."""
    return {**values, "BOOT_ROLE": role} if role in BOOTSTRAPPED else dict(values)


def worst_size(role: str, values: dict[str, Any]) -> int:
    """The longest user data ``role`` can receive: every value at its longest."""
    values = with_role(role, values)
    return len(preamble(role, list(values)).encode()) + len(script(role).encode()) + sum(
        _max_length(name, value) for name, value in values.items())


def user_data(role: str, values: dict[str, Any]) -> Base64:
    """``Fn::Base64`` of the preamble (``Fn::Sub``) joined with the script (literal)."""
    worst = worst_size(role, values)
    if worst > MAX_BYTES:
        raise UserDataError(f"user data of {role} may reach {worst} bytes; EC2 allows {MAX_BYTES}")
    values = with_role(role, values)
    return Base64(Join("", [Sub(preamble(role, list(values)), **values), script(role)]))


def _max_length(name: str, value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    for pattern, length in MAX_LENGTHS:
        if pattern in name:
            return length
    raise UserDataError(f"user data variable {name}: no maximum length known for its value")
