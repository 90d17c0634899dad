"""Application tier: load balancer, launch template and Auto Scaling group.

Builds the guide's Classic Load Balancer in the public subnets (HTTP 80 to 80,
HTTPS 443 with the ACM certificate to HTTP 80, TCP 22 to 22, cross-zone, TLS
1.2 negotiation policy, health check ``HTTP:80/-/readiness``); a launch
template for the GitLab servers (launch configurations can no longer be
created in new accounts) with the instance profile, the application group,
IMDSv2 required and an encrypted root volume, from the GitLab AMI parameter;
and an Auto Scaling group over the private subnets (guide: min 2, desired 2,
max 4, ELB health checks, 300 s grace) with a rolling update policy, scaling
out by one instance above ``scale_out_cpu`` % average CPU and in by one below
``scale_in_cpu`` % (guide: 60 and 45) through two alarms and two policies.

Departures from the guide: the health-check grace period is the boot budget
(``BOOT_BUDGET_MINUTES``), not 300 s, so that no server is killed while it
boots; the group sets no ``DesiredCapacity``, so that a stack update never
resets the capacity scaling gave it (it starts at ``MinSize``).

Exposes: ``GitLabUrl``, ``LoadBalancerDNSName``, ``LoadBalancerHostedZoneId``,
``AutoScalingGroupName``.
"""

from __future__ import annotations

from troposphere import Equals, GetAtt, If, Join, Not, Ref, Sub, autoscaling, cloudwatch, secretsmanager
from troposphere import elasticloadbalancing as elb

from gitlab_cfn.compile import scrape
from gitlab_cfn.compile.instances import (
    bundle_parameter,
    bundle_user_data,
    from_template,
    launch_template,
    signalled_group_policies,
)
from gitlab_cfn.compile.naming import tags
from gitlab_cfn.compile.policies import grant, secret_read, secret_write
from gitlab_cfn.compile.tier import Tier, generated_secret
from gitlab_cfn.compile.tiers.database import DB_NAME
from gitlab_cfn.compile.tiers.storage import BUCKETS
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn app: Classic Load Balancer, GitLab launch template, Auto Scaling group."

# The boot budget: how long one GitLab server may take from launch to its signal.
# The first servers of a new stack boot one after the other under the bootstrap
# lock (a PostgreSQL advisory lock), so the last of them waits for the others:
#   bootstrap (download, check, unpack)                   ~1 min
#   gitlab.rb, sshd, database reachable (RDS may still     ~5 min
#     be finishing its first backup)
#   waiting for the lock: the locked phase of each server  ~15 min each
#     before it (reconfigure ~5-8 min, gitlab:db:configure:
#     the schema load and seed on the first server ~8-10 min,
#     migrations on later ones, restart ~1 min)
#   its own locked phase                                   ~15 min
#   GitLab answering /-/readiness                          ~2 min
# For the guide's two servers that is about 40 minutes at worst; 60 leaves room
# for a slower region or a third server. A rolling update starts one server at a
# time, so it waits for no lock holder but one at most: 45 minutes.
BOOT_BUDGET_MINUTES = 60
UPDATE_BUDGET_MINUTES = 45
CREATE_TIMEOUT = f"PT{BOOT_BUDGET_MINUTES}M"
UPDATE_TIMEOUT = f"PT{UPDATE_BUDGET_MINUTES}M"
# ELB health checks start counting only after the grace period: it covers the whole
# boot budget, so that a server still within its signal timeout is never replaced
# as unhealthy (lint rule E9009), during creation as during a scale-out. A launch
# lifecycle hook would end the wait at the signal instead, but needs the boot script
# to complete the hook and one more permission; the grace period needs neither.
# https://docs.aws.amazon.com/autoscaling/ec2/userguide/health-check-grace-period.html
HEALTH_CHECK_GRACE_SECONDS = max(BOOT_BUDGET_MINUTES, UPDATE_BUDGET_MINUTES) * 60
HEALTH_CHECK = "HTTP:80/-/readiness"
TLS_POLICY = "ELBSecurityPolicy-TLS-1-2-2017-01"
COOLDOWN = 300


