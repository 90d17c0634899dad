"""The Service Catalog launch role: what the product's stacks create, and no more.

The actions are not written by hand. CloudFormation's registry says, for every
resource type, which IAM actions its create, read, update and delete handlers
call (``handlers.*.permissions`` in the schemas cfn-lint ships). The launch role
gets the union of those lists over the resource types the build actually
contains, less:

- ``EXCLUDED``: actions of features the templates do not use (S3 Tables,
  replication, VPC Lattice, IAM users and groups, ...), each with its reason;
- the delete actions of types whose every resource is retained
  (``DeletionPolicy`` and ``UpdateReplacePolicy`` ``Retain``): the launch role
  cannot delete a bucket, a key or a secret of the product;
- wildcards in the lists, replaced by the named actions in ``SUBSTITUTES``.

Every action is then scoped to this account and region (``SCOPES``): IAM to
roles and instance profiles under ``/gitlab-cfn/`` (``IAM_PATH``), S3 to ``gl-``
buckets, CloudFormation to Service Catalog's ``SC-`` stacks. Actions that IAM
cannot scope to a resource (``UNSCOPED``, mostly ``Describe*``) get ``*``; the
security gate (parliament) checks both lists against IAM's own definitions.

The documents are split into managed policies that each stay under IAM's limit
of 6,144 characters (``MAX_POLICY_CHARS``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from awacs.aws import (
    Action,
    Allow,
    ArnEquals,
    Condition,
    PolicyDocument,
    Statement,
    StringEquals,
    StringLike,
)
from troposphere import Sub, encode_to_dict

from gitlab_cfn.compile.naming import IAM_PATH
from gitlab_cfn.errors import GitlabCfnError

VERSION = "2012-10-17"
MAX_POLICY_CHARS = 6144


class LaunchRoleError(GitlabCfnError):
    """The launch role cannot be derived for these templates: the build fails, exit 1."""


# Features the templates never configure; their actions stay out of the role.
EXCLUDED: dict[str, str] = {
    "s3tables:*": "S3 Tables (bucket metadata tables) are not configured",
    "s3:*BucketMetadata*": "S3 bucket metadata tables are not configured",
    "s3:*Replication*": "bucket replication is not configured",
    "s3:*BucketAbac": "attribute-based access control of buckets is not configured",
    "s3:*ObjectLockConfiguration": "S3 Object Lock is not configured",
    "s3:DeleteBucketAnalyticsConfiguration": "not an IAM action (authorised by s3:PutAnalyticsConfiguration)",
    "s3:DeleteBucketCors": "not an IAM action (authorised by s3:PutBucketCORS)",
    "s3:DeleteBucketEncryption": "not an IAM action (authorised by s3:PutEncryptionConfiguration)",
    "s3:DeleteBucketLifecycle": "not an IAM action (authorised by s3:PutLifecycleConfiguration)",
    "s3:DeleteBucketMetricsConfiguration": "not an IAM action (authorised by s3:PutMetricsConfiguration)",
    "s3:PutBucketAcl": "buckets set no canned ACL (ownership controls and policies only)",
    "s3:GetObject": "ElastiCache reads S3 only to seed from SnapshotArns, which are not set; "
                    "the launch role never reads GitLab's objects",
    "firehose:*": "no Kinesis Data Firehose delivery of metrics or logs",
    "logs:*LogDeliver*": "no CloudWatch Logs delivery from ElastiCache",
    "logs:CreateLogStream": "the launch role writes no log events (the servers' CloudWatch agent does)",
    "logs:PutLogEvents": "the launch role writes no log events (the servers' CloudWatch agent does)",
    "logs:*DataProtectionPolicy": "log groups have no data protection policy",
    "logs:*IndexPolic*": "log groups have no field index policy",
    "logs:*ResourcePolic*": "log groups have no resource policy",
    "logs:PutBearerTokenAuthentication": "log groups take no bearer-token ingestion",
    "logs:PutLogGroupDeletionProtection": "log groups have no deletion protection",
    "sns:*DataProtectionPolicy": "the alarm topic has no data protection policy",
    # CreateBackupVault needs backup-storage:MountCapsule (it associates the vault's KMS key;
    # https://docs.aws.amazon.com/aws-backup/latest/devguide/create-a-vault.html), so only the
    # other mount is left out.
    "backup-storage:Mount": "no AWS Backup storage mount beyond the vault's key (MountCapsule)",
    "backup:*BackupVaultAccessPolicy": "the vault has no access policy",
    "backup:*BackupVaultLockConfiguration": "the vault has no lock",
    "backup:*BackupVaultNotifications": "the vault sends no notifications",
    "s3:REST.PUT.OBJECT": "not an IAM action (an S3 access-log operation name, listed by AWS::Logs::LogGroup's schema)",
    "managed-fleets:*": "no managed fleets behind the Auto Scaling group",
    "vpc-lattice:*": "no VPC Lattice traffic sources on the Auto Scaling group",
    "redshift:*": "no Redshift",
    "redshift-serverless:*": "no Redshift Serverless",
    "docdb-elastic:*": "no DocumentDB",
    # The user's read and delete handlers look for inline and managed policies and a console
    # password (GetUserPolicy, GetLoginProfile) and remove any found (DeleteUserPolicy,
    # DetachUserPolicy, DeleteLoginProfile), as the group's delete detaches managed policies:
    # granted, on the product's path only, or a stack's update or delete under the launch role
    # fails. Only what would give the user a policy or a password stays out.
    "iam:PutUserPolicy": "policies attach to roles and groups, never to users (the SES SMTP user's is its group's)",
    "iam:AttachUserPolicy": "policies attach to roles and groups, never to users (the SES SMTP user's is its group's)",
    "iam:CreateLoginProfile": "the SES SMTP user never signs in to the console: it has no password",
    "iam:UpdateLoginProfile": "the SES SMTP user never signs in to the console: it has no password",
    "iam:*UserPermissionsBoundary": "the SES SMTP user has no permissions boundary",
    "iam:AttachGroupPolicy": "the SES SMTP user's group has its one inline policy, no managed policy",
    "elasticfilesystem:*": "the SES SMTP credentials function mounts no EFS file system",
    "s3files:*": "the SES SMTP credentials function mounts no file system",
    "s3:GetObjectVersion": "the SES SMTP credentials function's code is inline (ZipFile), not an S3 object",
    "lambda:GetLayerVersion": "the SES SMTP credentials function has no layers",
    "lambda:GetCodeSigningConfig": "the function names no code signing configuration to read",
    "lambda:PutFunctionCodeSigningConfig": "the function's code is inline; no code signing configuration",
    "lambda:DeleteFunctionCodeSigningConfig": "the function's code is inline; no code signing configuration",
    "lambda:PassCapacityProvider": "the function runs on Lambda's own capacity, no capacity provider",
    "lambda:*FunctionScalingConfig": "the function runs on Lambda's own capacity, no capacity provider",
    "lambda:AssociateRuntimeAlias": "not in IAM's action definitions (parliament); the function uses no runtime alias",
    "lambda:PublishVersion": "the function has no published versions",
    # DeleteFunctionConcurrency stays: an update may remove a reservation.
    "lambda:PutFunctionConcurrency": "the function reserves no concurrency (compile/email.py: a reservation "
                                     "fails on accounts with a low concurrency quota)",
    "iam:*RolePermissionsBoundary": "the roles have no permissions boundary, and the launch role may not remove one",
    "ec2:CopyVolumes": "volumes are never copied",
    "ec2:*VpcEncryptionControl*": "VPC encryption controls are not configured",
    "ec2:AcceptAddressTransfer": "Elastic IP addresses are never transferred",
    "ec2:*VpnGateway": "no VPN gateway",
    "ec2:*VpnGateways": "no VPN gateway",
    "ec2:*PrivateNatGatewayAddress": "NAT gateways are public, with one address",
    "ec2:*NatGatewayAddress": "NAT gateways are public, with one address",
    "ec2:*SubnetCidrBlock": "subnets have one IPv4 block and no IPv6",
    "ec2:ModifyVpcTenancy": "the VPC has default tenancy",
    "ssm:CreateAssociation": "instances have no State Manager associations",
    "ssm:DeleteAssociation": "instances have no State Manager associations",
    "rds:CreateDBInstanceReadReplica": "no read replicas (the database is Multi-AZ)",
    "rds:PromoteReadReplica": "no read replicas (the database is Multi-AZ)",
    # RestoreDBInstanceFromDBSnapshot stays: gitlab-cfn restore creates the database from a snapshot.
    "rds:RestoreDBInstanceToPointInTime": "the database is restored from a snapshot only, never to a point in time",
    "rds:*DBInstanceAutomatedBackupsReplication": "no cross-region backup replication",
    "rds:DescribeDBCluster*": "the database is an instance, not an Aurora cluster",
    "elasticache:*CacheCluster": "Redis runs as a replication group",
    "elasticache:ModifyReplicationGroupShardConfiguration": "cluster mode is disabled",
    "cognito-idp:*": "the internal load balancer's listener forwards TCP; no Cognito authentication",
    "ec2:*IpamPool*": "the internal load balancer takes its addresses from its subnets, not from an IPAM pool",
    "elasticloadbalancing:ModifyIpPools": "the internal load balancer uses no IPAM pool",
}

# Wildcards in the registry's lists, and the named actions granted for them.
SUBSTITUTES: dict[str, list[str]] = {
    "ec2:Describe*": [
        "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
        "ec2:DescribeAvailabilityZones", "ec2:DescribeAccountAttributes", "ec2:DescribeInstances",
        "ec2:DescribeKeyPairs", "ec2:DescribeVpcs",
    ],
    "ec2:Get*": [],  # instance requirements and capacity reservations: not used
    "ssm:Get*": ["ssm:GetParameters", "ssm:GetParameter"],
    "autoscaling:Describe*": ["autoscaling:Describe*"],
    "elasticloadbalancing:Describe*": ["elasticloadbalancing:Describe*"],
}

# Actions IAM authorises only on "*" (they name no resource type).
UNSCOPED = frozenset({
    "autoscaling:Describe*", "autoscaling:DescribePolicies",
    "cloudwatch:GetMetricData",
    "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
    "ec2:DescribeIamInstanceProfileAssociations", "ec2:DescribeImages", "ec2:DescribeInstanceCreditSpecifications",
    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeInstances",
    "ec2:DescribeInternetGateways", "ec2:DescribeKeyPairs", "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeLaunchTemplates", "ec2:DescribeNatGateways", "ec2:DescribeNetworkAcls",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroupRules",
    "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshots", "ec2:DescribeSubnets", "ec2:DescribeTags",
    "ec2:DescribeVolumes", "ec2:DescribeVolumesModifications", "ec2:DescribeVpcs",
    "elasticloadbalancing:Describe*", "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancerPolicies", "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
    # The internal load balancer's listener and target group (Gitaly Cluster).
    "elasticloadbalancing:DescribeCapacityReservation", "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
    # The Redis parameter groups (separate cache and persistent Redis).
    "elasticache:DescribeEngineDefaultParameters",
    "iam:ListRoles", "kms:CreateKey", "logs:DescribeLogGroups", "sns:Unsubscribe",
    # Creating the vault with a customer managed key: granted on "*" in AWS Backup's own
    # example policy (https://docs.aws.amazon.com/aws-backup/latest/devguide/create-a-vault.html).
    "backup-storage:MountCapsule",
    "rds:DescribeDBEngineVersions", "rds:DescribeEngineDefaultParameters", "rds:DescribeEvents",
    "route53:ListHostedZones", "secretsmanager:GetRandomPassword", "ssm:ListAssociations",
    "cloudformation:ValidateTemplate",
})

_ACCOUNT = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"
# Resources each service's actions may act on: this account and region only.
SCOPES: dict[str, list[str]] = {
    "autoscaling": [_ACCOUNT % ("autoscaling", "*")],
    "backup": [_ACCOUNT % ("backup", "backup-vault:gitlab-cfn-*"), _ACCOUNT % ("backup", "backup-plan:*")],
    "cloudformation": [_ACCOUNT % ("cloudformation", "stack/SC-*/*")],
    "cloudwatch": [_ACCOUNT % ("cloudwatch", "alarm:*"),
                   "arn:${AWS::Partition}:cloudwatch::${AWS::AccountId}:dashboard/*"],
    "ec2": [_ACCOUNT % ("ec2", "*"), "arn:${AWS::Partition}:ec2:${AWS::Region}::image/*",
            "arn:${AWS::Partition}:ec2:${AWS::Region}::snapshot/*"],
    "elasticache": [_ACCOUNT % ("elasticache", "*")],
    "elasticloadbalancing": [_ACCOUNT % ("elasticloadbalancing", "loadbalancer/*")],
    "iam": [
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role{IAM_PATH}*",
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:instance-profile{IAM_PATH}*",
        # The SES SMTP user and its group (compile/email.py), under the same path.
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:user{IAM_PATH}*",
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:group{IAM_PATH}*",
    ],
    # The SES SMTP credentials function: CloudFormation names a stack's function
    # <stack name>-<logical id>-<suffix>, and Service Catalog's stacks are SC-*.
    "lambda": [_ACCOUNT % ("lambda", "function:SC-*")],
    "kms": [_ACCOUNT % ("kms", "key/*")],
    # The stack's log groups (observability.LOG_GROUP_ROOT) and their streams.
    "logs": [_ACCOUNT % ("logs", "log-group:/gitlab-cfn/*")],
    "rds": [_ACCOUNT % ("rds", "*")],
    "route53": ["arn:${AWS::Partition}:route53:::hostedzone/*", "arn:${AWS::Partition}:route53:::change/*"],
    "s3": ["arn:${AWS::Partition}:s3:::gl-*", "arn:${AWS::Partition}:s3:::gl-*/*"],
    "secretsmanager": [_ACCOUNT % ("secretsmanager", "secret:*")],
    "sns": [_ACCOUNT % ("sns", "*")],
    "ssm": [_ACCOUNT % ("ssm", "*"), "arn:${AWS::Partition}:ssm:${AWS::Region}::parameter/aws/service/*"],
}

# More resources of a service, scoped only when the build has a resource of that type
# (the internal load balancer of a Gitaly Cluster: its target group and listener).
SCOPES_OF_TYPE: dict[str, tuple[str, str]] = {
    "AWS::ElasticLoadBalancingV2::TargetGroup": ("elasticloadbalancing", _ACCOUNT % ("elasticloadbalancing", "targetgroup/*")),
    "AWS::ElasticLoadBalancingV2::Listener": ("elasticloadbalancing", _ACCOUNT % ("elasticloadbalancing", "listener/*")),
}

# What Service Catalog itself calls with the launch role, besides the handlers.
SERVICE_CATALOG_ACTIONS = [
    "cloudformation:CreateStack", "cloudformation:DeleteStack", "cloudformation:UpdateStack",
    "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents", "cloudformation:DescribeStackResource",
    "cloudformation:DescribeStackResources", "cloudformation:GetTemplate", "cloudformation:GetTemplateSummary",
    "cloudformation:SetStackPolicy", "cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet", "cloudformation:DeleteChangeSet", "cloudformation:TagResource",
    "cloudformation:UntagResource", "cloudformation:ValidateTemplate",
]
# Roles are passed only to the services that use them.
PASS_ROLE_TO = ["ec2.amazonaws.com", "monitoring.rds.amazonaws.com", "backup.amazonaws.com", "lambda.amazonaws.com"]
# A custom resource has no registry schema: CloudFormation invokes its function (ServiceToken)
# with the caller's permissions, for Create, Update and Delete alike
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-iam-servicerole.html).
CUSTOM_RESOURCE_ACTIONS = ("lambda:InvokeFunction",)
# Service-linked roles the product's services create on first use in an account.
SERVICE_LINKED = ["autoscaling.amazonaws.com", "elasticache.amazonaws.com", "rds.amazonaws.com", "backup.amazonaws.com",
                  "elasticloadbalancing.amazonaws.com"]
SPECIAL = {"iam:PassRole", "iam:CreateServiceLinkedRole", "iam:AttachRolePolicy", "iam:DetachRolePolicy"}


@lru_cache(maxsize=None)
def _schemas() -> tuple[str, dict]:
    # Found without importing cfn-lint, which the build does not otherwise need.
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or not spec.submodule_search_locations:
        raise LaunchRoleError("cfn-lint is not installed: its registry schemas give the launch role's actions")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data", "schemas")
    try:
        with open(os.path.join(folder, "providers", "us-east-1.json"), encoding="utf-8") as f:
            return folder, json.load(f)
    except OSError as exc:
        raise LaunchRoleError(f"cfn-lint's registry schemas are not where this version expects them: {exc}") from None


def schema_source() -> str:
    """Where the handler permissions come from, for the manifest: the cfn-lint version."""
    from importlib.metadata import version

    return f"cfn-lint {version('cfn-lint')}"


@lru_cache(maxsize=None)
def handler_permissions(resource_type: str) -> dict[str, tuple[str, ...]]:
    """The registry's ``{handler: actions}`` for one resource type (no ``list``)."""
    if resource_type.startswith("Custom::"):
        return {h: CUSTOM_RESOURCE_ACTIONS for h in ("create", "update", "delete")}
    folder, providers = _schemas()
    digest = providers.get(resource_type)
    if digest is None:
        raise LaunchRoleError(f"{resource_type}: no registry schema; the launch role cannot cover it")
    with open(os.path.join(folder, "resources", f"{digest}.json"), encoding="utf-8") as f:
        handlers = json.load(f).get("handlers", {})
    if not handlers:
        raise LaunchRoleError(f"{resource_type}: its schema lists no handler permissions")
    return {name: tuple(h.get("permissions", [])) for name, h in handlers.items() if name != "list"}


