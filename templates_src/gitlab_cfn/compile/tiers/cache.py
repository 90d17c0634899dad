"""Cache tier: Amazon ElastiCache for Redis, as in "Redis with ElastiCache".

Builds a replication group with cluster mode disabled (GitLab does not support
it): a primary and ``cache.replicas`` replicas spread over the Availability
Zones, Multi-AZ with automatic failover, encryption at rest (the stack's key)
and in transit, an AUTH token generated in Secrets Manager and read through a
dynamic reference, a subnet group over the private subnets, daily snapshots,
and a final snapshot on delete or replacement. The application role may read
the token.

Exposes: ``RedisEndpoint``, ``RedisPort``, ``RedisAuthSecretArn``.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Select, elasticache

from gitlab_cfn.compile.naming import tags
from gitlab_cfn.compile.policies import grant_secret_read
from gitlab_cfn.compile.tier import Tier, gitlab_roles, suppress, token_secret
from gitlab_cfn.compile.tiers.database import secret_value

DESCRIPTION = "gitlab-cfn cache: ElastiCache Redis replication group, Multi-AZ, encrypted."

REDIS_PORT = 6379


# Redis 7 parameter groups (every offered engine version is 7.x: choices.CACHE_ENGINE_VERSIONS).
PARAMETER_FAMILY = "redis7"


def build(tier: Tier) -> None:
    tier.stack_name()
    subnets = tier.add(elasticache.SubnetGroup(
        "RedisSubnetGroup",
        Description="GitLab Redis: private subnets",
        SubnetIds=tier.input("PrivateSubnetIds"),
    ))
    if not tier.cfg.cache.separate_cache:
        replication_group(tier, "Redis", "GitLab Redis", subnets, "redis")
        return
    # From 10k GitLab separates the cache from the persistent data: the cache evicts the
    # least recently used keys when full, the persistent instance (sessions, queues,
    # shared state) must never evict. https://docs.gitlab.com/administration/redis/replication_and_failover_external/
    # and https://docs.gitlab.com/administration/reference_architectures/10k_users/#configure-redis
    persistent = tier.add(elasticache.ParameterGroup(
        "RedisParameterGroup", CacheParameterGroupFamily=PARAMETER_FAMILY,
        Description="GitLab persistent Redis: never evict (queues, sessions, shared state)",
        Properties={"maxmemory-policy": "noeviction"}))
    cache = tier.add(elasticache.ParameterGroup(
        "RedisCacheParameterGroup", CacheParameterGroupFamily=PARAMETER_FAMILY,
        Description="GitLab cache Redis: evict the least recently used keys when full",
        Properties={"maxmemory-policy": "allkeys-lru"}))
    replication_group(tier, "Redis", "GitLab Redis", subnets, "redis", persistent)
    replication_group(tier, "RedisCache", "GitLab cache Redis", subnets, "redis-cache", cache,
                      output_what=" (cache)")


def replication_group(tier: Tier, name: str, description: str, subnets, tag: str, parameters=None,
                      output_what: str = "") -> None:
    """One replication group ``<name>ReplicationGroup`` with its AUTH token ``<name>AuthSecret``;
    outputs ``<name>Endpoint``, ``<name>Port``, ``<name>AuthSecretArn``."""
    key_arn = tier.input("KmsKeyArn")
    azs = tier.param("AvailabilityZones")
    token = token_secret(tier, f"{name}AuthSecret", f"Redis{output_what} AUTH token", tag)
    nodes = 1 + tier.cfg.cache.replicas
    group = tier.keep(elasticache.ReplicationGroup(
        f"{name}ReplicationGroup",
        ReplicationGroupDescription=description,
        Engine="redis",
        EngineVersion=tier.param("CacheEngineVersion"),
        CacheNodeType=tier.param("CacheNodeType"),
        NumCacheClusters=nodes,
        # Primary in the first AZ, each replica in the next one round the list.
        PreferredCacheClusterAZs=[Select(n % tier.cfg.az_count, azs) for n in range(nodes)],
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
        CacheSubnetGroupName=Ref(subnets),
        SecurityGroupIds=[tier.input("CacheSecurityGroupId")],
        Port=REDIS_PORT,
        AtRestEncryptionEnabled=True,
        KmsKeyId=key_arn,
        TransitEncryptionEnabled=True,
        AuthToken=secret_value(token, "token"),
        SnapshotRetentionLimit=tier.param("CacheSnapshotRetentionLimit"),
        AutoMinorVersionUpgrade=True,
        Tags=tags(tag),
    ), policy="Snapshot")
    if parameters is not None:
        group.CacheParameterGroupName = Ref(parameters)
    if nodes > tier.cfg.az_count:
        suppress(group, "I3037", f"{nodes} nodes over {tier.cfg.az_count} AZs: an AZ takes a second node, "
                                 "the primary and its replicas still span every AZ")
    tier.add(grant_secret_read(f"{name}AuthSecretRead", token, gitlab_roles(tier)))

    tier.output(f"{name}Endpoint", GetAtt(group, "PrimaryEndPoint.Address"),
                f"Redis{output_what} primary host name.", public=True)
    tier.output(f"{name}Port", GetAtt(group, "PrimaryEndPoint.Port"), f"Redis{output_what} port.")
    tier.output(f"{name}AuthSecretArn", Ref(token), f"Secret holding the Redis{output_what} AUTH token.",
                public=True)
    tier.output(f"{name}ReplicationGroupId", Ref(group),
                f"Redis{output_what} replication group id (its member clusters' CloudWatch dimension).")