def load_balancer(tier: Tier) -> elb.LoadBalancer:
    return tier.add(elb.LoadBalancer(
        "LoadBalancer",
        Scheme="internet-facing",
        Subnets=tier.input("PublicSubnetIds"),
        SecurityGroups=[tier.input("LoadBalancerSecurityGroupId")],
        CrossZone=True,
        Listeners=[
            elb.Listener(LoadBalancerPort="80", InstancePort="80", Protocol="HTTP",
                         InstanceProtocol="HTTP"),
            elb.Listener(LoadBalancerPort="443", InstancePort="80", Protocol="HTTPS",
                         InstanceProtocol="HTTP", SSLCertificateId=tier.param("CertificateArn"),
                         PolicyNames=["TlsNegotiation"]),
            elb.Listener(LoadBalancerPort="22", InstancePort="22", Protocol="TCP",
                         InstanceProtocol="TCP"),
        ],
        Policies=[elb.Policy(
            PolicyName="TlsNegotiation",
            PolicyType="SSLNegotiationPolicyType",
            Attributes=[elb.PolicyItem(Name="Reference-Security-Policy", Value=TLS_POLICY)],
        )],
        HealthCheck=elb.HealthCheck(
            Target=HEALTH_CHECK, HealthyThreshold="2", UnhealthyThreshold="3",
            Interval="30", Timeout="5"),
        ConnectionDrainingPolicy=elb.ConnectionDrainingPolicy(Enabled=True, Timeout=300),
        AccessLoggingPolicy=elb.AccessLoggingPolicy(
            Enabled=True, EmitInterval=60,
            S3BucketName=tier.input("LogsBucketName"), S3BucketPrefix="elb"),
    ))


def scaling(tier: Tier, group: autoscaling.AutoScalingGroup, app=None, prefix: str = "",
            what: str = "GitLab server") -> None:
    app = app or tier.cfg.app
    for direction, change, comparison, threshold in (
        ("Out", 1, "GreaterThanThreshold", app.scale_out_cpu),
        ("In", -1, "LessThanThreshold", app.scale_in_cpu),
    ):
        policy = tier.add(autoscaling.ScalingPolicy(
            f"{prefix}Scale{direction}Policy",
            AutoScalingGroupName=Ref(group),
            PolicyType="SimpleScaling",
            AdjustmentType="ChangeInCapacity",
            ScalingAdjustment=change,
            Cooldown=str(COOLDOWN),
        ))
        tier.add(cloudwatch.Alarm(
            f"{prefix}Cpu{'High' if change > 0 else 'Low'}Alarm",
            AlarmDescription=(
                f"Scale {direction.lower()} by one {what}: average CPU "
                f"{'above' if change > 0 else 'below'} {threshold}% for 5 minutes"),
            Namespace="AWS/EC2",
            MetricName="CPUUtilization",
            Dimensions=[cloudwatch.MetricDimension(Name="AutoScalingGroupName", Value=Ref(group))],
            Statistic="Average",
            Period=60,
            EvaluationPeriods=5,
            Threshold=threshold,
            ComparisonOperator=comparison,
            AlarmActions=[Ref(policy)],
        ))


def app_secrets(tier: Tier) -> dict[str, secretsmanager.Secret]:
    """Secrets the GitLab servers share, all kept on delete: the initial root
    password (generated), and gitlab-secrets.json and the SSH host keys, which
    the first server writes and every later one reads."""
    key_arn = tier.input("KmsKeyArn")
    root = generated_secret(tier, "RootPasswordSecret", "initial root password", "gitlab",
                            key="password", length=32, username="root")
    shared = {}
    for logical, what in (("RailsSecretsSecret", "gitlab-secrets.json"),
                          ("SshHostKeysSecret", "SSH host keys")):
        shared[logical] = tier.keep(secretsmanager.Secret(
            logical,
            Description=Sub(f"GitLab {what} shared by the servers of stack ${{ParentStackName}}"),
            KmsKeyId=key_arn,
            # Filled in by the first server to boot; "{}" means not yet. On a restore, the old
            # stack's value (restore_secret_string).
            SecretString=restore_secret_string(tier, logical),
            Tags=tags("gitlab"),
        ))
    role = tier.input("InstanceRoleName")
    tier.add(grant("AppSecretsRead", secret_read([Ref(root)] + [Ref(s) for s in shared.values()]), [role]))
    tier.add(grant("AppSecretsWrite", secret_write([Ref(s) for s in shared.values()]), [role]))
    return {"RootPasswordSecret": root, **shared}


