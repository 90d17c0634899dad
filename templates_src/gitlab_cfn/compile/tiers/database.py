"""Database tier: Amazon RDS for PostgreSQL, as in "PostgreSQL with RDS".

Builds a Multi-AZ DB *instance* (GitLab supports neither Aurora nor Multi-AZ DB
clusters) in a subnet group over the private subnets: database
``gitlabhq_production``, user ``gitlab``, the password generated in Secrets
Manager and read through a dynamic reference (never a parameter), storage
encrypted with the stack's key, io1 (guide: 100 GiB at 1000 IOPS) or gp3, not
publicly accessible, TLS required by its parameter group, automatic minor
upgrades off, deletion protection on, 7 to 35 days of backups, and a final
snapshot on delete or replacement. The application role may read the secret.

Exposes: ``DatabaseEndpoint``, ``DatabasePort``, ``DatabaseName``,
``DatabaseSecretArn``.
"""

from __future__ import annotations

from troposphere import Equals, GetAtt, If, Not, Ref, Sub, iam, rds, secretsmanager

from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import (
    assume_role,
    grant_secret_read,
    managed_policy_arn,
)
from gitlab_cfn.compile.tier import Tier, generated_secret, gitlab_roles

DESCRIPTION = "gitlab-cfn database: RDS PostgreSQL Multi-AZ DB instance and its secret."

DB_NAME = "gitlabhq_production"
DB_USER = "gitlab"
DB_PORT = 5432


def secret_value(secret, key: str) -> Sub:
    """A ``{{resolve:secretsmanager:...}}`` dynamic reference to one JSON key of a secret."""
    return Sub(f"{{{{resolve:secretsmanager:${{Secret}}:SecretString:{key}}}}}", Secret=Ref(secret))


def build(tier: Tier) -> None:
    tier.stack_name()
    secret = generated_secret(tier, "DatabaseSecret", "PostgreSQL credentials", "database",
                              key="password", length=40, username=DB_USER)
    restore_secret(tier, secret)
    db, subnets, params, monitoring = instance(tier, "Database", secret, tier.param("DBInstanceClass"))
    tier.add(grant_secret_read("DatabaseSecretRead", secret, gitlab_roles(tier)))

    tier.output("DatabaseEndpoint", GetAtt(db, "Endpoint.Address"), "PostgreSQL host name.", public=True)
    tier.output("DatabaseInstanceId", Ref(db), "DB instance identifier (its CloudWatch dimension).")
    tier.output("DatabasePort", GetAtt(db, "Endpoint.Port"), "PostgreSQL port.")
    tier.output("DatabaseName", DB_NAME, "GitLab database name.")
    tier.output("DatabaseSecretArn", Ref(secret), "Secret holding the database user and password.",
                public=True)
    if tier.cfg.cluster and tier.cfg.praefect.database == "own":
        # Praefect's own RDS instance (GitLab: "Praefect PostgreSQL", 1+ c5.large). Its master
        # user creates Praefect's database and user at the first Praefect server's boot.
        own = generated_secret(tier, "PraefectDatabaseMasterSecret", "Praefect PostgreSQL master credentials",
                               "praefect-database", key="password", length=40, username=DB_USER)
        pdb, *_ = instance(tier, "PraefectDatabase", own, tier.param("PraefectDBInstanceClass"),
                           shared=(subnets, params, monitoring))
        tier.output("PraefectDatabaseEndpoint", GetAtt(pdb, "Endpoint.Address"),
                    "Praefect PostgreSQL host name.", public=True)
        tier.output("PraefectDatabaseInstanceId", Ref(pdb),
                    "Praefect DB instance identifier (backed up by tier backup).")
        tier.output("PraefectDatabasePort", GetAtt(pdb, "Endpoint.Port"), "Praefect PostgreSQL port.")
        tier.output("PraefectDatabaseMasterSecretArn", Ref(own),
                    "Secret holding the Praefect database instance's master user and password.")


RESTORE = "RestoreDatabase"
RESTORE_SECRET = "RestoreDatabaseSecret"


def restore_secret(tier: Tier, secret) -> None:
    """On a restore, the database keeps the old stack's password: the new secret is seeded with
    the old secret's value (a dynamic reference CloudFormation resolves; the value is never a
    parameter nor in the template), instead of being generated. Its SecretTargetAttachment then
    writes the new instance's host into it."""
    tier.template.add_condition(RESTORE_SECRET, Not(Equals(tier.param("RestoreDBSecretArn"), "")))
    generate = secret.GenerateSecretString
    secret.GenerateSecretString = If(RESTORE_SECRET, Ref("AWS::NoValue"), generate)
    secret.SecretString = If(RESTORE_SECRET, Sub("{{resolve:secretsmanager:${RestoreDBSecretArn}}}"),
                             Ref("AWS::NoValue"))


