"""The values the build settings and the launch parameters may take.

Read by ``config`` (to check a build config) and by ``catalog`` (to constrain
the parameters a launcher fills in), so the two agree and neither imports the
other for them.

Instance families are limited to current-generation, non-burstable x86 types
(GitLab's reference architectures forbid burstable classes for its
components; the GitLab AMIs are built for x86_64). The one exception is the
cache node default, ``cache.t3.medium``, which the guide itself names.
"""

from __future__ import annotations


def _sizes(families, sizes):
    return tuple(f"{fam}.{size}" for fam in families for size in sizes)


DB_INSTANCE_CLASSES = _sizes(
    ("db.m5", "db.m6i", "db.m6g", "db.r5", "db.r6i", "db.r6g"),
    ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge"),
)
CACHE_NODE_TYPES = (
    "cache.t3.medium",
    "cache.m5.large", "cache.m5.xlarge", "cache.m5.2xlarge",
    "cache.m6g.large", "cache.m6g.xlarge", "cache.m6g.2xlarge",
    "cache.r5.large", "cache.r5.xlarge",
    "cache.r6g.large", "cache.r6g.xlarge", "cache.r6g.2xlarge",
)
# EC2 sells no c5.8xlarge: c5 goes from 4xlarge to 9xlarge (the EC2 instance-type list,
# https://aws.amazon.com/ec2/instance-types/c5/); c5.9xlarge is among EXTRA_INSTANCE_TYPES.
GITLAB_INSTANCE_TYPES = tuple(t for t in _sizes(
    ("c5", "c6i", "m5", "m6i", "r5", "r6i"),
    ("xlarge", "2xlarge", "4xlarge", "8xlarge"),
) if t != "c5.8xlarge")
BASTION_INSTANCE_TYPES = ("t3.micro", "t3.small", "t3.medium", "t3a.micro", "t3a.small")
# GitLab 18 requires PostgreSQL 16 or later; the Linux package bundles 17.
DB_ENGINE_VERSIONS = ("16", "17")
# Cluster mode stays disabled; GitLab needs Redis 6 or later and recommends 7.
CACHE_ENGINE_VERSIONS = ("7.0", "7.1")
# Types the reference sizes (``sizes``) need beyond the list above: offered by a build
# that is not the proof of concept, so that the POC's templates stay as they were.
# Every one is a type EC2 sells in that family.
EXTRA_INSTANCE_TYPES = (
    "c5.large", "c5.9xlarge", "c5.12xlarge", "c5.18xlarge",
    "c6i.large", "c6i.12xlarge", "c6i.16xlarge",
    "m5.large", "m5.12xlarge", "m5.16xlarge",
    "m6i.large", "m6i.12xlarge", "m6i.16xlarge",
    "r5.large", "r5.12xlarge", "r5.16xlarge",
    "r6i.large", "r6i.12xlarge", "r6i.16xlarge",
)
ALL_INSTANCE_TYPES = GITLAB_INSTANCE_TYPES + EXTRA_INSTANCE_TYPES