# The old stack's secrets a restored stack starts from (gitlab-cfn restore), by the parameter naming it.
RESTORED_SECRETS = {"RailsSecretsSecret": "RestoreRailsSecretArn", "SshHostKeysSecret": "RestoreSshHostKeysArn"}


def restore_secret_string(tier: Tier, logical: str):
    """``{}`` (the first server fills it in), or, given the old stack's secret, its value: a
    dynamic reference CloudFormation resolves at create
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references-secretsmanager.html),
    so that the keys are never a parameter nor in the template, and the servers are never
    granted the old stack's secrets. The first server then finds gitlab-secrets.json published
    and uses it (scripts/gitlab-app.sh, restore_rails_secrets)."""
    param = RESTORED_SECRETS[logical]
    condition = f"{param}Given"
    tier.template.add_condition(condition, Not(Equals(tier.param(param), "")))
    return If(condition, Sub(f"{{{{resolve:secretsmanager:${{{param}}}}}}}"), "{}")


# The grants of this tier a server uses while it boots: the group depends on them, so
# that they exist before the first server asks (IAM is still eventually consistent:
# the boot scripts retry AccessDenied).
BOOT_GRANTS = ("AppSecretsRead", "AppSecretsWrite", "AppBootRead")


def smtp_extra(tier: Tier) -> dict:
    """The secret of the SES SMTP credentials (storage tier, compile/email.py), in the boot
    bundle parameter: the user data has no room left for an ARN (userdata.MAX_BYTES)."""
    tier.input("SmtpSecretArn")
    return {"smtp_secret_arn": "${SmtpSecretArn}"}


def boot_values(tier: Tier, secrets: dict, parameter) -> dict:
    """What the boot script (scripts/gitlab-app.sh) is told through its preamble."""
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": "AppAutoScalingGroup",
        "GITLAB_DOMAIN": tier.param("DomainName"),
        "VPC_CIDR": tier.param("VpcCidr"),
        "DB_HOST": tier.input("DatabaseEndpoint"),
        "DB_PORT": tier.input("DatabasePort"),
        # A constant (the database tier's DatabaseName output): as a literal it counts at its
        # own length in the user data budget (userdata.MAX_LENGTHS), not at any name's.
        "DB_NAME": DB_NAME,
        "DB_SECRET_ARN": tier.input("DatabaseSecretArn"),
        "REDIS_HOST": tier.input("RedisEndpoint"),
        "REDIS_PORT": tier.input("RedisPort"),
        "REDIS_SECRET_ARN": tier.input("RedisAuthSecretArn"),
        "GITALY_ADDRESS": tier.input("GitalyAddress"),
        "GITALY_SECRET_ARN": tier.input("GitalyTokenSecretArn"),
        **shape_values(tier.cfg, tier),
        "SHELL_SECRET_ARN": tier.input("GitLabShellSecretArn"),
        "RAILS_SECRETS_ARN": Ref(secrets["RailsSecretsSecret"]),
        "HOST_KEYS_SECRET_ARN": Ref(secrets["SshHostKeysSecret"]),
        "ROOT_PASSWORD_SECRET_ARN": Ref(secrets["RootPasswordSecret"]),
        # The stack's log groups (tier logs): the servers boot once they exist. Their prefix
        # is /gitlab-cfn/<parent stack>/<LOG_GROUP_ID>, put together by lib/cloudwatch.sh.
        "LOG_GROUP_ID": tier.input("LogGroupId"),
        # Outbound e-mail through SES (scripts/lib/email.sh); empty: off. The secret of its
        # SMTP credentials is in the boot bundle parameter (SMTP_EXTRA).
        "EMAIL_SENDER": tier.param("EmailSender"),
    }
    for logical, kind in BUCKETS.items():
        # The container registry is not turned on by the boot script (it needs its own
        # domain and certificate); its bucket waits for it, and the servers are not told of it.
        if kind != "registry":
            values[bucket_variable(kind)] = tier.input(f"{logical}BucketName")
    # The parameter and the sha256 of this build's bundle, never its key: the key changes
    # with every build (its prefix), the sha256 only with a boot script, and so does
    # this launch template, whose new version rolls the servers.
    return {**values, **bundle_user_data(parameter, pin=True)}


