"""Storage and IAM tier: GitLab's object storage buckets and the instance role.

Builds one customer-managed KMS key (rotated yearly) for the stack's data;
eleven S3 buckets, one per kind of GitLab object plus backups, each KMS
encrypted, with public access blocked, a TLS-only bucket policy, versioning on
backups and ``Retain`` on delete and replace; and the IAM role and instance
profile of the GitLab application servers: the guide's S3 policy (object
actions on ``<bucket>/*``, bucket actions on the bucket) narrowed to these
buckets, use of the key through S3 and Secrets Manager, Session Manager and the
CloudWatch agent (tier ``logs`` grants it). Tiers that own secrets grant the role read access to them.
With a sender, the SES SMTP credentials (``compile/email.py``).

Bucket names are ``gl-<kind>-<account>-<region>-<stack suffix>``: the guide's
``gl-`` prefix, unique per account and region, and unique per stack so that two
deployments (or a redeployment next to retained buckets) never collide.

Exposes: ``KmsKeyArn``, ``InstanceRoleName``, ``InstanceProfileArn``, ``SmtpSecretArn`` and
``<Kind>BucketName`` for each bucket.
"""

from __future__ import annotations

from awacs.aws import Principal
from troposphere import (
    Equals,
    FindInMap,
    GetAtt,
    If,
    Join,
    Not,
    Or,
    Ref,
    Select,
    Split,
    Sub,
    iam,
    kms,
    s3,
)

from gitlab_cfn.compile.email import smtp_credentials
from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import (
    assume_role,
    gitlab_object_storage,
    kms_key_policy,
    kms_use,
    log_bucket,
    managed_policy_arn,
    tls_only_bucket,
)
from gitlab_cfn.compile.tier import Tier, scanner_skip

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
BUCKET_PREFIX = "gl-"
# Noncurrent versions (deleted or overwritten objects) are kept this many days.
NONCURRENT_DAYS = {"Backups": 90}
NONCURRENT_DEFAULT = 30
LOG_DAYS = 365

# Elastic Load Balancing's log-writing account in regions opened before August
# 2022; newer regions grant the log delivery service principal instead.
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240",
    "us-west-1": "027434742980", "us-west-2": "797873946194",
    "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-south-1": "718504428378", "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887", "ap-northeast-3": "383597477331",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416",
    "eu-west-3": "009996457667", "eu-north-1": "897822967062",
    "eu-south-1": "635631232127", "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}
ELB_LOG_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


def bucket_name(kind: str, suffix=None, region=None) -> Join:
    stack_suffix = suffix or Select(0, Split("-", Select(2, Split("/", Ref("AWS::StackId")))))
    return Join("-", ["gl", kind, Ref("AWS::AccountId"), region or Ref("AWS::Region"), stack_suffix])


# With RestoreBucketsFrom (gitlab-cfn restore), GitLab uses the old stack's retained object
# buckets, named as this tier names them with the old stack's suffix, and no new ones are
# made: the objects stay where they are (no copy), with their versions, lifecycle and the
# old key's encryption. The access-log bucket is always new.
RESTORE_BUCKETS = "RestoreBuckets"
NEW_BUCKETS = "NewBuckets"
RESTORE_KEY = "RestoreKey"
# With RestoreBucketsRegion too (a restore into another region), the old buckets stay in the
# old region: their names, GitLab's object-storage connection (BUCKETS_REGION,
# scripts/gitlab-app.sh reads it from a bucket's name) and the old key's kms:ViaService
# name that region.
BUCKETS_ELSEWHERE = "RestoreBucketsElsewhere"
BUCKETS_HERE = "BucketsInThisRegion"


def buckets_region(tier: Tier) -> If:
    if BUCKETS_ELSEWHERE not in tier.template.conditions:
        tier.template.add_condition(BUCKETS_ELSEWHERE, Not(Equals(tier.param("RestoreBucketsRegion"), "")))
        # New buckets, or old ones of this region: the template puts their policy on them.
        tier.template.add_condition(BUCKETS_HERE, Or(Equals(Ref("RestoreBucketsFrom"), ""),
                                                     Equals(Ref("RestoreBucketsRegion"), "")))
    return If(BUCKETS_ELSEWHERE, Ref("RestoreBucketsRegion"), Ref("AWS::Region"))


