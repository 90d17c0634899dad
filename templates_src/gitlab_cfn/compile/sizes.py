"""The sizes a build can take: GitLab's reference architectures on AWS services.

``size:`` in the build config picks one row of ``SIZES``; the row sets the default of
every count and instance type, and any key written in the config overrides it
(``defaults`` gives the row as config keys; ``config.from_dict`` merges the file over
it). ``poc`` is the proof of concept of GitLab's AWS installation guide: its row sets
nothing, so the build is the one the guide describes.

The numbers come from GitLab's documentation, *Reference architectures*, the pages
``administration/reference_architectures/{2k,3k,5k,10k,25k,50k}_users.md`` as
published in 2026 (GitLab 18.x; the tables this project was checked against are
summarised in the repository's reference notes), in their AWS instance column, with
the rules that page gives for AWS services:

- RDS PostgreSQL (a Multi-AZ DB *instance*) replaces PostgreSQL, PgBouncer and Consul:
  one primary and its Multi-AZ standby stand in for the three PostgreSQL nodes.
- ElastiCache (cluster mode disabled) replaces Redis and Sentinel: the three Redis
  nodes are a primary and two replicas; from 10k, two replication groups (cache and
  persistent, GitLab's separate Redis instances).
- The internal load balancer is an AWS Network Load Balancer, not a server.
- The monitoring node (GitLab's Prometheus, one server) is built on request
  (``monitoring.node: true``, tier ``prometheus``) with the size's instance type;
  CloudWatch metrics and alarms are there either way.

RDS has no ``c5`` or ``m5`` class for every size (and ``db.m5`` is a previous
generation): each PostgreSQL row maps GitLab's EC2 type to the RDS class of the same
vCPU and memory in the current general-purpose generation, ``RDS_CLASS_OF``. The
Praefect database's ``c5.large`` (2 vCPU, 4 GiB) has no compute-optimised RDS class at
all: the nearest non-burstable class is ``db.m6i.large`` (2 vCPU, 8 GiB).

1k is not offered: GitLab's 1k architecture is one server running every component,
Gitaly included. With PostgreSQL and Redis moved to RDS and ElastiCache, what is left
is Rails, Sidekiq and Gitaly on one server, and a server holding repositories cannot
belong to an Auto Scaling group (only stateless components may, the same page says);
splitting it into a group of Rails servers and one Gitaly server is the ``poc`` shape.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where the numbers come from (recorded with the table: they change between releases).
SOURCE = ("GitLab documentation, administration/reference_architectures/{2k..50k}_users.md, "
          "AWS instance types, as published in 2026 (GitLab 18.x)")

# GitLab's EC2 type for PostgreSQL -> the RDS class used for it (same vCPU and memory,
# current generation; db.m5 is a previous generation and RDS has no db.c5 at all).
RDS_CLASS_OF = {
    "m5.large": "db.m6i.large",
    "m5.xlarge": "db.m6i.xlarge",
    "m5.2xlarge": "db.m6i.2xlarge",
    "m5.4xlarge": "db.m6i.4xlarge",
    "m5.8xlarge": "db.m6i.8xlarge",
    # Praefect's PostgreSQL: no compute-optimised RDS class; nearest non-burstable one.
    "c5.large": "db.m6i.large",
}

# gp3 IOPS for the data volume of every server of a Gitaly Cluster: GitLab recommends at
# least 8,000 read and 2,000 write IOPS; an EBS volume's IOPS are shared by reads and
# writes, so 8,000 provisioned IOPS cover both. gp3 rather than io1: 8,000 IOPS on gp3
# cost a fraction of io1's and gp3 provisions IOPS independently of size (up to 16,000).
# The single Gitaly server (2k, or kept beside a cluster) keeps the volume the POC built
# (gitaly.volume_type, GitalyVolumeSize, GitalyVolumeIops): changing a volume's type is an
# Elastic Volumes modification after which the volume cannot be modified again for 6 hours
# (https://docs.aws.amazon.com/ebs/latest/userguide/modify-volume-requirements.html), and
# the parameters' constraints must keep accepting the values the POC stack was created with
# (a deploy reuses them). Raise its IOPS with GitalyVolumeIops (in place).
GITALY_CLUSTER_IOPS = 8000


# Nodes of each ElastiCache replication group: a primary and one replica in another AZ,
# whatever GitLab's node count. GitLab's three Redis nodes are a primary, a replica and
# the quorum Redis Sentinel needs to elect a new primary; ElastiCache's Multi-AZ
# failover is run by AWS and needs no quorum, so a primary and a replica fail over the
# same way. Two nodes also keep the move from ``poc`` (one replica) free of
# replacements: ``PreferredCacheClusterAZs`` is create-only, and a third node would
# add an entry to it and replace the replication group with its data. ``cache.replicas``
# adds replicas for reads on a new stack.
CACHE_NODES = 2


@dataclass(frozen=True)
class Size:
    name: str
    users: str
    rails: tuple[int, str]                 # count, EC2 type
    sidekiq: tuple[int, str] | None        # None: Sidekiq runs on the Rails servers
    postgres: str                          # GitLab's EC2 type for PostgreSQL
    redis: tuple[int, str]                 # nodes per replication group, EC2 type
    separate_cache: bool                   # two replication groups: cache and persistent
    gitaly: tuple[int, str]
    praefect: tuple[int, str] | None       # None: no Gitaly Cluster
    praefect_postgres: str | None
    monitoring: str                        # EC2 type of the optional monitoring node

    @property
    def db_class(self) -> str:
        return RDS_CLASS_OF[self.postgres]

    @property
    def cache_nodes(self) -> int:
        """Nodes per replication group as built: a primary and one replica (see CACHE_NODES)."""
        return CACHE_NODES

    @property
    def cache_node_type(self) -> str:
        return "cache." + self.redis[1]

    @property
    def cluster(self) -> bool:
        return self.praefect is not None


SIZES: dict[str, Size] = {s.name: s for s in (
    Size("2k", "2,000", (2, "c5.2xlarge"), (1, "m5.xlarge"), "m5.large", (1, "m5.large"), False,
         (1, "m5.xlarge"), None, None, "c5.large"),
    Size("3k", "3,000", (3, "c5.2xlarge"), (2, "m5.xlarge"), "m5.large", (3, "m5.large"), False,
         (3, "m5.xlarge"), (3, "c5.large"), "c5.large", "c5.large"),
    Size("5k", "5,000", (3, "c5.4xlarge"), (2, "m5.xlarge"), "m5.xlarge", (3, "m5.large"), False,
         (3, "m5.2xlarge"), (3, "c5.large"), "c5.large", "c5.large"),
    Size("10k", "10,000", (3, "c5.9xlarge"), (4, "m5.xlarge"), "m5.2xlarge", (3, "m5.xlarge"), True,
         (3, "m5.4xlarge"), (3, "c5.large"), "c5.large", "c5.xlarge"),
    Size("25k", "25,000", (5, "c5.9xlarge"), (4, "m5.xlarge"), "m5.4xlarge", (3, "m5.xlarge"), True,
         (3, "m5.8xlarge"), (3, "c5.xlarge"), "c5.large", "c5.xlarge"),
    Size("50k", "50,000", (12, "c5.9xlarge"), (4, "m5.xlarge"), "m5.8xlarge", (3, "m5.xlarge"), True,
         (3, "m5.16xlarge"), (3, "c5.xlarge"), "c5.large", "c5.xlarge"),
)}
NAMES = ("poc", *SIZES)


def defaults(size: str) -> dict:
    """The config keys a size sets, as a config mapping (``poc`` sets none)."""
    if size == "poc":
        return {}
    s = SIZES[size]
    rails_count, rails_type = s.rails
    values: dict = {
        # Twice the reference count leaves room for CPU scaling.
        "app": {"instance_type": rails_type, "min_size": rails_count, "max_size": 2 * rails_count},
        "database": {"instance_class": s.db_class},
        "cache": {"node_type": s.cache_node_type, "replicas": s.cache_nodes - 1,
                  "separate_cache": s.separate_cache},
        "gitaly": {"instance_type": s.gitaly[1], "nodes": s.gitaly[0]},
        # The type only: the monitoring node is built when the config asks for it.
        "monitoring": {"instance_type": s.monitoring},
    }
    if s.sidekiq:
        count, kind = s.sidekiq
        values["sidekiq"] = {"instance_type": kind, "min_size": count, "max_size": 2 * count}
    if s.praefect:
        count, kind = s.praefect
        values["praefect"] = {"instance_type": kind, "nodes": count,
                              "db_instance_class": RDS_CLASS_OF[s.praefect_postgres]}
    return values


def table_rows() -> list[list[str]]:
    """The size table as rows of text (docs/sizes.md shows it; a test keeps them equal)."""
    head = ["Size (users)", "Rails", "Sidekiq", "RDS PostgreSQL (Multi-AZ)", "ElastiCache Redis",
            "Gitaly", "Praefect (+ internal NLB)", "Praefect database",
            "Monitoring (`monitoring.node`)"]
    rows = [head]
    for s in SIZES.values():
        redis = f"{s.cache_nodes} × cache.{s.redis[1]} (GitLab: {s.redis[0]})"
        if s.separate_cache:
            redis = f"cache {redis} + persistent {redis}"
        rows.append([
            f"`{s.name}` ({s.users})",
            f"{s.rails[0]} × {s.rails[1]}",
            f"{s.sidekiq[0]} × {s.sidekiq[1]}" if s.sidekiq else "on Rails",
            f"{s.db_class} (GitLab: {s.postgres})",
            redis,
            (f"{s.gitaly[0]} × {s.gitaly[1]}, gp3 {GITALY_CLUSTER_IOPS:,} IOPS each" if s.cluster
             else f"{s.gitaly[0]} × {s.gitaly[1]}, the POC's volume"),
            f"{s.praefect[0]} × {s.praefect[1]}" if s.praefect else "–",
            (f"own database on the main instance, or {RDS_CLASS_OF[s.praefect_postgres]} "
             f"(GitLab: {s.praefect_postgres})") if s.praefect_postgres else "–",
            f"1 × {s.monitoring}",
        ])
    return rows


def table_markdown() -> str:
    rows = table_rows()
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"
