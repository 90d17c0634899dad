"""The parameters a person launching the stack fills in, defined once.

Every user-facing parameter of every tier is described here: its type, its
constraint, its default, and the label and group the CloudFormation console
shows. A tier asks for a parameter by name; the parent template declares the
same parameter from the same definition and passes it down. A parameter name
that is not in this catalog can only be fed by another tier's output (see
``wiring``), so nothing reaches a child template unconstrained.

The instance types, engine versions and other allowed values come from
``choices``, which the build config reads too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gitlab_cfn.compile.choices import (
    ALL_INSTANCE_TYPES,
    BASTION_INSTANCE_TYPES,
    CACHE_ENGINE_VERSIONS,
    CACHE_NODE_TYPES,
    DB_ENGINE_VERSIONS,
    DB_INSTANCE_CLASSES,
    GITLAB_INSTANCE_TYPES,
)
from gitlab_cfn.compile.config import BuildConfig
from gitlab_cfn.compile.images import IMAGE_ROOT_GIB
from gitlab_cfn.compile.sizes import GITALY_CLUSTER_IOPS

UBUNTU_LTS_AMI_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
)
GITLAB_AMI_PARAMETER = "/gitlab-cfn/ami/gitlab"

_OCTET = r"([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])"
_IPV4 = rf"({_OCTET}\.){{3}}{_OCTET}"
CIDR_VPC_PATTERN = rf"^{_IPV4}/(1[6-9]|2[0-8])$"
CIDR_ANY_PATTERN = rf"^{_IPV4}/([0-9]|[1-2][0-9]|3[0-2])$"
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
ACM_ARN_PATTERN = (
    r"^arn:aws(-cn|-us-gov)?:acm:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:"
    r"certificate/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
HOSTED_ZONE_PATTERN = r"^(Z[A-Z0-9]{1,31})?$"
BUCKET_NAME_PATTERN = r"^[0-9a-z][0-9a-z.-]{1,61}[0-9a-z]$"
KEY_PREFIX_PATTERN = r"^([0-9A-Za-z!_.*'()-]+/)*$"
# Bounds the boot bundle's key in the servers' user data (see userdata.MAX_LENGTHS).
KEY_PREFIX_MAX_LENGTH = 256
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
# A published version: a key prefix folder, and a Service Catalog product version name.
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$"

SSM_TYPE_PREFIX = "AWS::SSM::Parameter::Value<"

# Console groups, in the order the console shows them.
GROUPS = (
    "Network",
    "Access",
    "GitLab application",
    "Database (Amazon RDS for PostgreSQL)",
    "Cache (Amazon ElastiCache for Redis)",
    "Gitaly (Git repository storage)",
    "Monitoring and operations",
    "Restore from an old stack (disaster recovery)",
    "Template location",
)


@dataclass(frozen=True)
class ParamSpec:
    """One CloudFormation parameter, with the console metadata that goes with it."""

    type: str
    description: str
    label: str
    group: str
    default: Any = None
    allowed_values: tuple = ()
    allowed_pattern: str | None = None
    constraint: str | None = None
    min_value: int | None = None
    max_value: int | None = None
    max_length: int | None = None

    def for_child(self) -> ParamSpec:
        """The same parameter as a nested template declares it.

        The parent resolves an ``AWS::SSM::Parameter::Value<T>`` parameter once and
        passes the value down, so the child declares the resolved type ``T``.
        """
        if self.type.startswith(SSM_TYPE_PREFIX):
            return replace(self, type=self.type[len(SSM_TYPE_PREFIX):-1], default=None)
        return self

    def as_properties(self) -> dict:
        """Keyword arguments for ``troposphere.Parameter``."""
        props: dict[str, Any] = {"Type": self.type, "Description": self.description}
        if self.default is not None:
            props["Default"] = self.default
        if self.allowed_values:
            props["AllowedValues"] = list(self.allowed_values)
        if self.allowed_pattern:
            props["AllowedPattern"] = self.allowed_pattern
        if self.constraint:
            props["ConstraintDescription"] = self.constraint
        if self.min_value is not None:
            props["MinValue"] = self.min_value
        if self.max_value is not None:
            props["MaxValue"] = self.max_value
        if self.max_length is not None:
            props["MaxLength"] = self.max_length
        return props


def _choice(label, group, description, values, default):
    return ParamSpec(
        type="String", description=description, label=label, group=group,
        default=default, allowed_values=tuple(values),
        constraint="must be one of the listed values")


def _number(label, group, description, default, low, high):
    return ParamSpec(
        type="Number", description=description, label=label, group=group,
        default=default, min_value=low, max_value=high,
        constraint=f"must be a number from {low} to {high}")


def _cidr(label, group, description, default=None, pattern=CIDR_VPC_PATTERN):
    return ParamSpec(
        type="String", description=description, label=label, group=group, default=default,
        allowed_pattern=pattern,
        constraint="must be an IPv4 CIDR block such as 10.0.0.0/24"
        + (" (/16 to /28)" if pattern == CIDR_VPC_PATTERN else ""))


def instance_types(cfg: BuildConfig) -> tuple[str, ...]:
    """The GitLab server types a launcher may pick: the POC's list, unless the build is
    another size or asks for a type outside it (then the reference sizes' types too)."""
    chosen = {cfg.app.instance_type, cfg.gitaly.instance_type}
    if cfg.size == "poc" and chosen <= set(GITLAB_INSTANCE_TYPES) and not cfg.sidekiq_group \
            and not cfg.cluster:
        return GITLAB_INSTANCE_TYPES
    return ALL_INSTANCE_TYPES


# An e-mail address, as SNS takes it for an email subscription: local part, @, domain.
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]+@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"


