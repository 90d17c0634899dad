"""Every IAM policy document in the templates, written with awacs.

Helpers return ``PolicyDocument`` objects; ``grant_*`` helpers also write the
``AWS::IAM::Policy`` that attaches a document to a role, next to the resource
being granted (the CDK ``grant_read`` shape), so the tier that owns a secret
is also the one place that says who may read it.
"""

from __future__ import annotations

from awacs import kms, s3, secretsmanager, ssm
from awacs.aws import (
    Allow,
    Bool,
    Condition,
    Deny,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
    StringLike,
)
from awacs.sts import AssumeRole
from troposphere import AWSObject, Join, Ref, Sub, iam

VERSION = "2012-10-17"

# The eight actions of GitLab's guide ("Create an IAM Policy"). The guide lists
# AbortMultipartUpload and ListMultipartUploadParts with the bucket actions, but
# both act on objects (arn:...:bucket/*), so here they sit with the object ones.
S3_OBJECT_ACTIONS = [
    s3.PutObject,
    s3.GetObject,
    s3.DeleteObject,
    s3.PutObjectAcl,
    s3.AbortMultipartUpload,
    s3.ListMultipartUploadParts,
]
S3_BUCKET_ACTIONS = [s3.ListBucket, s3.ListBucketMultipartUploads]


def managed_policy_arn(name: str) -> Sub:
    """ARN of an AWS managed policy in the stack's partition."""
    return Sub(f"arn:${{AWS::Partition}}:iam::aws:policy/{name}")


def assume_role(service: str) -> PolicyDocument:
    """Trust policy letting an AWS service (e.g. ``ec2.amazonaws.com``) assume a role."""
    return PolicyDocument(
        Version=VERSION,
        Statement=[Statement(
            Effect=Allow,
            Principal=Principal("Service", [service]),
            Action=[AssumeRole],
        )],
    )


def gitlab_object_storage(bucket_arns: list) -> PolicyDocument:
    """GitLab's guide policy, narrowed from ``gl-*`` to this stack's own buckets.

    Object actions apply to ``<bucket>/*``, bucket actions to the bucket; every
    bucket name starts with ``gl-`` as the guide assumes.
    """
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="GitLabObjects",
                Effect=Allow,
                Action=S3_OBJECT_ACTIONS,
                Resource=[Sub("${Bucket}/*", Bucket=arn) for arn in bucket_arns],
            ),
            Statement(
                Sid="GitLabBuckets",
                Effect=Allow,
                Action=S3_BUCKET_ACTIONS,
                Resource=list(bucket_arns),
            ),
        ],
    )


def tls_only_bucket(bucket_arn) -> PolicyDocument:
    """Bucket policy refusing every request that does not arrive over TLS."""
    return PolicyDocument(
        Version=VERSION,
        Statement=[Statement(
            Sid="DenyInsecureTransport",
            Effect=Deny,
            Principal=Principal("*"),
            Action=[s3.Action("*")],
            Resource=[bucket_arn, Sub("${Bucket}/*", Bucket=bucket_arn)],
            Condition=Condition(Bool("aws:SecureTransport", "false")),
        )],
    )