def shape_values(cfg, tier: Tier) -> dict:
    """What the sizes beyond the POC add to the servers' preamble (nothing for the POC, whose
    user data stays as it was: an absent RUN_SIDEKIQ means 'true', an absent GITALY_STORAGE
    'default')."""
    values = {}
    if cfg.sidekiq_group:
        values["RUN_SIDEKIQ"] = "false"
    if cfg.cluster:
        values["GITALY_STORAGE"] = "default"
        if not cfg.gitaly.keep_single_server:
            # Every storage is a Gitaly Cluster node with a backup destination (tier gitaly):
            # the nightly backup asks Gitaly for server-side repository backups (lib/backup.sh).
            # Not while the POC's server is kept: it booted without one.
            values["BACKUP_SERVER_SIDE"] = "true"
    if cfg.gitaly.keep_single_server:
        # The kept single server is storage 'default' (GitalyAddress); the cluster is 'cluster'.
        values["GITALY2_ADDRESS"] = tier.input("Gitaly2Address")
        values["GITALY2_SECRET_ARN"] = tier.input("Gitaly2TokenSecretArn")
        values["GITALY2_STORAGE"] = "cluster"
    if cfg.cache.separate_cache:
        values["REDIS_CACHE_HOST"] = tier.input("RedisCacheEndpoint")
        values["REDIS_CACHE_PORT"] = tier.input("RedisCachePort")
        values["REDIS_CACHE_SECRET_ARN"] = tier.input("RedisCacheAuthSecretArn")
    values.update(scrape.user_data_values(cfg))
    return values


def bucket_variable(kind: str) -> str:
    """``external-diffs`` -> ``BUCKET_EXTERNAL_DIFFS``, as the boot script reads it."""
    return "BUCKET_" + kind.replace("-", "_").upper()


SIDEKIQ_BOOT_GRANTS = ("SidekiqSecretsRead", "SidekiqBootRead")


def sidekiq_group(tier: Tier, secrets: dict, app_group) -> autoscaling.AutoScalingGroup:
    """Sidekiq on its own servers (sizes from 2k): the GitLab image with the Sidekiq role of
    the boot script (``gitlab-sidekiq``: no Puma, Workhorse, nginx or sshd, no migrations),
    no load balancer, scaled on its own CPU. It starts after the application servers have
    signalled: by then the database is migrated and gitlab-secrets.json is shared."""
    cfg = tier.cfg.sidekiq
    role = tier.input("SidekiqRoleName")
    # gitlab-secrets.json, which the first application server wrote: read, never written.
    tier.add(grant("SidekiqSecretsRead", secret_read([Ref(secrets["RailsSecretsSecret"])]), [role]))
    parameter = bundle_parameter(tier, "gitlab-sidekiq", logical_id="SidekiqBootBundleParameter",
                                 grant_id="SidekiqBootRead", role_names=[role],
                                 what="the GitLab Sidekiq servers", extra=smtp_extra(tier))
    values = boot_values(tier, secrets, parameter)
    # Sidekiq neither serves SSH nor seeds the database, nor runs the nightly backup.
    for name in ("HOST_KEYS_SECRET_ARN", "ROOT_PASSWORD_SECRET_ARN"):
        del values[name]
    values.pop("BACKUP_SERVER_SIDE", None)
    values["RUN_SIDEKIQ"] = "true"
    values["CFN_RESOURCE"] = "SidekiqAutoScalingGroup"
    template = launch_template(
        tier, "SidekiqLaunchTemplate",
        name="sidekiq",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("SidekiqInstanceType"),
        profile_arn=tier.input("SidekiqInstanceProfileArn"),
        security_group_ids=[tier.input("SidekiqSecurityGroupId")],
        root_size=tier.param("AppRootVolumeSize"),
        user_data=user_data("gitlab-sidekiq", values),
        detailed_monitoring=True,
    )
    group = tier.add(autoscaling.AutoScalingGroup(
        "SidekiqAutoScalingGroup",
        VPCZoneIdentifier=tier.input("PrivateSubnetIds"),
        LaunchTemplate=autoscaling.LaunchTemplateSpecification(**from_template(template)),
        # No DesiredCapacity, as for the application group.
        MinSize=str(cfg.min_size),
        MaxSize=str(cfg.max_size),
        HealthCheckType="EC2",
        HealthCheckGracePeriod=HEALTH_CHECK_GRACE_SECONDS,
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        Tags=autoscaling.Tags(Name=(Join("-", [tier.stack_name(), "sidekiq"]), True)),
        **signalled_group_policies(cfg.min_size, max(cfg.min_size - 1, 0), CREATE_TIMEOUT, UPDATE_TIMEOUT),
        DependsOn=[*SIDEKIQ_BOOT_GRANTS, app_group.title],
    ))
    scaling(tier, group, cfg, prefix="Sidekiq", what="Sidekiq server")
    tier.output("SidekiqAutoScalingGroupName", Ref(group), "Auto Scaling group of the Sidekiq servers.",
                public=True)
    return group


