"""Stand-in patches for the Gitaly Cluster's internal Network Load Balancer.

Registered with ``patches.patch`` (imported by ``patches``), each with its test in
``tests/test_standin_cluster.py``:

- ``network_load_balancer_from_template``: an ``AWS::ElasticLoadBalancingV2::LoadBalancer``
  of ``Type: network`` is a network load balancer (moto's CloudFormation model always
  makes an application load balancer, which then refuses a TCP listener), with its
  ``LoadBalancerAttributes`` applied and its generated name within ELB's 32 characters;
  a target group's generated name too, and its ``TargetGroupAttributes`` applied.
- ``cache_parameter_groups``: ``AWS::ElastiCache::ParameterGroup`` (stock moto cannot
  create it), with ElastiCache's checks of the family and the eviction policy, and the
  replication group that names it refused when it does not exist or its family is not
  the engine's.
"""

from __future__ import annotations

import re

from moto.cloudformation import parsing
from moto.cloudformation.utils import random_suffix
from moto.core.common_models import CloudFormationModel

from gitlab_cfn.standin.patches import patch

# Load balancer and target group names: at most 32 letters, digits and hyphens, not
# starting or ending with a hyphen
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html).
ELB_NAME_LIMIT = 32
ELB_NAMED_TYPES = ("AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::ElasticLoadBalancingV2::TargetGroup")


def _elb_name(stack_name: str, logical_id: str) -> str:
    suffix = random_suffix()[:12]
    head = re.sub(r"[^A-Za-z0-9-]", "", f"{stack_name}-{logical_id}")
    name = f"{head[: ELB_NAME_LIMIT - len(suffix) - 1]}-{suffix}"
    return re.sub(r"-{2,}", "-", name).strip("-")


@patch
def network_load_balancer_from_template() -> None:
    from moto.elbv2 import models as elbv2

    original_name = parsing.generate_resource_name

    def generate_resource_name(resource_type: str, stack_name: str, logical_id: str) -> str:
        if resource_type in ELB_NAMED_TYPES:
            return _elb_name(stack_name, logical_id)
        return original_name(resource_type, stack_name, logical_id)

    parsing.generate_resource_name = generate_resource_name

    def create_balancer(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        backend = elbv2.elbv2_backends[account_id][region_name]
        tags = [{"Key": t["Key"], "Value": t["Value"]} for t in properties.get("Tags", []) or []]
        balancer = backend.create_load_balancer(
            resource_name, properties.get("SecurityGroups") or [], properties.get("Subnets"),
            scheme=properties.get("Scheme", "internet-facing"),
            loadbalancer_type=properties.get("Type", "application"), tags=tags or None)
        attributes = {a["Key"]: str(a["Value"]) for a in properties.get("LoadBalancerAttributes", []) or []}
        if attributes:
            backend.modify_load_balancer_attributes(balancer.arn, attributes)
        return balancer

    elbv2.FakeLoadBalancer.create_from_cloudformation_json = classmethod(create_balancer)

    original_group = elbv2.FakeTargetGroup.create_from_cloudformation_json.__func__

    def create_group(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        group = original_group(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json["Properties"]
        attributes = {a["Key"]: str(a["Value"]) for a in properties.get("TargetGroupAttributes", []) or []}
        if attributes:
            elbv2.elbv2_backends[account_id][region_name].modify_target_group_attributes(group.arn, attributes)
        return group

    elbv2.FakeTargetGroup.create_from_cloudformation_json = classmethod(create_group)


# -- ElastiCache parameter groups (the separate cache and persistent Redis of 10k and up) --------

# Families and the engine major versions they configure, and the eviction policies Redis
# accepts (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ParameterGroups.Engine.html).
CACHE_FAMILIES = {"redis6.x": "6", "redis7": "7", "valkey7": "7", "valkey8": "8"}
MAXMEMORY_POLICIES = ("volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu", "volatile-random",
                      "allkeys-random", "volatile-ttl", "noeviction")
# account -> region -> group name -> (family, parameters); moto has no such backend.
CACHE_PARAMETER_GROUPS: dict[str, dict[str, dict[str, tuple[str, dict]]]] = {}


def _cache_groups(account_id: str, region_name: str) -> dict[str, tuple[str, dict]]:
    return CACHE_PARAMETER_GROUPS.setdefault(account_id, {}).setdefault(region_name, {})


class CacheParameterGroup(CloudFormationModel):
    """``AWS::ElastiCache::ParameterGroup``: kept by name, its family and values checked as
    ElastiCache checks them; ``Ref`` gives the name."""

    def __init__(self, name: str, family: str, parameters: dict):
        self.name, self.family, self.parameters = name, family, parameters

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElastiCache::ParameterGroup"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        from gitlab_cfn.standin.patches import ResourceCreateFailed

        props = cloudformation_json.get("Properties", {})
        family = props.get("CacheParameterGroupFamily")
        if family not in CACHE_FAMILIES:
            raise ResourceCreateFailed("", cls.cloudformation_type(),
                                       f"InvalidParameterValue: unknown cache parameter group family {family!r}")
        if not props.get("Description"):
            raise ResourceCreateFailed("", cls.cloudformation_type(), "Description is required")
        values = {k: str(v) for k, v in (props.get("Properties") or {}).items()}
        policy = values.get("maxmemory-policy")
        if policy is not None and policy not in MAXMEMORY_POLICIES:
            raise ResourceCreateFailed("", cls.cloudformation_type(),
                                       f"InvalidParameterValue: maxmemory-policy {policy!r} is not one of "
                                       f"{', '.join(MAXMEMORY_POLICIES)}")
        name = re.sub(r"[^a-z0-9-]", "", resource_name.lower())[:255].strip("-")
        _cache_groups(account_id, region_name)[name] = (family, values)
        return cls(name, family, values)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):  # type: ignore[override]
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):  # type: ignore[override]
        _cache_groups(account_id, region_name).pop(resource_name, None)

    def is_created(self) -> bool:
        return True


@patch
def cache_parameter_groups() -> None:
    """``AWS::ElastiCache::ParameterGroup`` exists (stock moto cannot create it), and a
    replication group that names one keeps it, after checking it exists and that its
    family matches the engine's major version (moto drops the name)."""
    from moto.elasticache.models import elasticache_backends

    from gitlab_cfn.standin import models
    from gitlab_cfn.standin.patches import ResourceCreateFailed

    original = models.ReplicationGroup.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties", {})
        name = props.get("CacheParameterGroupName")
        if name is not None:
            found = _cache_groups(account_id, region_name).get(name)
            if found is None:
                raise ResourceCreateFailed("", "AWS::ElastiCache::ReplicationGroup",
                                           f"CacheParameterGroupNotFound: {name}")
            major = str(props.get("EngineVersion", "")).split(".")[0]
            if CACHE_FAMILIES[found[0]] != major:
                raise ResourceCreateFailed(
                    "", "AWS::ElastiCache::ReplicationGroup",
                    f"InvalidParameterCombination: parameter group family {found[0]} does not match engine "
                    f"version {props.get('EngineVersion')}")
        model = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if name is not None:
            group = elasticache_backends[account_id][region_name].replication_groups[model.physical_resource_id]
            group.cache_parameter_group_name = name
        return model

    models.ReplicationGroup.create_from_cloudformation_json = classmethod(create)
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
