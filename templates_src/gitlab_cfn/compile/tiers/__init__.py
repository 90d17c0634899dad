"""One module per nested template. Each exposes ``DESCRIPTION`` and ``build(tier)``."""

from gitlab_cfn.compile.tiers import (
    app,
    backup,
    bastion,
    cache,
    database,
    dns,
    gitaly,
    logs,
    monitoring,
    network,
    praefect,
    prometheus,
    security_groups,
    storage,
)

MODULES = {
    "network": network,
    "security-groups": security_groups,
    "storage": storage,
    "database": database,
    "cache": cache,
    "bastion": bastion,
    "logs": logs,
    "gitaly": gitaly,
    "praefect": praefect,
    "app": app,
    "prometheus": prometheus,
    "monitoring": monitoring,
    "backup": backup,
    "dns": dns,
}
