"""Storage and IAM tier: GitLab's object storage buckets and the instance role.

Builds one customer-managed KMS key (rotated yearly) for the stack's data;
eleven S3 buckets, one per kind of GitLab object plus backups, each KMS
encrypted, with public access blocked, a TLS-only bucket policy, versioning on
backups and ``Retain`` on delete and replace; and the IAM role and instance
profile of the GitLab application servers: the guide's S3 policy (object
actions on ``<bucket>/*``, bucket actions on the bucket) narrowed to these
buckets, use of the key through S3 and Secrets Manager, Session Manager and the
CloudWatch agent. Tiers that own secrets grant the role read access to them.

Bucket names are ``gl-<kind>-<account>-<region>-<stack suffix>``: the guide's
``gl-`` prefix, unique per account and region, and unique per stack so that two
deployments (or a redeployment next to retained buckets) never collide.

Exposes: ``KmsKeyArn``, ``InstanceRoleName``, ``InstanceProfileArn`` and
``<Kind>BucketName`` for each bucket.
"""

from __future__ import annotations

from troposphere import GetAtt, Join, Ref, Select, Split, Sub, iam, kms, s3

from ..naming import tags
from ..policies import (
    assume_role,
    gitlab_object_storage,
    kms_key_policy,
    kms_use,
    managed_policy_arn,
    tls_only_bucket,
)
from ..tier import Tier

DESCRIPTION = "gitlab-cfn storage: KMS key, S3 object storage buckets, GitLab instance role."

# Logical name -> the object kind in the bucket name. GitLab's consolidated
# object storage kinds, plus the container registry and backups.
BUCKETS = {
    "Artifacts": "artifacts",
    "ExternalDiffs": "external-diffs",
    "Lfs": "lfs",
    "Uploads": "uploads",
    "Packages": "packages",
    "DependencyProxy": "dependency-proxy",
    "TerraformState": "terraform-state",
    "CiSecureFiles": "ci-secure-files",
    "Pages": "pages",
    "Registry": "registry",
    "Backups": "backups",
}
VERSIONED = {"Backups"}
BUCKET_PREFIX = "gl-"


def bucket_name(kind: str) -> Join:
    stack_suffix = Select(0, Split("-", Select(2, Split("/", Ref("AWS::StackId")))))
    return Join("-", ["gl", kind, Ref("AWS::AccountId"), Ref("AWS::Region"), stack_suffix])


def build(tier: Tier) -> None:
    tier.stack_name()
    key = tier.keep(kms.Key(
        "DataKey",
        Description=Sub("gitlab-cfn data key of stack ${ParentStackName}"),
        EnableKeyRotation=True,
        PendingWindowInDays=30,
        KeyPolicy=kms_key_policy(),
        Tags=tags("data"),
    ))
    tier.add(kms.Alias(
        "DataKeyAlias",
        AliasName=Sub("alias/${ParentStackName}-gitlab-data"),
        TargetKeyId=Ref(key),
    ))
    key_arn = GetAtt(key, "Arn")

    buckets = {}
    for logical, kind in BUCKETS.items():
        bucket = tier.keep(s3.Bucket(
            f"{logical}Bucket",
            BucketName=bucket_name(kind),
            BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(
                    BucketKeyEnabled=True,
                    ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                        SSEAlgorithm="aws:kms", KMSMasterKeyID=key_arn),
                ),
            ]),
            PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
                BlockPublicAcls=True, BlockPublicPolicy=True,
                IgnorePublicAcls=True, RestrictPublicBuckets=True),
            # GitLab's guide grants s3:PutObjectAcl: object ACLs stay usable,
            # while the public access block keeps every object private.
            OwnershipControls=s3.OwnershipControls(Rules=[
                s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerPreferred")]),
            LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[s3.LifecycleRule(
                Id="AbortIncompleteUploads", Status="Enabled",
                AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(
                    DaysAfterInitiation=7),
            )]),
            Tags=tags(kind),
        ))
        if logical in VERSIONED:
            bucket.VersioningConfiguration = s3.VersioningConfiguration(Status="Enabled")
        tier.add(s3.BucketPolicy(
            f"{logical}BucketPolicy",
            Bucket=Ref(bucket),
            PolicyDocument=tls_only_bucket(GetAtt(bucket, "Arn")),
        ))
        buckets[logical] = bucket

    role = tier.add(iam.Role(
        "InstanceRole",
        Description="GitLab application servers: object storage, stack secrets, Session Manager.",
        AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
        ManagedPolicyArns=[
            managed_policy_arn("AmazonSSMManagedInstanceCore"),
            managed_policy_arn("CloudWatchAgentServerPolicy"),
        ],
        Policies=[
            iam.Policy(
                PolicyName="gitlab-object-storage",
                PolicyDocument=gitlab_object_storage([GetAtt(b, "Arn") for b in buckets.values()]),
            ),
            iam.Policy(
                PolicyName="gitlab-data-key",
                PolicyDocument=kms_use(key_arn, ["s3", "secretsmanager"]),
            ),
        ],
        Tags=tags("gitlab"),
    ))
    profile = tier.add(iam.InstanceProfile("InstanceProfile", Roles=[Ref(role)]))

    tier.output("KmsKeyArn", key_arn, "KMS key encrypting the stack's data.")
    tier.output("InstanceRoleName", Ref(role), "IAM role of the GitLab application servers.")
    tier.output("InstanceProfileArn", GetAtt(profile, "Arn"), "Instance profile of the GitLab servers.")
    for logical, bucket in buckets.items():
        tier.output(f"{logical}BucketName", Ref(bucket), f"S3 bucket for GitLab {BUCKETS[logical]}.",
                    public=True)