def _encryption(algorithm: str, key_arn=None) -> s3.BucketEncryption:
    default = s3.ServerSideEncryptionByDefault(SSEAlgorithm=algorithm)
    if key_arn is not None:
        default.KMSMasterKeyID = key_arn
    return s3.BucketEncryption(ServerSideEncryptionConfiguration=[
        s3.ServerSideEncryptionRule(BucketKeyEnabled=key_arn is not None, ServerSideEncryptionByDefault=default)])


PRIVATE = s3.PublicAccessBlockConfiguration(
    BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True)


def _lifecycle(noncurrent_days: int, expire_days: int | None = None) -> s3.LifecycleConfiguration:
    rule = s3.LifecycleRule(
        Id="Housekeeping", Status="Enabled",
        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=noncurrent_days),
    )
    if expire_days is not None:
        rule.ExpirationInDays = expire_days
    return s3.LifecycleConfiguration(Rules=[rule])


def log_bucket_resources(tier: Tier) -> s3.Bucket:
    """The access-log bucket: S3 server access logs of every bucket, and the load
    balancer's. S3-managed keys: neither log delivery writes to KMS-encrypted buckets."""
    legacy = list(ELB_LOG_ACCOUNTS)
    tier.template.add_mapping("ElbLogAccounts", {r: {"Account": a} for r, a in ELB_LOG_ACCOUNTS.items()})
    # Fn::Or takes 2 to 10 conditions: balanced groups of at most 10, or'ed together.
    size = -(-len(legacy) // -(-len(legacy) // 10))
    groups = [Or(*[Equals(Ref("AWS::Region"), r) for r in legacy[i:i + size]]) for i in range(0, len(legacy), size)]
    tier.template.add_condition("ElbLogAccountRegion", Or(*groups))
    logs = tier.keep(s3.Bucket(
        "LogsBucket",
        BucketName=bucket_name("logs"),
        BucketEncryption=_encryption("AES256"),
        PublicAccessBlockConfiguration=PRIVATE,
        OwnershipControls=s3.OwnershipControls(Rules=[
            s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        LifecycleConfiguration=_lifecycle(NONCURRENT_DEFAULT, LOG_DAYS),
        Tags=tags("logs"),
    ))
    scanner_skip(logs, "CKV_AWS_18", "the access-log bucket cannot log into itself")
    arn = GetAtt(logs, "Arn")
    account = Principal("AWS", [Sub("arn:${AWS::Partition}:iam::${Account}:root",
                                    Account=FindInMap("ElbLogAccounts", Ref("AWS::Region"), "Account"))])
    tier.add(s3.BucketPolicy(
        "LogsBucketPolicy",
        Bucket=Ref(logs),
        PolicyDocument=If("ElbLogAccountRegion",
                          log_bucket(arn, account),
                          log_bucket(arn, Principal("Service", [ELB_LOG_SERVICE]))),
    ))
    return logs


def restored_key_grant(tier: Tier, roles) -> None:
    """With RestoreKmsKeyArn, the old stack's key: its buckets' objects are encrypted with it
    (and new ones too, by their default encryption), so the Rails servers use it through S3
    only. The old key's policy delegates to IAM in the account (policies.kms_key_policy)."""
    tier.template.add_condition(RESTORE_KEY, Not(Equals(tier.param("RestoreKmsKeyArn"), "")))
    tier.add(iam.PolicyType(
        "RestoredDataKeyUse", Condition=RESTORE_KEY, PolicyName="RestoredDataKeyUse",
        Roles=[Ref(role) for role in roles],
        PolicyDocument=kms_use(Ref("RestoreKmsKeyArn"), ["s3"], region=buckets_region(tier)),
    ))


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
    key_arn = GetAtt(key, "Arn")

    logs = log_bucket_resources(tier)
    old_suffix = tier.param("RestoreBucketsFrom")
    tier.template.add_condition(RESTORE_BUCKETS, Not(Equals(old_suffix, "")))
    tier.template.add_condition(NEW_BUCKETS, Equals(old_suffix, ""))
    buckets = {}
    names = {}
    arns = {}
    for logical, kind in BUCKETS.items():
        bucket = tier.keep(s3.Bucket(
            f"{logical}Bucket",
            Condition=NEW_BUCKETS,
            BucketName=bucket_name(kind),
            BucketEncryption=_encryption("aws:kms", key_arn),
            PublicAccessBlockConfiguration=PRIVATE,
            # GitLab's guide grants s3:PutObjectAcl: object ACLs stay usable,
            # while the public access block keeps every object private.
            OwnershipControls=s3.OwnershipControls(Rules=[
                s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerPreferred")]),
            # Versioned, so that a deleted or overwritten object can be recovered
            # for a while; old versions expire.
            VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
            LifecycleConfiguration=_lifecycle(NONCURRENT_DAYS.get(logical, NONCURRENT_DEFAULT)),
            LoggingConfiguration=s3.LoggingConfiguration(
                DestinationBucketName=Ref(logs), LogFilePrefix=f"s3/{kind}/"),
            Tags=tags(kind),
        ))
        buckets[logical] = bucket
        names[logical] = If(RESTORE_BUCKETS, bucket_name(kind, old_suffix, buckets_region(tier)), Ref(bucket))
        arns[logical] = If(RESTORE_BUCKETS, Join("", ["arn:", Ref("AWS::Partition"), ":s3:::",
                                                       bucket_name(kind, old_suffix, buckets_region(tier))]),
                           GetAtt(bucket, "Arn"))
        # The policy is the stack's, not the bucket's: deleted with the old stack, so a
        # restored stack puts it on the old bucket again.
        # Not on buckets of another region (RestoreBucketsRegion): gitlab-cfn restore puts
        # it there (operate/restore_region.tls_only_policies).
        # (Under that condition the buckets are of this region: named without the region's If.)
        here = bucket_name(kind, old_suffix)
        tier.add(s3.BucketPolicy(
            f"{logical}BucketPolicy",
            Condition=BUCKETS_HERE,
            Bucket=If(RESTORE_BUCKETS, here, Ref(bucket)),
            PolicyDocument=tls_only_bucket(If(RESTORE_BUCKETS, Join("", ["arn:", Ref("AWS::Partition"), ":s3:::", here]),
                                              GetAtt(bucket, "Arn"))),
        ))

    def rails_role(name: str, description: str, tag: str) -> iam.Role:
        """A role of the servers that run GitLab's Rails code (application, Sidekiq): object
        storage in every bucket and the data key; each gets its secrets in its own grants."""
        return tier.add(iam.Role(
            name,
            Path=IAM_PATH,
            Description=description,
            AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
            ManagedPolicyArns=[
                managed_policy_arn("AmazonSSMManagedInstanceCore"),
            ],
            Policies=[
                iam.Policy(
                    PolicyName="gitlab-object-storage",
                    PolicyDocument=gitlab_object_storage(list(arns.values())),
                ),
                iam.Policy(
                    PolicyName="gitlab-data-key",
                    PolicyDocument=kms_use(key_arn, ["s3", "secretsmanager"]),
                ),
            ],
            Tags=tags(tag),
        ))

    role = rails_role("InstanceRole",
                      "GitLab application servers: object storage, stack secrets, Session Manager.", "gitlab")
    profile = tier.add(iam.InstanceProfile("InstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    sidekiq = None
    if tier.cfg.sidekiq_group:
        # Sidekiq's servers use object storage and the data key as the application servers do,
        # but are granted fewer of the stack's secrets (no root password, no SSH host keys).
        sidekiq = rails_role(
            "SidekiqRole",
            "GitLab Sidekiq servers: object storage, the secrets Sidekiq reads, Session Manager.", "sidekiq")
        sidekiq_profile = tier.add(iam.InstanceProfile("SidekiqInstanceProfile", Path=IAM_PATH,
                                                       Roles=[Ref(sidekiq)]))
        tier.output("SidekiqRoleName", Ref(sidekiq), "IAM role of the GitLab Sidekiq servers.")
        tier.output("SidekiqInstanceProfileArn", GetAtt(sidekiq_profile, "Arn"),
                    "Instance profile of the GitLab Sidekiq servers.")
    # Outbound e-mail's SES SMTP credentials (compile/email.py); Sidekiq sends GitLab's
    # notification mail: its servers read them too.
    smtp_credentials(tier, key_arn, [role] + ([sidekiq] if sidekiq is not None else []))
    restored_key_grant(tier, [role] + ([sidekiq] if sidekiq is not None else []))

    tier.output("KmsKeyArn", key_arn, "KMS key encrypting the stack's data.")
    tier.output("LogsBucketName", Ref(logs), "S3 bucket of the access logs (S3 and load balancer).",
                public=True)
    tier.output("InstanceRoleName", Ref(role), "IAM role of the GitLab application servers.")
    tier.output("InstanceProfileArn", GetAtt(profile, "Arn"), "Instance profile of the GitLab servers.")
    for logical in buckets:
        tier.output(f"{logical}BucketName", names[logical], f"S3 bucket for GitLab {BUCKETS[logical]}.",
                    public=True)