def instance(tier: Tier, logical_id: str, secret, instance_class, shared=None):
    """A Multi-AZ PostgreSQL DB instance (``logical_id``) whose master password is ``secret``;
    the subnet group, parameter group and monitoring role are made once and shared."""
    key_arn = tier.input("KmsKeyArn")
    if shared:
        subnets, params, monitoring = shared
        return tier.keep(_db_instance(tier, logical_id, secret, instance_class, subnets, params, monitoring, key_arn),
                         policy="Snapshot"), subnets, params, monitoring
    subnets = tier.add(rds.DBSubnetGroup(
        "DatabaseSubnetGroup",
        DBSubnetGroupDescription="GitLab database: private subnets",
        SubnetIds=tier.input("PrivateSubnetIds"),
        Tags=tags("database"),
    ))
    params = tier.add(rds.DBParameterGroup(
        "DatabaseParameterGroup",
        Description="GitLab database: TLS required",
        Family=Sub("postgres${DBEngineVersion}"),
        Parameters={"rds.force_ssl": "1"},
        Tags=tags("database"),
    ))
    monitoring = tier.add(iam.Role(
        "DatabaseMonitoringRole",
        Path=IAM_PATH,
        Description="RDS enhanced monitoring of the GitLab database.",
        AssumeRolePolicyDocument=assume_role("monitoring.rds.amazonaws.com"),
        ManagedPolicyArns=[managed_policy_arn("service-role/AmazonRDSEnhancedMonitoringRole")],
    ))
    db = tier.keep(_db_instance(tier, logical_id, secret, instance_class, subnets, params, monitoring, key_arn),
                   policy="Snapshot")
    return db, subnets, params, monitoring


def restore_from_snapshot(tier: Tier, db: rds.DBInstance) -> None:
    """With ``RestoreDBSnapshot``, the instance is restored from that snapshot: RDS restores the
    database, its master user and password, and its encryption (the snapshot's key), so
    CloudFormation must not be given DBName, KmsKeyId, MasterUsername or MasterUserPassword
    ("If you specify the DBSnapshotIdentifier property to restore a DB instance ..., then don't
    specify the following properties: CharacterSetName, DBClusterIdentifier, DBName, KmsKeyId,
    MasterUsername, MasterUserPassword, PromotionTier, SourceDBInstanceIdentifier, SourceRegion,
    StorageEncrypted (for an unencrypted snapshot), Timezone";
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-rds-dbinstance.html#cfn-rds-dbinstance-dbsnapshotidentifier).
    The snapshot is encrypted (every snapshot of this stack is), so StorageEncrypted stays.
    Later updates keep the same value (the parameter keeps its previous value), which restores
    nothing again."""
    snapshot = tier.param("RestoreDBSnapshot")
    tier.template.add_condition(RESTORE, Not(Equals(snapshot, "")))
    db.DBSnapshotIdentifier = If(RESTORE, snapshot, Ref("AWS::NoValue"))
    for prop in ("DBName", "KmsKeyId", "MasterUsername", "MasterUserPassword"):
        setattr(db, prop, If(RESTORE, Ref("AWS::NoValue"), getattr(db, prop)))


def _db_instance(tier, logical_id, secret, instance_class, subnets, params, monitoring, key_arn) -> rds.DBInstance:
    io1 = tier.cfg.database.storage_type == "io1"
    db = rds.DBInstance(
        logical_id,
        Engine="postgres",
        EngineVersion=tier.param("DBEngineVersion"),
        DBInstanceClass=instance_class,
        AllocatedStorage=tier.param("DBAllocatedStorage"),
        StorageType=tier.cfg.database.storage_type,
        StorageEncrypted=True,
        KmsKeyId=key_arn,
        MultiAZ=True,
        PubliclyAccessible=False,
        DBSubnetGroupName=Ref(subnets),
        VPCSecurityGroups=[tier.input("DatabaseSecurityGroupId")],
        DBParameterGroupName=Ref(params),
        Port=str(DB_PORT),
        DBName=DB_NAME,
        MasterUsername=DB_USER,
        MasterUserPassword=secret_value(secret, "password"),
        # No snapshot: a new database. The stand-in refuses these together, as AWS does
        # (standin/rds.py, db_instance_restored_from_snapshot).
        BackupRetentionPeriod=tier.param("DBBackupRetentionPeriod"),
        AutoMinorVersionUpgrade=False,
        # DBEngineVersion offers 16 and 17, and GitLab 19 needs 17: RDS refuses a new major
        # version through ModifyDBInstance unless this is true ("The AllowMajorVersionUpgrade
        # flag must be present when upgrading to a new major version"; RDS API reference,
        # ModifyDBInstance). It allows nothing by itself: the version changes only when the
        # parameter does, and the change set shows it before it runs.
        AllowMajorVersionUpgrade=True,
        # Inert until a policy grants rds-db:connect; GitLab itself uses the password.
        EnableIAMDatabaseAuthentication=True,
        DeletionProtection=True,
        CopyTagsToSnapshot=True,
        EnableCloudwatchLogsExports=["postgresql", "upgrade"],
        EnablePerformanceInsights=True,
        PerformanceInsightsKMSKeyId=key_arn,
        PerformanceInsightsRetentionPeriod=7,
        MonitoringInterval=60,
        MonitoringRoleArn=GetAtt(monitoring, "Arn"),
        Tags=tags("database"),
    )
    if io1:
        db.Iops = tier.param("DBIops")
    if logical_id == "Database":
        restore_from_snapshot(tier, db)
    tier.add(secretsmanager.SecretTargetAttachment(
        f"{logical_id}SecretAttachment",
        SecretId=Ref(secret),
        TargetId=Ref(db),
        TargetType="AWS::RDS::DBInstance",
    ))
    return db
