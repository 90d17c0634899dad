"""Backup tier: an AWS Backup plan for the database, the Gitaly data volume and the buckets.

GitLab's guidance for RDS and S3 (https://docs.gitlab.com/administration/backup_restore/backup_large_reference_architectures/:
"Configure AWS Backup to back up RDS (and S3) data", "copy backups to a separate region")
and the issue's Gitaly volume snapshots, in one plan: every day at 03:00 UTC (after the
02:30 ``gitlab-backup`` of the repositories, scripts/lib/backup.sh) a recovery point of
the RDS instance (and Praefect's own, if any), every Gitaly server's data volume (the
single server's ``GitalyDataVolume``, each Gitaly Cluster node's ``Gitaly<n>DataVolume``)
and every ``gl-`` bucket (S3 backups need
versioning, which they have) in a vault encrypted with the stack's key, kept
``BackupRetentionDays`` days, and copied to ``BackupCopyVaultArn`` (a vault in another
region, created beforehand) when one is given.

The vault is kept when the stack goes (it holds the recovery points a restore needs); its
name is ``gitlab-cfn-<this stack's id>``, so a later stack of the same name gets its own.

Exposes: ``BackupVaultName``, ``BackupPlanId``.
"""

from __future__ import annotations

from troposphere import Equals, GetAtt, If, Join, Not, NoValue, Ref, Select, Split, Sub, backup, iam

from gitlab_cfn.compile.naming import IAM_PATH
from gitlab_cfn.compile.policies import assume_role, managed_policy_arn
from gitlab_cfn.compile.tier import Tier
from gitlab_cfn.compile.tiers.storage import BUCKETS, BUCKETS_HERE

DESCRIPTION = "gitlab-cfn backup: AWS Backup plan for the database, the Gitaly volume and the buckets."

# https://docs.aws.amazon.com/aws-backup/latest/devguide/iam-service-roles.html: the managed
# policies of AWS Backup's default service role, and the S3 ones
# (https://docs.aws.amazon.com/aws-backup/latest/devguide/s3-backups.html#s3-backup-permissions).
ROLE_POLICIES = (
    "service-role/AWSBackupServiceRolePolicyForBackup",
    "service-role/AWSBackupServiceRolePolicyForRestores",
    "AWSBackupServiceRolePolicyForS3Backup",
    "AWSBackupServiceRolePolicyForS3Restore",
)
SCHEDULE = "cron(0 3 * * ? *)"
# Start within an hour, finish within a day (AWS Backup's StartWindowMinutes and
# CompletionWindowMinutes; an S3 backup needs a start window of at least an hour).
START_WINDOW_MINUTES = 60
COMPLETION_WINDOW_MINUTES = 1440


def build(tier: Tier) -> None:
    tier.stack_name()
    # AWS Backup vault names have 2 to 50 characters
    # (https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupVault.html):
    # "gitlab-cfn-" and this stack's id (a UUID, 36), unique and always short enough.
    vault = tier.keep(backup.BackupVault(
        "BackupVault",
        BackupVaultName=Join("-", ["gitlab-cfn", Select(2, Split("/", Ref("AWS::StackId")))]),
        EncryptionKeyArn=tier.input("KmsKeyArn"),
    ))
    role = tier.add(iam.Role(
        "BackupRole",
        Path=IAM_PATH,
        Description="AWS Backup: recovery points of the GitLab database, Gitaly volume and buckets.",
        AssumeRolePolicyDocument=assume_role("backup.amazonaws.com"),
        ManagedPolicyArns=[managed_policy_arn(name) for name in ROLE_POLICIES],
    ))
    retention = tier.param("BackupRetentionDays")
    copy_to = tier.param("BackupCopyVaultArn")
    tier.template.add_condition("CopyToAnotherVault", Not(Equals(copy_to, "")))
    plan = tier.add(backup.BackupPlan(
        "BackupPlan",
        BackupPlan=backup.BackupPlanResourceType(
            BackupPlanName=Sub("gitlab-cfn-${ParentStackName}"),
            BackupPlanRule=[backup.BackupRuleResourceType(
                RuleName="Daily",
                TargetBackupVault=Ref(vault),
                ScheduleExpression=SCHEDULE,
                StartWindowMinutes=START_WINDOW_MINUTES,
                CompletionWindowMinutes=COMPLETION_WINDOW_MINUTES,
                Lifecycle=backup.LifecycleResourceType(DeleteAfterDays=retention),
                CopyActions=If("CopyToAnotherVault", [backup.CopyActionResourceType(
                    DestinationBackupVaultArn=copy_to,
                    Lifecycle=backup.LifecycleResourceType(DeleteAfterDays=retention),
                )], NoValue),
            )],
        ),
    ))
    cfg = tier.cfg
    databases = ["DatabaseInstanceId"]
    if cfg.cluster and cfg.praefect.database == "own":
        # Praefect's own database: which node holds which repository, and the replication queue.
        databases.append("PraefectDatabaseInstanceId")
    # The single Gitaly server's volume, and each Gitaly Cluster node's (Gitaly<n>DataVolume).
    volumes = []
    if not cfg.cluster or cfg.gitaly.keep_single_server:
        volumes.append("GitalyDataVolumeId")
    if cfg.cluster:
        volumes += [f"Gitaly{n}DataVolumeId" for n in range(1, cfg.gitaly.nodes + 1)]
    resources = (
        [Sub(f"arn:${{AWS::Partition}}:rds:${{AWS::Region}}:${{AWS::AccountId}}:db:${{{name}}}") for name in databases]
        + [Sub(f"arn:${{AWS::Partition}}:ec2:${{AWS::Region}}:${{AWS::AccountId}}:volume/${{{name}}}")
           for name in volumes]
        # A plan protects resources of its own region only: the old buckets a restore into
        # another region keeps using (RestoreBucketsRegion) stay with the recovery points and
        # S3 versioning of their region, and are left out here (docs/operations.md, Restoring).
        + [If(BUCKETS_HERE, Sub(f"arn:${{AWS::Partition}}:s3:::${{{logical}BucketName}}"), NoValue)
           for logical in BUCKETS])
    tier.template.add_condition(BUCKETS_HERE, Equals(tier.param("RestoreBucketsRegion"), ""))
    for name in databases + volumes:
        tier.input(name)
    for logical in BUCKETS:
        tier.input(f"{logical}BucketName")
    tier.add(backup.BackupSelection(
        "BackupSelection",
        BackupPlanId=Ref(plan),
        BackupSelection=backup.BackupSelectionResourceType(
            SelectionName="gitlab-data",
            IamRoleArn=GetAtt(role, "Arn"),
            Resources=resources,
        ),
    ))
    tier.output("BackupVaultName", Ref(vault), "AWS Backup vault holding the stack's recovery points.", public=True)
    tier.output("BackupPlanId", Ref(plan), "AWS Backup plan of the stack.")