def log_bucket(bucket_arn, elb_principal: Principal) -> PolicyDocument:
    """Policy of the access-log bucket: TLS only; S3 server access logs from this
    account's buckets under ``s3/``; the load balancer's access logs under ``elb/``."""
    account_logs = Sub("${Bucket}/elb/AWSLogs/${AWS::AccountId}/*", Bucket=bucket_arn)
    statements = list(tls_only_bucket(bucket_arn).Statement) + [
        Statement(
            Sid="S3ServerAccessLogs",
            Effect=Allow,
            Principal=Principal("Service", ["logging.s3.amazonaws.com"]),
            Action=[s3.PutObject],
            Resource=[Sub("${Bucket}/s3/*", Bucket=bucket_arn)],
            Condition=Condition(StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        ),
        Statement(
            Sid="LoadBalancerAccessLogs",
            Effect=Allow,
            Principal=elb_principal,
            Action=[s3.PutObject],
            Resource=[account_logs],
        ),
    ]
    return PolicyDocument(Version=VERSION, Statement=statements)


# What the account's IAM policies may grant on the stack's key: administering it
# and using it (the key administrator and key user sets of the KMS console),
# not kms:* with its account-level and alias actions.
KMS_KEY_ADMIN = [
    kms.DescribeKey, kms.GetKeyPolicy, kms.PutKeyPolicy, kms.ListKeyPolicies,
    kms.GetKeyRotationStatus, kms.EnableKeyRotation, kms.DisableKeyRotation,
    kms.RotateKeyOnDemand, kms.ListKeyRotations, kms.ListResourceTags, kms.TagResource,
    kms.UntagResource, kms.UpdateKeyDescription, kms.EnableKey, kms.DisableKey,
    kms.ScheduleKeyDeletion, kms.CancelKeyDeletion,
    kms.CreateGrant, kms.ListGrants, kms.RevokeGrant, kms.RetireGrant,
]
KMS_KEY_USE = [
    kms.Encrypt, kms.Decrypt, kms.ReEncryptFrom, kms.ReEncryptTo,
    kms.GenerateDataKey, kms.GenerateDataKeyWithoutPlaintext,
]


def kms_key_policy() -> PolicyDocument:
    """Key policy delegating to IAM in this account, as AWS's default key policy does.

    Who may use the key is then said by IAM policies (see ``kms_use``), and the
    services that encrypt with it (S3, RDS, ElastiCache, Secrets Manager) act on
    behalf of principals that IAM allows. In a key policy, Resource "*" is the key.
    """
    return PolicyDocument(
        Version=VERSION,
        Statement=[Statement(
            Sid="EnableIamPolicies",
            Effect=Allow,
            Principal=Principal("AWS", [Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")]),
            Action=KMS_KEY_ADMIN + KMS_KEY_USE,
            Resource=["*"],
        )] + service_key_statements(),
    )


def service_key_statements() -> list[Statement]:
    """The services that encrypt with the key on their own behalf, not a principal's.

    CloudWatch Logs, for the stack's log groups only: the key policy must name the
    regional service principal, limited by the encryption context naming the group
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html,
    "Step 2: Set permissions on the KMS key"). CloudWatch alarms publishing to the
    stack's encrypted SNS topic: the key policy must let cloudwatch.amazonaws.com
    decrypt and generate data keys
    (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
    Needs the template's ``ParentStackName`` (see ``observability.LOG_GROUP_PREFIX``).
    """
    from gitlab_cfn.compile.observability import LOG_GROUP_PREFIX

    return [
        Statement(
            Sid="CloudWatchLogsForStackGroups",
            Effect=Allow,
            Principal=Principal("Service", [Sub("logs.${AWS::Region}.amazonaws.com")]),
            # kms:DescribeKey is not called with an encryption context: left out.
            Action=[kms.Encrypt, kms.Decrypt, kms.ReEncryptFrom, kms.ReEncryptTo,
                    kms.GenerateDataKey, kms.GenerateDataKeyWithoutPlaintext],
            Resource=["*"],
            # AWS's example uses ArnEquals/ArnLike; an encryption-context key is a string
            # key, and StringLike matches the same ARN pattern.
            Condition=Condition(StringLike(
                "kms:EncryptionContext:aws:logs:arn",
                Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                    + LOG_GROUP_PREFIX + "/*"))),
        ),
        Statement(
            Sid="CloudWatchAlarmsToStackTopic",
            Effect=Allow,
            Principal=Principal("Service", ["cloudwatch.amazonaws.com"]),
            Action=[kms.Decrypt, kms.GenerateDataKey],
            Resource=["*"],
        ),
    ]


def kms_use(key_arn, services: list[str], region=None) -> PolicyDocument:
    """Use of one key, only through the named services (``s3``, ``secretsmanager``) of this
    region, or of ``region`` (a key and buckets in another region)."""
    return PolicyDocument(
        Version=VERSION,
        Statement=[Statement(
            Sid="UseStackKeyThroughServices",
            Effect=Allow,
            Action=[kms.Decrypt, kms.GenerateDataKey],
            Resource=[key_arn],
            Condition=Condition(StringEquals(
                "kms:ViaService",
                [Sub(f"{service}.${{AWS::Region}}.amazonaws.com") if region is None
                 else Join("", [f"{service}.", region, ".amazonaws.com"]) for service in services],
            )),
        )],
    )


def gitaly_backup_sink(bucket_name, key_arn) -> PolicyDocument:
    """What Gitaly's server-side backups ask of S3 (scripts/gitaly.sh, go_cloud_url): Gitaly's
    sink (gitlab-org/gitaly internal/backup/sink.go: gocloud.dev/blob NewWriter and NewReader,
    nothing else) writes with the s3blob driver's uploader (PutObject, or a multipart upload,
    which is s3:PutObject too, and AbortMultipartUpload when it fails) and reads GetObject (the
    LATEST pointers, and restores). s3:ListBucket so that a key not there yet is a 404, which
    Gitaly takes for "no backup yet", not a 403 ("If you don't have the s3:ListBucket permission,
    Amazon S3 returns an HTTP status code 403", https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html).
    The bucket's default encryption is the stack's key: S3 asks KMS for a data key on a write,
    and to decrypt on a read and when a multipart upload completes
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html)."""
    bucket = Sub("arn:${AWS::Partition}:s3:::${Bucket}", Bucket=bucket_name)
    objects = Sub("arn:${AWS::Partition}:s3:::${Bucket}/*", Bucket=bucket_name)
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(Sid="WriteAndReadRepositoryBackups", Effect=Allow,
                      Action=[s3.PutObject, s3.GetObject, s3.AbortMultipartUpload], Resource=[objects]),
            Statement(Sid="MissingKeysAreNotFound", Effect=Allow, Action=[s3.ListBucket], Resource=[bucket]),
            Statement(Sid="UseStackKeyThroughS3", Effect=Allow, Action=[kms.Decrypt, kms.GenerateDataKey],
                      Resource=[key_arn],
                      Condition=Condition(StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com")))),
        ],
    )


def _on_secrets(sid: str, actions: list, secret_arns: list) -> PolicyDocument:
    return PolicyDocument(
        Version=VERSION,
        Statement=[Statement(Sid=sid, Effect=Allow, Action=actions, Resource=list(secret_arns))],
    )


def secret_read(secret_arns: list) -> PolicyDocument:
    return _on_secrets("ReadStackSecrets", [secretsmanager.GetSecretValue, secretsmanager.DescribeSecret],
                       secret_arns)


def secret_write(secret_arns: list) -> PolicyDocument:
    """Replace the value of secrets that instances fill in themselves (never create or delete)."""
    return _on_secrets("WriteStackSecrets", [secretsmanager.PutSecretValue], secret_arns)


def boot_read(bundle_objects_arn, parameter_arns: list | None = None) -> PolicyDocument:
    """What a server reads to boot: the boot bundles (``s3:GetObject`` on exactly
    ``<bucket>/<prefix>scripts/boot-*``), and the SSM parameters naming the one to run."""
    statements = [Statement(Sid="ReadBootBundle", Effect=Allow, Action=[s3.GetObject],
                            Resource=[bundle_objects_arn])]
    if parameter_arns:
        statements.append(Statement(Sid="ReadBootBundleLocation", Effect=Allow, Action=[ssm.GetParameter],
                                    Resource=list(parameter_arns)))
    return PolicyDocument(Version=VERSION, Statement=statements)


def grant(logical_id: str, document: PolicyDocument, role_names: list) -> iam.PolicyType:
    """An inline ``AWS::IAM::Policy`` attaching ``document`` to the given roles."""
    return iam.PolicyType(
        logical_id,
        PolicyName=logical_id,
        PolicyDocument=document,
        Roles=list(role_names),
    )


def grant_secret_read(logical_id: str, secret: AWSObject, role_names: list) -> iam.PolicyType:
    return grant(logical_id, secret_read([Ref(secret)]), role_names)


__all__ = [
    "assume_role",
    "boot_read",
    "gitaly_backup_sink",
    "gitlab_object_storage",
    "grant",
    "grant_secret_read",
    "kms_key_policy",
    "log_bucket",
    "kms_use",
    "managed_policy_arn",
    "secret_read",
    "secret_write",
    "tls_only_bucket",
]