# An SES sender: an address, or a domain (GitLab then sends from gitlab@<domain>).
# Bounded for the servers' user data (userdata.MAX_LENGTHS).
EMAIL_SENDER_MAX_LENGTH = 80
SENDER_PATTERN = (r"^$|^([A-Za-z0-9._%+-]+@)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# A secret's full ARN (with the six characters Secrets Manager appends), bounded for the
# servers' user data (userdata.MAX_LENGTHS, "_ARN").
SMTP_SECRET_ARN_PATTERN = (r"^$|^arn:aws(-cn|-us-gov)?:secretsmanager:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:"
                           r"secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$")
SMTP_SECRET_ARN_MAX_LENGTH = 112
BACKUP_VAULT_ARN_PATTERN = (r"^$|^arn:aws(-cn|-us-gov)?:backup:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:"
                            r"backup-vault:[A-Za-z0-9_.-]{2,50}$")


def operations_parameters(group: str) -> dict[str, ParamSpec]:
    """Logs, alarms and backups (tiers ``logs``, ``monitoring``, ``backup``)."""
    from gitlab_cfn.compile.observability import DEFAULT_RETENTION_DAYS, RETENTION_DAYS

    return {
        "LogRetentionDays": ParamSpec(
            type="Number", label="Log retention (days)", group=group,
            description="Days CloudWatch Logs keeps GitLab's logs (one of CloudWatch's retention values).",
            default=DEFAULT_RETENTION_DAYS, allowed_values=RETENTION_DAYS,
            constraint="must be one of CloudWatch Logs' retention values: " + ", ".join(map(str, RETENTION_DAYS))),
        "AlarmEmail": ParamSpec(
            type="String", label="Alarm e-mail (optional)", group=group, default="",
            description="Address the alarms are sent to (SNS asks it to confirm). Empty: subscribe to the topic yourself.",
            allowed_pattern=f"^$|{EMAIL_PATTERN}", max_length=254,
            constraint="must be empty or an e-mail address such as ops@example.com"),
        "EmailSender": ParamSpec(
            type="String", label="Outbound e-mail sender (optional)", group=group, default="",
            description=("Address or domain GitLab sends e-mail from through Amazon SES (an SES identity you "
                         "verified in this region); the stack makes SMTP credentials allowed to send from it "
                         "only. Empty: GitLab sends no e-mail."),
            allowed_pattern=SENDER_PATTERN, max_length=EMAIL_SENDER_MAX_LENGTH,
            constraint="must be empty, an e-mail address (gitlab@example.com) or a domain (example.com)"),
        "EmailSmtpSecretArn": ParamSpec(
            type="String", label="SES SMTP credentials secret (optional)", group=group, default="",
            description=("ARN of your own Secrets Manager secret {\"username\", \"password\"} of SES SMTP "
                         "credentials, used instead of the ones the stack makes. Needs EmailSender. "
                         "Empty: the stack makes them."),
            allowed_pattern=SMTP_SECRET_ARN_PATTERN, max_length=SMTP_SECRET_ARN_MAX_LENGTH,
            constraint=("must be empty or a secret's full ARN, at most 112 characters: "
                        "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX")),
        "BackupRetentionDays": ParamSpec(
            type="Number", label="Backup retention (days)", group=group, default=35, min_value=1, max_value=36500,
            description="Days AWS Backup keeps each daily recovery point of the database, Gitaly volume and buckets.",
            constraint="must be a number of days from 1 to 36500"),
        "BackupCopyVaultArn": ParamSpec(
            type="String", label="Copy backups to vault (optional)", group=group, default="",
            description="ARN of an AWS Backup vault in another region (create it first) to copy each recovery point to. Empty: no copy.",
            allowed_pattern=BACKUP_VAULT_ARN_PATTERN,
            constraint="must be empty or a backup vault ARN: arn:aws:backup:REGION:ACCOUNT:backup-vault:NAME"),
    }


# What `gitlab-cfn restore` passes (docs/operations.md, "Restoring"); all empty by default,
# so that a normal deploy is unchanged. An RDS snapshot identifier: a letter, then letters,
# digits and single hyphens (RDS API reference, CreateDBSnapshot: DBSnapshotIdentifier),
# or the ARN of one (a shared or copied snapshot).
_DB_SNAPSHOT_ID = r"[A-Za-z](-?[A-Za-z0-9])*"
DB_SNAPSHOT_PATTERN = (rf"^$|^{_DB_SNAPSHOT_ID}$|^arn:aws(-cn|-us-gov)?:rds:[a-z]{{2}}(-gov)?-[a-z]+-[0-9]:"
                       rf"[0-9]{{12}}:snapshot:{_DB_SNAPSHOT_ID}$")
SECRET_ARN_PATTERN = (r"^$|^arn:aws(-cn|-us-gov)?:secretsmanager:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:"
                      r"secret:[A-Za-z0-9/_+=.@-]+$")
EBS_SNAPSHOT_PATTERN = r"^$|^snap-([0-9a-f]{8}|[0-9a-f]{17})$"
# The old storage stack's suffix in its bucket names (storage.bucket_name): the first
# group of its stack id's UUID.
BUCKET_SUFFIX_PATTERN = r"^$|^[0-9a-f]{8}$"
KMS_KEY_ARN_PATTERN = (r"^$|^arn:aws(-cn|-us-gov)?:kms:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:key/"
                       r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def gitaly_restore_parameter(prefix: str) -> str:
    """The parameter naming the snapshot a Gitaly data volume starts from: ``RestoreGitalySnapshot``
    for the single server's ``GitalyDataVolume``, ``RestoreGitaly<n>Snapshot`` for a cluster
    node's ``Gitaly<n>DataVolume`` (one per volume, as the images: a shared list would replace
    them all when one entry changes)."""
    return f"Restore{prefix}Snapshot"


def restore_parameters(cfg: BuildConfig, group: str) -> dict[str, ParamSpec]:
    """Where a restored stack's data comes from (``gitlab-cfn restore`` fills them in)."""
    def optional(label, description, pattern, constraint, max_length=2048):
        return ParamSpec(type="String", label=label, group=group, default="", description=description,
                         allowed_pattern=pattern, constraint=constraint, max_length=max_length)

    specs = {
        "RestoreDBSnapshot": optional(
            "Database snapshot (restore)",
            "RDS snapshot (identifier or ARN) the database starts from. Empty: a new, empty database. "
            "Set once at creation (a new value replaces the database).",
            DB_SNAPSHOT_PATTERN, "must be empty, an RDS snapshot identifier or an RDS snapshot ARN"),
        "RestoreDBSecretArn": optional(
            "Database secret of the old stack (restore)",
            "ARN of the old stack's database secret: the restored database keeps its password, so the "
            "new secret is seeded from this one by CloudFormation. Empty with an empty snapshot.",
            SECRET_ARN_PATTERN, "must be empty or a Secrets Manager secret ARN"),
        "RestoreRailsSecretArn": optional(
            "gitlab-secrets.json of the old stack (restore)",
            "ARN of the old stack's gitlab-secrets.json secret (the keys of the restored database's "
            "encrypted columns). Empty: the first server generates new ones.",
            SECRET_ARN_PATTERN, "must be empty or a Secrets Manager secret ARN"),
        "RestoreSshHostKeysArn": optional(
            "SSH host keys of the old stack (restore)",
            "ARN of the old stack's SSH host keys secret (Git clients see the same host). Empty: new keys.",
            SECRET_ARN_PATTERN, "must be empty or a Secrets Manager secret ARN"),
        "RestoreBucketsFrom": optional(
            "Object storage buckets of the old stack (restore)",
            "Suffix of the old stack's retained buckets (gl-<kind>-<account>-<region>-<suffix>): GitLab "
            "uses them and no new object buckets are made. Empty: new buckets.",
            BUCKET_SUFFIX_PATTERN, "must be empty or the 8 hexadecimal digits ending the old bucket names",
            max_length=8),
        "RestoreBucketsRegion": optional(
            "Region of the old stack's buckets (restore)",
            "Region of the old stack's retained buckets when it is not this stack's (a restore into "
            "another region): GitLab's object-storage connection names it, and the buckets stay there. "
            "Empty: this stack's region.",
            r"^$|" + REGION_PATTERN, "must be empty or an AWS region such as us-east-1", max_length=16),
        "RestoreKmsKeyArn": optional(
            "KMS key of the old stack (restore)",
            "ARN of the old stack's retained data key, which encrypts its buckets, snapshot and secrets: "
            "the GitLab servers may use it through S3. Empty with new buckets.",
            KMS_KEY_ARN_PATTERN, "must be empty or a KMS key ARN: arn:aws:kms:REGION:ACCOUNT:key/KEY-ID"),
    }
    single = not cfg.cluster or cfg.gitaly.keep_single_server
    prefixes = (["Gitaly"] if single else []) + (
        [f"Gitaly{n}" for n in range(1, cfg.gitaly.nodes + 1)] if cfg.cluster else [])
    for prefix in prefixes:
        specs[gitaly_restore_parameter(prefix)] = optional(
            f"{prefix} data volume snapshot (restore)",
            f"EBS snapshot the {prefix}DataVolume starts from. Empty: a new, empty volume. "
            "Set once at creation (a new value replaces the volume).",
            EBS_SNAPSHOT_PATTERN, "must be empty or an EBS snapshot id such as snap-0123456789abcdef0",
            max_length=22)
    return specs


def restore_rules(declared: set[str]) -> dict:
    """A restore is whole: a restored database is useless without its password and the keys of
    its encrypted columns, and old buckets cannot be read without their key."""
    from troposphere import Equals, Not, Ref

    if "RestoreDBSnapshot" not in declared:
        return {}
    def given(name):
        return Not(Equals(Ref(name), ""))
    return {
        "RestoredDatabaseHasItsSecrets": {
            "RuleCondition": given("RestoreDBSnapshot"),
            "Assertions": [{"Assert": given(name), "AssertDescription": f"{name} must be given with RestoreDBSnapshot."}
                           for name in ("RestoreDBSecretArn", "RestoreRailsSecretArn")],
        },
        "RestoredBucketsHaveTheirKey": {
            "RuleCondition": given("RestoreBucketsFrom"),
            "Assertions": [{"Assert": given("RestoreKmsKeyArn"),
                            "AssertDescription": "RestoreKmsKeyArn must be given with RestoreBucketsFrom."}],
        },
        "RestoredBucketsRegionNamesThem": {
            "RuleCondition": given("RestoreBucketsRegion"),
            "Assertions": [{"Assert": given("RestoreBucketsFrom"),
                            "AssertDescription": "RestoreBucketsFrom must be given with RestoreBucketsRegion."}],
        },
    }


def parameters(cfg: BuildConfig) -> dict[str, ParamSpec]:
    """Every user-facing parameter for this build, keyed by parameter name."""
    net, acc, app, db, cache, gitaly, ops, restore, loc = GROUPS
    specs: dict[str, ParamSpec] = {}
    types = instance_types(cfg)

    specs["AvailabilityZones"] = ParamSpec(
        type="List<AWS::EC2::AvailabilityZone::Name>",
        description=f"Exactly {cfg.az_count} Availability Zones of this region, one subnet pair each.",
        label="Availability Zones", group=net)
    specs["VpcCidr"] = _cidr("VPC CIDR", net, "IPv4 range of the VPC.", "10.0.0.0/16")
    for i in range(1, cfg.az_count + 1):
        # The guide's layout: public 10.0.0.0/24, private 10.0.1.0/24, then the next AZ.
        specs[f"PublicSubnet{i}Cidr"] = _cidr(
            f"Public subnet {i} CIDR", net, f"Public subnet in Availability Zone {i}.",
            f"10.0.{2 * (i - 1)}.0/24")
        specs[f"PrivateSubnet{i}Cidr"] = _cidr(
            f"Private subnet {i} CIDR", net, f"Private subnet in Availability Zone {i}.",
            f"10.0.{2 * (i - 1) + 1}.0/24")

    specs["GitSshCIDR"] = _cidr(
        "Git over SSH: allowed CIDR", acc,
        "Addresses allowed to reach Git over SSH (port 22) through the load balancer. "
        "No default: choose your office or VPN range.", pattern=CIDR_ANY_PATTERN)
    if cfg.bastions:
        specs["RemoteAccessCIDR"] = _cidr(
            "Bastion SSH: allowed CIDR", acc,
            "Addresses allowed to SSH into the bastion hosts. 0.0.0.0/0 is refused.",
            pattern=CIDR_ANY_PATTERN)
        specs["BastionInstanceType"] = _choice(
            "Bastion instance type", acc, "EC2 instance type of the bastion hosts.",
            BASTION_INSTANCE_TYPES, "t3.micro")
        specs["BastionAmiId"] = ParamSpec(
            type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            description="SSM parameter holding the bastion image (current Ubuntu LTS by default).",
            label="Bastion AMI (SSM parameter)", group=acc, default=UBUNTU_LTS_AMI_PARAMETER)
    if cfg.ssh_key_pair:
        specs["KeyPairName"] = ParamSpec(
            type="AWS::EC2::KeyPair::KeyName",
            description="Existing EC2 key pair for SSH to the instances.",
            label="EC2 key pair", group=acc)

    specs["DomainName"] = ParamSpec(
        type="String", description="Fully qualified domain name GitLab is served on, e.g. gitlab.example.com.",
        label="GitLab domain name", group=app, allowed_pattern=DOMAIN_PATTERN,
        constraint="must be a lower-case fully qualified domain name such as gitlab.example.com")
    specs["CertificateArn"] = ParamSpec(
        type="String", description="ARN of an issued ACM certificate for the domain, in this region.",
        label="ACM certificate ARN", group=app, allowed_pattern=ACM_ARN_PATTERN,
        constraint="must be an ACM certificate ARN: arn:aws:acm:REGION:ACCOUNT:certificate/UUID")
    specs["HostedZoneId"] = ParamSpec(
        type="String",
        description="Route 53 hosted zone for the domain. Leave empty to manage DNS yourself.",
        label="Route 53 hosted zone id (optional)", group=app, default="",
        allowed_pattern=HOSTED_ZONE_PATTERN,
        constraint="must be empty or a hosted zone id such as Z0123456789ABCDEFGHIJ")
    if cfg.app.gitlab_ami == "ssm-parameter":
        specs["GitLabAmiId"] = ParamSpec(
            type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            description="SSM parameter holding the GitLab AMI id (written by gitlab-cfn bake-ami).",
            label="GitLab AMI (SSM parameter)", group=app, default=GITLAB_AMI_PARAMETER)
    else:
        specs["GitLabAmiId"] = ParamSpec(
            type="AWS::EC2::Image::Id", description="GitLab AMI id in this region.",
            label="GitLab AMI id", group=app)
    specs["AppInstanceType"] = _choice(
        "GitLab instance type", app, "EC2 instance type of the GitLab application servers.",
        types, cfg.app.instance_type)
    if cfg.sidekiq_group:
        specs["SidekiqInstanceType"] = _choice(
            "Sidekiq instance type", app, "EC2 instance type of the Sidekiq servers.",
            types, cfg.sidekiq.instance_type)
    specs["AppRootVolumeSize"] = _number(
        "GitLab root volume (GiB)", app,
        f"Encrypted gp3 root volume of each GitLab server; at least the image's {IMAGE_ROOT_GIB} GiB.",
        IMAGE_ROOT_GIB, IMAGE_ROOT_GIB, 1024)

    specs["DBInstanceClass"] = _choice(
        "Instance class", db, "RDS instance class; burstable db.t* classes are not offered.",
        DB_INSTANCE_CLASSES, cfg.database.instance_class)
    specs["DBEngineVersion"] = _choice(
        "PostgreSQL major version", db, "PostgreSQL major version supported by GitLab.",
        DB_ENGINE_VERSIONS, DB_ENGINE_VERSIONS[-1])
    if cfg.database.storage_type == "io1":
        specs["DBAllocatedStorage"] = _number(
            "Storage (GiB)", db, "Provisioned IOPS (io1) storage.", 100, 100, 65536)
        specs["DBIops"] = _number(
            "Provisioned IOPS", db, "io1 IOPS: between 1 and 50 times the storage size.",
            1000, 1000, 256000)
    else:
        specs["DBAllocatedStorage"] = _number(
            "Storage (GiB)", db, "General Purpose (gp3) storage.", 100, 20, 65536)
    specs["DBBackupRetentionPeriod"] = _number(
        "Backup retention (days)", db, "Days of automated backups kept.", 7, 7, 35)

    specs["CacheNodeType"] = _choice(
        "Node type", cache, "ElastiCache node type of the primary and replicas.",
        CACHE_NODE_TYPES, cfg.cache.node_type)
    specs["CacheEngineVersion"] = _choice(
        "Redis version", cache, "Redis engine version (cluster mode stays disabled).",
        CACHE_ENGINE_VERSIONS, CACHE_ENGINE_VERSIONS[-1])
    specs["CacheSnapshotRetentionLimit"] = _number(
        "Snapshot retention (days)", cache, "Days of daily Redis snapshots kept.", 7, 1, 35)

    specs["GitalyAmiId"] = ParamSpec(
        type="AWS::EC2::Image::Id",
        description=("Image of the Gitaly server, pinned: set once when the stack is created (gitlab-cfn "
                     "deploy takes the GitLab image then) and kept on every update. GitLab on Gitaly is "
                     "upgraded in place; a new value here replaces the repository server."),
        label="Gitaly AMI id (pinned; upgraded in place)", group=gitaly)
    if cfg.cluster and not cfg.gitaly.keep_single_server:
        del specs["GitalyAmiId"]
    for n in range(1, cfg.gitaly.nodes + 1 if cfg.cluster else 1):
        # One parameter per server: a value shared by them would replace them all at once.
        specs[f"Gitaly{n}AmiId"] = ParamSpec(
            type="AWS::EC2::Image::Id",
            description=(f"Image of Gitaly server gitaly-{n}, pinned: set once when the server is created "
                         "(gitlab-cfn deploy takes the GitLab image then) and kept on every update. GitLab "
                         "on Gitaly is upgraded in place; a new value here replaces this repository server."),
            label=f"Gitaly gitaly-{n} AMI id (pinned)", group=gitaly)
    specs["GitalyInstanceType"] = _choice(
        "Gitaly instance type", gitaly,
        "EC2 instance type of the Gitaly servers." if cfg.cluster else "EC2 instance type of the Gitaly server.",
        types, cfg.gitaly.instance_type)
    # The single server's volume (the POC's; kept as it was by every size) and a cluster's
    # servers' gp3 volumes (sizes.GITALY_CLUSTER_IOPS).
    iops = cfg.gitaly.volume_iops
    if cfg.cluster:
        specs["GitalyNodeVolumeSize"] = _number(
            "Cluster data volumes (GiB)", gitaly, "gp3 volume of each Gitaly Cluster server.", 100, 20, 16384)
        specs["GitalyNodeVolumeIops"] = _number(
            "Cluster data volume IOPS", gitaly,
            "gp3 IOPS of each Gitaly Cluster server's volume (GitLab recommends 8,000 read / 2,000 write).",
            GITALY_CLUSTER_IOPS, 3000, 16000)
    single = not cfg.cluster or cfg.gitaly.keep_single_server
    if single and cfg.gitaly.volume_type == "io1":
        specs["GitalyVolumeSize"] = _number(
            "Data volume (GiB)", gitaly, "io1 volume holding the Git repositories.", 20, 20, 16384)
        specs["GitalyVolumeIops"] = _number(
            "Data volume IOPS", gitaly, "io1 IOPS: at most 50 per GiB of the volume.",
            iops or 1000, 100, 64000)
    elif single:
        specs["GitalyVolumeSize"] = _number(
            "Data volume (GiB)", gitaly, "gp3 volume holding the Git repositories.", 100, 20, 16384)
        specs["GitalyVolumeIops"] = _number(
            "Data volume IOPS", gitaly, "gp3 IOPS (GitLab recommends 8,000 read / 2,000 write).",
            iops or 3000, 3000, 16000)
    if cfg.cluster:
        specs["PraefectInstanceType"] = _choice(
            "Praefect instance type", gitaly, "EC2 instance type of the Praefect servers (Gitaly Cluster).",
            types, cfg.praefect.instance_type)
        if cfg.praefect.database == "own":
            specs["PraefectDBInstanceClass"] = _choice(
                "Praefect database instance class", db,
                "RDS instance class of Praefect's own database; burstable db.t* classes are not offered.",
                DB_INSTANCE_CLASSES, cfg.praefect.db_instance_class)

    if cfg.monitoring.node:
        specs["MonitoringInstanceType"] = _choice(
            "Monitoring server instance type", ops,
            "EC2 instance type of the monitoring server (GitLab's Prometheus).", ALL_INSTANCE_TYPES,
            cfg.monitoring.instance_type)
    specs.update(operations_parameters(ops))
    specs.update(restore_parameters(cfg, restore))

    specs["TemplateBucketName"] = ParamSpec(
        type="String", description="S3 bucket holding the published templates.",
        label="Template bucket name", group=loc, allowed_pattern=BUCKET_NAME_PATTERN,
        constraint="must be an S3 bucket name: lower-case letters, digits, dots and hyphens")
    specs["TemplateKeyPrefix"] = ParamSpec(
        type="String", description="Key prefix of the templates in the bucket, ending in '/' (may be empty).",
        label="Template key prefix", group=loc, default="", allowed_pattern=KEY_PREFIX_PATTERN,
        max_length=KEY_PREFIX_MAX_LENGTH,
        constraint=f"must be empty or end with '/', e.g. gitlab-cfn/0.1.0/ (at most {KEY_PREFIX_MAX_LENGTH} characters)")
    specs["TemplateBucketRegion"] = ParamSpec(
        type="String", description="Region of the template bucket.",
        label="Template bucket region", group=loc, allowed_pattern=REGION_PATTERN,
        constraint="must be a region name such as us-east-1")
    return specs

