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

from troposphere import GetAtt, Ref, Sub, iam, rds, secretsmanager

from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import (
    assume_role,
    grant_secret_read,
    managed_policy_arn,
)
from gitlab_cfn.compile.tier import Tier, generated_secret

DESCRIPTION = "gitlab-cfn database: RDS PostgreSQL Multi-AZ DB instance and its secret."

DB_NAME = "gitlabhq_production"
DB_USER = "gitlab"
DB_PORT = 5432


def secret_value(secret, key: str) -> Sub:
    """A ``{{resolve:secretsmanager:...}}`` dynamic reference to one JSON key of a secret."""
    return Sub(f"{{{{resolve:secretsmanager:${{Secret}}:SecretString:{key}}}}}", Secret=Ref(secret))


def build(tier: Tier) -> None:
    tier.stack_name()
    key_arn = tier.input("KmsKeyArn")
    secret = generated_secret(tier, "DatabaseSecret", "PostgreSQL credentials", "database",
                              key="password", length=40, username=DB_USER)
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
    io1 = tier.cfg.database.storage_type == "io1"
    db = tier.keep(rds.DBInstance(
        "Database",
        Engine="postgres",
        EngineVersion=tier.param("DBEngineVersion"),
        DBInstanceClass=tier.param("DBInstanceClass"),
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
        BackupRetentionPeriod=tier.param("DBBackupRetentionPeriod"),
        AutoMinorVersionUpgrade=False,
        AllowMajorVersionUpgrade=False,
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
    ), policy="Snapshot")
    if io1:
        db.Iops = tier.param("DBIops")
    tier.add(secretsmanager.SecretTargetAttachment(
        "DatabaseSecretAttachment",
        SecretId=Ref(secret),
        TargetId=Ref(db),
        TargetType="AWS::RDS::DBInstance",
    ))
    tier.add(grant_secret_read("DatabaseSecretRead", secret, [tier.input("InstanceRoleName")]))

    tier.output("DatabaseEndpoint", GetAtt(db, "Endpoint.Address"), "PostgreSQL host name.", public=True)
    tier.output("DatabaseInstanceId", Ref(db), "DB instance identifier (its CloudWatch dimension).")
    tier.output("DatabasePort", GetAtt(db, "Endpoint.Port"), "PostgreSQL port.")
    tier.output("DatabaseName", DB_NAME, "GitLab database name.")
    tier.output("DatabaseSecretArn", Ref(secret), "Secret holding the database user and password.",
                public=True)
