"""One module per nested template. Each exposes ``DESCRIPTION`` and ``build(tier)``."""

from gitlab_cfn.compile.tiers import (
    app,
    bastion,
    cache,
    database,
    dns,
    gitaly,
    network,
    praefect,
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
    "gitaly": gitaly,
    "praefect": praefect,
    "app": app,
    "dns": dns,
}
