"""The one place that makes names: tiers, template files, logical ids, tags.

Logical ids are API: renaming the logical id of a stateful resource replaces
it on the next update, so ids are built here, PascalCase and stable, and
per-AZ ids are 1-based (``PrivateSubnet1``).
"""

from __future__ import annotations

from troposphere import Join, Ref, Tags

# Nested templates, in the order the parent creates them when nothing else
# forces an order (CloudFormation itself follows the references).
TIERS = (
    "network",
    "security-groups",
    "storage",
    "database",
    "cache",
    "bastion",
    "logs",
    "gitaly",
    "praefect",   # with a Gitaly Cluster only
    "app",
    "prometheus",  # with monitoring.node only
    "monitoring",
    "backup",
    "dns",
)
MAIN = "main"
TEMPLATE_DIR = "templates"
PARENT_STACK_NAME = "ParentStackName"
# Every role and instance profile of the stacks lives under this IAM path, so the
# Service Catalog launch role can create and pass these and no other roles.
IAM_PATH = "/gitlab-cfn/"


def template_file(tier: str) -> str:
    return f"{tier}.template.yaml"


def template_key(tier: str) -> str:
    """Key of a template below the key prefix, as the parent's TemplateURLs expect."""
    return f"{TEMPLATE_DIR}/{template_file(tier)}"


def template_url(bucket: str, bucket_region: str, key_prefix: str, tier: str = MAIN) -> str:
    """HTTPS URL of a published template: the layout the parent's TemplateURLs compute."""
    return f"https://{bucket}.s3.{bucket_region}.amazonaws.com/{key_prefix}{template_key(tier)}"


def stack_id(tier: str) -> str:
    """Logical id of a tier's AWS::CloudFormation::Stack in the parent."""
    return "".join(part.capitalize() for part in tier.split("-")) + "Stack"


def per_az(prefix: str, index: int, suffix: str = "") -> str:
    """``per_az("PrivateSubnet", 1, "Id")`` -> ``PrivateSubnet1Id``; index is 1-based."""
    if index < 1:
        raise ValueError("AZ indexes are 1-based")
    return f"{prefix}{index}{suffix}"


def name_tag(*parts: str) -> Join:
    """``<parent stack name>-<parts>``: what the console shows in the Name column."""
    return Join("-", [Ref(PARENT_STACK_NAME), *parts])


def tags(*parts: str, **extra: str) -> Tags:
    return Tags(Name=name_tag(*parts), **extra)


def input_type(name: str) -> str:
    """CloudFormation type of a child parameter fed by another tier's output."""
    if name == "VpcId":
        return "AWS::EC2::VPC::Id"
    if name.endswith("SubnetIds"):
        return "List<AWS::EC2::Subnet::Id>"
    if name.endswith("SubnetId") or (name.startswith(("PublicSubnet", "PrivateSubnet")) and name.endswith("Id")):
        return "AWS::EC2::Subnet::Id"
    if name.endswith("SecurityGroupId"):
        return "AWS::EC2::SecurityGroup::Id"
    return "String"