def build(tier: Tier) -> None:
    tier.stack_name()
    app = tier.cfg.app
    lb = load_balancer(tier)
    secrets = app_secrets(tier)
    parameter = bundle_parameter(tier, "gitlab-app", logical_id="AppBootBundleParameter", grant_id="AppBootRead",
                                 role_names=[tier.input("InstanceRoleName")],
                                 what="the GitLab application servers", extra=smtp_extra(tier))
    template = launch_template(
        tier, "AppLaunchTemplate",
        name="gitlab",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("AppInstanceType"),
        profile_arn=tier.input("InstanceProfileArn"),
        security_group_ids=[tier.input("AppSecurityGroupId")],
        root_size=tier.param("AppRootVolumeSize"),
        user_data=user_data("gitlab-app", boot_values(tier, secrets, parameter)),
        detailed_monitoring=True,
    )
    group = tier.add(autoscaling.AutoScalingGroup(
        "AppAutoScalingGroup",
        VPCZoneIdentifier=tier.input("PrivateSubnetIds"),
        LaunchTemplate=autoscaling.LaunchTemplateSpecification(**from_template(template)),
        # No DesiredCapacity: with one in the template, every stack update that touches
        # the group sets its capacity back to it, undoing a scale-out; without it the
        # group starts at MinSize (the default of DesiredCapacity, see
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-autoscaling-autoscalinggroup.html)
        # and keeps what scaling gave it (the AWS CDK's fix for the same reset:
        # https://github.com/aws/aws-cdk/pull/5507).
        MinSize=str(app.min_size),
        MaxSize=str(app.max_size),
        LoadBalancerNames=[Ref(lb)],
        HealthCheckType="ELB",
        HealthCheckGracePeriod=HEALTH_CHECK_GRACE_SECONDS,
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        Tags=autoscaling.Tags(Name=(Join("-", [tier.stack_name(), "gitlab"]), True)),
        # Every server's boot script signals its exit status: a configuration
        # that does not come up fails the stack instead of leaving bad servers.
        # Keep serving while one server at a time is replaced.
        **signalled_group_policies(app.min_size, max(app.min_size - 1, 1) if app.min_size > 1 else 0,
                                   CREATE_TIMEOUT, UPDATE_TIMEOUT),
        DependsOn=list(BOOT_GRANTS),
    ))
    scaling(tier, group)
    if tier.cfg.sidekiq_group:
        sidekiq_group(tier, secrets, group)

    tier.param("DomainName")
    tier.output("GitLabUrl", Sub("https://${DomainName}"), "GitLab's URL.",
                public=True)
    tier.output("LoadBalancerDNSName", GetAtt(lb, "DNSName"), "Load balancer DNS name.", public=True)
    tier.output("LoadBalancerHostedZoneId", GetAtt(lb, "CanonicalHostedZoneNameID"),
                "Route 53 zone of the load balancer, for alias records.")
    tier.output("LoadBalancerName", Ref(lb), "Name of the load balancer (its CloudWatch dimension).")
    tier.output("AutoScalingGroupName", Ref(group), "Auto Scaling group of the GitLab servers.",
                public=True)
    tier.output("RootPasswordSecretArn", Ref(secrets["RootPasswordSecret"]),
                "Secret holding GitLab's initial root password.", public=True)