def _matches(action: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(action.lower(), pattern.lower())


@lru_cache(maxsize=None)
def excluded(action: str) -> str | None:
    for pattern, reason in EXCLUDED.items():
        if _matches(action, pattern):
            return reason
    return None


@dataclass(frozen=True)
class Needs:
    """What the launch role must allow for a set of templates."""

    actions: frozenset[str]
    managed_policies: tuple[str, ...]       # ManagedPolicyArns the roles attach
    retained_types: frozenset[str]          # types whose delete actions are withheld
    types: frozenset[str] = frozenset()     # every resource type of the build


def needs(templates: dict[str, dict]) -> Needs:
    """The actions the product's stacks call, from the decoded templates of a build."""
    kinds: dict[str, list[dict]] = defaultdict(list)
    managed: list[str] = []
    for template in templates.values():
        for resource in (template.get("Resources") or {}).values():
            kinds[resource["Type"]].append(resource)
            for arn in (resource.get("Properties") or {}).get("ManagedPolicyArns", []) or []:
                text = arn.get("Fn::Sub") if isinstance(arn, dict) else arn
                if text not in managed:
                    managed.append(text)
    retained = frozenset(
        kind for kind, resources in kinds.items()
        if all(r.get("DeletionPolicy") == "Retain" and r.get("UpdateReplacePolicy") == "Retain" for r in resources))
    actions: set[str] = set()
    for kind in kinds:
        for handler, permissions in handler_permissions(kind).items():
            if handler == "delete" and kind in retained:
                continue
            for action in permissions:
                for named in SUBSTITUTES.get(action, [action]):
                    if not excluded(named):
                        actions.add(named)
    return Needs(frozenset(actions), tuple(sorted(managed)), retained, frozenset(kinds))


def _service(action: str) -> str:
    return action.split(":", 1)[0]


def statements(need: Needs) -> list[Statement]:
    """The launch role's statements, one per service and scope, sorted for stable output."""
    by_service: dict[str, list[str]] = defaultdict(list)
    unscoped: list[str] = []
    for action in sorted(need.actions | set(SERVICE_CATALOG_ACTIONS)):
        if action in SPECIAL:
            continue
        if action in UNSCOPED:
            unscoped.append(action)
        elif _service(action) in SCOPES:
            by_service[_service(action)].append(action)
        else:
            raise LaunchRoleError(f"{action}: no scope for service {_service(action)} in launch_role.SCOPES")

    out = []
    for service, actions in sorted(by_service.items()):
        scopes = SCOPES[service] + [scope for kind, (owner, scope) in sorted(SCOPES_OF_TYPE.items())
                                    if owner == service and kind in need.types]
        out.append(Statement(
            Sid=service.replace("-", "").capitalize() + "InThisAccount", Effect=Allow,
            Action=[Action(*a.split(":", 1)) for a in actions],
            Resource=[Sub(s) for s in scopes],
        ))
    out.append(Statement(Sid="DescribeAndCreateUnscoped", Effect=Allow,
                         Action=[Action(*a.split(":", 1)) for a in unscoped], Resource=["*"]))
    if "iam:PassRole" in need.actions:
        out.append(Statement(
            Sid="PassStackRoles", Effect=Allow, Action=[Action("iam", "PassRole")],
            Resource=[Sub(SCOPES["iam"][0])],
            Condition=Condition(StringEquals("iam:PassedToService", PASS_ROLE_TO)),
        ))
    if "iam:CreateServiceLinkedRole" in need.actions:
        out.append(Statement(
            Sid="ServiceLinkedRoles", Effect=Allow, Action=[Action("iam", "CreateServiceLinkedRole")],
            Resource=[Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/*")],
            Condition=Condition(StringLike("iam:AWSServiceName", SERVICE_LINKED)),
        ))
    if need.managed_policies and need.actions & {"iam:AttachRolePolicy", "iam:DetachRolePolicy"}:
        out.append(Statement(
            Sid="AttachNamedManagedPolicies", Effect=Allow,
            Action=[Action("iam", a) for a in ("AttachRolePolicy", "DetachRolePolicy")],
            Resource=[Sub(SCOPES["iam"][0])],
            Condition=Condition(ArnEquals("iam:PolicyARN", [Sub(arn) for arn in need.managed_policies])),
        ))
    return out


def template_read(bucket_param: str) -> list[Statement]:
    """Reading the product's templates: Service Catalog's copy of the main template
    (in a bucket the service owns, objects tagged for provisioning) and the nested
    templates in the publishing bucket, for every published version."""
    return [
        Statement(
            Sid="ServiceCatalogTemplateCopy", Effect=Allow, Action=[Action("s3", "GetObject")],
            Resource=[Sub("arn:${AWS::Partition}:s3:::*/*")],
            Condition=Condition(StringEquals("s3:ExistingObjectTag/servicecatalog:provisioning", "true")),
        ),
        Statement(
            Sid="PublishedTemplates", Effect=Allow, Action=[Action("s3", "GetObject")],
            Resource=[Sub(f"arn:${{AWS::Partition}}:s3:::${{{bucket_param}}}/*")],
        ),
    ]


def _size(statement_list: list[Statement]) -> int:
    """Characters IAM counts (whitespace excluded), with ${...} as written: an upper bound."""
    doc = json.dumps(encode_to_dict(PolicyDocument(Version=VERSION, Statement=statement_list)))
    return len("".join(doc.split()))


def documents(all_statements: list[Statement]) -> list[PolicyDocument]:
    """The statements packed, in order, into documents each under IAM's size limit."""
    packs: list[list[Statement]] = [[]]
    for statement in all_statements:
        if _size(packs[-1] + [statement]) > MAX_POLICY_CHARS:
            if not packs[-1] or _size([statement]) > MAX_POLICY_CHARS:
                raise LaunchRoleError(
                    f"launch role statement {statement.Sid} alone exceeds {MAX_POLICY_CHARS} characters")
            packs.append([])
        packs[-1].append(statement)
    return [PolicyDocument(Version=VERSION, Statement=pack) for pack in packs]
