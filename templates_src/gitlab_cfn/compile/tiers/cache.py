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
from gitlab_cfn.compile.tier import Tier, token_secret
from gitlab_cfn.compile.tiers.database import secret_value

DESCRIPTION = "gitlab-cfn cache: ElastiCache Redis replication group, Multi-AZ, encrypted."

REDIS_PORT = 6379


def build(tier: Tier) -> None:
    tier.stack_name()
    key_arn = tier.input("KmsKeyArn")
    azs = tier.param("AvailabilityZones")
    token = token_secret(tier, "RedisAuthSecret", "Redis AUTH token", "redis")
    subnets = tier.add(elasticache.SubnetGroup(
        "RedisSubnetGroup",
        Description="GitLab Redis: private subnets",
        SubnetIds=tier.input("PrivateSubnetIds"),
    ))
    nodes = 1 + tier.cfg.cache.replicas
    group = tier.keep(elasticache.ReplicationGroup(
        "RedisReplicationGroup",
        ReplicationGroupDescription="GitLab Redis",
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
        Tags=tags("redis"),
    ), policy="Snapshot")
    tier.add(grant_secret_read("RedisAuthSecretRead", token, [tier.input("InstanceRoleName")]))

    tier.output("RedisEndpoint", GetAtt(group, "PrimaryEndPoint.Address"), "Redis primary host name.",
                public=True)
    tier.output("RedisReplicationGroupId", Ref(group), "Replication group id (its member clusters' CloudWatch dimension).")
    tier.output("RedisPort", GetAtt(group, "PrimaryEndPoint.Port"), "Redis port.")
    tier.output("RedisAuthSecretArn", Ref(token), "Secret holding the Redis AUTH token.", public=True)
