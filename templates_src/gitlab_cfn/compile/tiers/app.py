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

Exposes: ``GitLabUrl``, ``LoadBalancerDNSName``, ``LoadBalancerHostedZoneId``,
``AutoScalingGroupName``.
"""

from __future__ import annotations

from troposphere import GetAtt, Join, Ref, Sub, autoscaling, cloudwatch, secretsmanager
from troposphere import elasticloadbalancing as elb
from troposphere.policies import (
    AutoScalingCreationPolicy,
    AutoScalingRollingUpdate,
    CreationPolicy,
    ResourceSignal,
    UpdatePolicy,
)

from gitlab_cfn.compile.instances import from_template, launch_template
from gitlab_cfn.compile.naming import tags
from gitlab_cfn.compile.policies import grant, secret_read, secret_write
from gitlab_cfn.compile.tier import Tier, generated_secret
from gitlab_cfn.compile.tiers.storage import BUCKETS
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn app: Classic Load Balancer, GitLab launch template, Auto Scaling group."

# The first servers load the schema one after the other, under a database lock.
CREATE_TIMEOUT = "PT60M"
UPDATE_TIMEOUT = "PT45M"
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


def scaling(tier: Tier, group: autoscaling.AutoScalingGroup) -> None:
    app = tier.cfg.app
    for direction, change, comparison, threshold in (
        ("Out", 1, "GreaterThanThreshold", app.scale_out_cpu),
        ("In", -1, "LessThanThreshold", app.scale_in_cpu),
    ):
        policy = tier.add(autoscaling.ScalingPolicy(
            f"Scale{direction}Policy",
            AutoScalingGroupName=Ref(group),
            PolicyType="SimpleScaling",
            AdjustmentType="ChangeInCapacity",
            ScalingAdjustment=change,
            Cooldown=str(COOLDOWN),
        ))
        tier.add(cloudwatch.Alarm(
            f"Cpu{'High' if change > 0 else 'Low'}Alarm",
            AlarmDescription=(
                f"Scale {direction.lower()} by one GitLab server: average CPU "
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
            # Filled in by the first server to boot; "{}" means not yet.
            SecretString="{}",
            Tags=tags("gitlab"),
        ))
    role = tier.input("InstanceRoleName")
    tier.add(grant("AppSecretsRead", secret_read([Ref(root)] + [Ref(s) for s in shared.values()]), [role]))
    tier.add(grant("AppSecretsWrite", secret_write([Ref(s) for s in shared.values()]), [role]))
    return {"RootPasswordSecret": root, **shared}


def boot_values(tier: Tier, secrets: dict) -> dict:
    """What the boot script (scripts/gitlab-app.sh) is told through its preamble."""
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": "AppAutoScalingGroup",
        "GITLAB_DOMAIN": tier.param("DomainName"),
        "VPC_CIDR": tier.param("VpcCidr"),
        "DB_HOST": tier.input("DatabaseEndpoint"),
        "DB_PORT": tier.input("DatabasePort"),
        "DB_NAME": tier.input("DatabaseName"),
        "DB_SECRET_ARN": tier.input("DatabaseSecretArn"),
        "REDIS_HOST": tier.input("RedisEndpoint"),
        "REDIS_PORT": tier.input("RedisPort"),
        "REDIS_SECRET_ARN": tier.input("RedisAuthSecretArn"),
        "GITALY_ADDRESS": tier.input("GitalyAddress"),
        "GITALY_SECRET_ARN": tier.input("GitalyTokenSecretArn"),
        "SHELL_SECRET_ARN": tier.input("GitLabShellSecretArn"),
        "RAILS_SECRETS_ARN": Ref(secrets["RailsSecretsSecret"]),
        "HOST_KEYS_SECRET_ARN": Ref(secrets["SshHostKeysSecret"]),
        "ROOT_PASSWORD_SECRET_ARN": Ref(secrets["RootPasswordSecret"]),
    }
    for logical, kind in BUCKETS.items():
        values[bucket_variable(kind)] = tier.input(f"{logical}BucketName")
    return values


def bucket_variable(kind: str) -> str:
    """``external-diffs`` -> ``BUCKET_EXTERNAL_DIFFS``, as the boot script reads it."""
    return "BUCKET_" + kind.replace("-", "_").upper()


def build(tier: Tier) -> None:
    tier.stack_name()
    app = tier.cfg.app
    lb = load_balancer(tier)
    secrets = app_secrets(tier)
    template = launch_template(
        tier, "AppLaunchTemplate",
        name="gitlab",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("AppInstanceType"),
        profile_arn=tier.input("InstanceProfileArn"),
        security_group_ids=[tier.input("AppSecurityGroupId")],
        root_size=tier.param("AppRootVolumeSize"),
        user_data=user_data("gitlab-app", boot_values(tier, secrets)),
        detailed_monitoring=True,
    )
    group = tier.add(autoscaling.AutoScalingGroup(
        "AppAutoScalingGroup",
        VPCZoneIdentifier=tier.input("PrivateSubnetIds"),
        LaunchTemplate=autoscaling.LaunchTemplateSpecification(**from_template(template)),
        MinSize=str(app.min_size),
        DesiredCapacity=str(app.desired_capacity),
        MaxSize=str(app.max_size),
        LoadBalancerNames=[Ref(lb)],
        HealthCheckType="ELB",
        HealthCheckGracePeriod=300,
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        Tags=autoscaling.Tags(Name=(Join("-", [tier.stack_name(), "gitlab"]), True)),
        # Every server's boot script signals its exit status: a configuration
        # that does not come up fails the stack instead of leaving bad servers.
        CreationPolicy=CreationPolicy(
            ResourceSignal=ResourceSignal(Count=app.desired_capacity, Timeout=CREATE_TIMEOUT),
            AutoScalingCreationPolicy=AutoScalingCreationPolicy(MinSuccessfulInstancesPercent=100),
        ),
        UpdatePolicy=UpdatePolicy(AutoScalingRollingUpdate=AutoScalingRollingUpdate(
            MaxBatchSize=1,
            # Keep serving while one server at a time is replaced.
            MinInstancesInService=max(app.min_size - 1, 1) if app.desired_capacity > 1 else 0,
            WaitOnResourceSignals=True,
            PauseTime=UPDATE_TIMEOUT,
            SuspendProcesses=["HealthCheck", "ReplaceUnhealthy", "AZRebalance",
                              "AlarmNotification", "ScheduledActions"],
        )),
    ))
    scaling(tier, group)

    tier.param("DomainName")
    tier.output("GitLabUrl", Sub("https://${DomainName}"), "GitLab's URL.",
                public=True)
    tier.output("LoadBalancerDNSName", GetAtt(lb, "DNSName"), "Load balancer DNS name.", public=True)
    tier.output("LoadBalancerHostedZoneId", GetAtt(lb, "CanonicalHostedZoneNameID"),
                "Route 53 zone of the load balancer, for alias records.")
    tier.output("AutoScalingGroupName", Ref(group), "Auto Scaling group of the GitLab servers.",
                public=True)
    tier.output("RootPasswordSecretArn", Ref(secrets["RootPasswordSecret"]),
                "Secret holding GitLab's initial root password.", public=True)
