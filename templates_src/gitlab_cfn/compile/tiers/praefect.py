"""Praefect tier: the routers of a Gitaly Cluster (built with ``gitaly.nodes`` 3 or more).

As GitLab's "Configure Gitaly Cluster" describes it
(https://docs.gitlab.com/administration/gitaly/praefect/configure/), on AWS services:

- ``praefect.nodes`` (at least 3) Praefect servers from the GitLab image, in an Auto
  Scaling group over the private subnets (Praefect holds no data: its state is in its
  database), replaced one at a time by a rolling update that waits for each server's
  signal;
- an internal Network Load Balancer in front of them: a TCP listener on 2305, a target
  group with TCP health checks, cross-zone load balancing on, its own security group;
- the Praefect database: database ``praefect_production`` and user ``praefect`` on the
  main RDS instance (GitLab allows it with an external database when Geo is not used),
  or on Praefect's own instance (``praefect.database: own``, database tier); the first
  Praefect server creates both with the instance's master user under the bootstrap lock;
- secrets generated in Secrets Manager with the stack's key: the external token (GitLab
  to Praefect) and the ``praefect`` user's password; the internal token (Praefect to
  Gitaly) is the gitaly tier's. Each is readable by the roles that use it only.

The cluster's address, ``tcp://<load balancer DNS name>:2305``, and the external token are
published as ``GitalyAddress`` and ``GitalyTokenSecretArn`` (the application servers need
nothing else), or, when the single Gitaly server is kept (``gitaly.keep_single_server``),
as ``Gitaly2Address`` and ``Gitaly2TokenSecretArn``: the virtual storage is then named
``cluster`` instead of ``default``.

Exposes: ``GitalyAddress`` or ``Gitaly2Address``, ``GitalyTokenSecretArn`` or
``Gitaly2TokenSecretArn``, ``PraefectLoadBalancerDNSName``, ``PraefectAutoScalingGroupName``,
``PraefectBootBundleParameterName``.
"""

from __future__ import annotations

from troposphere import GetAtt, Join, Ref, Sub, autoscaling, iam
from troposphere import elasticloadbalancingv2 as elbv2

from gitlab_cfn.compile import scrape
from gitlab_cfn.compile.instances import (
    IMAGE_ROOT_GIB,
    bundle_parameter,
    bundle_user_data,
    from_template,
    launch_template,
    signalled_group_policies,
)
from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import (
    assume_role,
    grant,
    kms_use,
    managed_policy_arn,
    secret_read,
)
from gitlab_cfn.compile.tier import Tier, generated_secret, gitlab_roles, scanner_skip, token_secret
from gitlab_cfn.compile.tiers.gitaly import node_name
from gitlab_cfn.compile.tiers.logs import agent_grant
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn praefect: Praefect servers of the Gitaly Cluster, internal load balancer, tokens."

PRAEFECT_PORT = 2305
PRAEFECT_DB_NAME = "praefect_production"
PRAEFECT_DB_USER = "praefect"
BOOT_TIMEOUT = "PT30M"
BOOT_SECONDS = 30 * 60
# The grants a server reads with while it boots: the group depends on them.
BOOT_GRANTS = ("PraefectSecretsRead", "PraefectBootRead", "PraefectCloudWatchAgent")


def build(tier: Tier) -> None:
    tier.stack_name()
    cfg = tier.cfg
    kept = cfg.gitaly.keep_single_server
    suffix = "2" if kept else ""
    key_arn = tier.input("KmsKeyArn")
    external = token_secret(tier, "PraefectExternalTokenSecret",
                            "Praefect external token (GitLab to Praefect)", "praefect")
    database = generated_secret(tier, "PraefectDatabaseSecret", "Praefect PostgreSQL user", "praefect",
                                key="password", length=40, username=PRAEFECT_DB_USER)
    role = tier.add(iam.Role(
        "PraefectRole",
        Path=IAM_PATH,
        Description="GitLab Praefect servers: their tokens and database secrets, Session Manager, CloudWatch agent.",
        AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
        ManagedPolicyArns=[
            managed_policy_arn("AmazonSSMManagedInstanceCore"),
        ],
        Policies=[iam.Policy(
            PolicyName="gitlab-data-key", PolicyDocument=kms_use(key_arn, ["secretsmanager"]))],
        Tags=tags("praefect"),
    ))
    profile = tier.add(iam.InstanceProfile("PraefectInstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    # The CloudWatch agent ships Praefect's log to the stack's praefect log group (tier logs).
    tier.add(agent_grant("PraefectCloudWatchAgent", [Ref(role)]))

    if cfg.praefect.database == "own":
        db_host, db_port = tier.input("PraefectDatabaseEndpoint"), tier.input("PraefectDatabasePort")
        db_secret = tier.input("PraefectDatabaseMasterSecretArn")
    else:
        db_host, db_port = tier.input("DatabaseEndpoint"), tier.input("DatabasePort")
        db_secret = tier.input("DatabaseSecretArn")
    internal = tier.input("PraefectInternalTokenSecretArn")
    # Praefect reads the tokens, its user's password and the master secret (to create its
    # database and user); the GitLab servers read the external token only.
    tier.add(grant("PraefectSecretsRead", secret_read([Ref(external), internal, Ref(database), db_secret]),
                   [Ref(role)]))
    tier.add(grant("PraefectExternalTokenRead", secret_read([Ref(external)]), gitlab_roles(tier)))
    parameter = bundle_parameter(tier, "praefect", logical_id="PraefectBootBundleParameter",
                                 grant_id="PraefectBootRead", role_names=[Ref(role)],
                                 what="the Praefect servers")

    # gitaly-1=10.0.1.23,gitaly-2=...: node name = private address (Gitaly listens on 8075).
    count = cfg.gitaly.nodes
    gitaly_nodes = Sub(",".join(f"{node_name(n)}=${{Ip{n}}}" for n in range(1, count + 1)),
                       **{f"Ip{n}": tier.input(f"Gitaly{n}PrivateIp") for n in range(1, count + 1)})
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": "PraefectAutoScalingGroup",
        "DB_HOST": db_host,
        "DB_PORT": db_port,
        "DB_SECRET_ARN": db_secret,
        "PRAEFECT_DB_NAME": PRAEFECT_DB_NAME,
        "PRAEFECT_DB_SECRET_ARN": Ref(database),
        "PRAEFECT_EXTERNAL_SECRET_ARN": Ref(external),
        "PRAEFECT_INTERNAL_SECRET_ARN": internal,
        "GITALY_NODES": gitaly_nodes,
        "VIRTUAL_STORAGE": "cluster" if kept else "default",
        # The stack's log groups (tier logs): the servers boot once they exist. Their prefix
        # is /gitlab-cfn/<parent stack>/<LOG_GROUP_ID>, put together by lib/cloudwatch.sh.
        "LOG_GROUP_ID": tier.input("LogGroupId"),
        **bundle_user_data(parameter, pin=True),
        **scrape.user_data_values(cfg),
    }
    template = launch_template(
        tier, "PraefectLaunchTemplate",
        name="praefect",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("PraefectInstanceType"),
        profile_arn=GetAtt(profile, "Arn"),
        security_group_ids=[tier.input("PraefectSecurityGroupId")],
        root_size=IMAGE_ROOT_GIB,
        user_data=user_data("praefect", values),
        detailed_monitoring=True,
    )
    balancer = tier.add(elbv2.LoadBalancer(
        "PraefectLoadBalancer",
        Type="network",
        Scheme="internal",
        Subnets=tier.input("PrivateSubnetIds"),
        SecurityGroups=[tier.input("InternalLoadBalancerSecurityGroupId")],
        # Every Praefect server takes traffic from every AZ.
        LoadBalancerAttributes=[elbv2.LoadBalancerAttributes(
            Key="load_balancing.cross_zone.enabled", Value="true")],
        Tags=tags("praefect"),
    ))
    scanner_skip(balancer, "CKV_AWS_91",
                 "internal TCP load balancer in front of Praefect: Network Load Balancers log only TLS "
                 "listeners, and Praefect's gRPC calls are logged by Praefect itself")
    targets = tier.add(elbv2.TargetGroup(
        "PraefectTargetGroup",
        Protocol="TCP",
        Port=PRAEFECT_PORT,
        VpcId=tier.input("VpcId"),
        TargetType="instance",
        HealthCheckProtocol="TCP",
        HealthCheckPort="traffic-port",
        HealthCheckIntervalSeconds=10,
        HealthyThresholdCount=3,
        UnhealthyThresholdCount=3,
        TargetGroupAttributes=[elbv2.TargetGroupAttribute(Key="deregistration_delay.timeout_seconds", Value="30")],
        Tags=tags("praefect"),
    ))
    tier.add(elbv2.Listener(
        "PraefectListener",
        LoadBalancerArn=Ref(balancer),
        Port=PRAEFECT_PORT,
        Protocol="TCP",
        DefaultActions=[elbv2.Action(Type="forward", TargetGroupArn=Ref(targets))],
    ))
    servers = cfg.praefect.nodes
    group = tier.add(autoscaling.AutoScalingGroup(
        "PraefectAutoScalingGroup",
        VPCZoneIdentifier=tier.input("PrivateSubnetIds"),
        LaunchTemplate=autoscaling.LaunchTemplateSpecification(**from_template(template)),
        MinSize=str(servers),
        MaxSize=str(servers),
        TargetGroupARNs=[Ref(targets)],
        HealthCheckType="ELB",
        # Health checks count only once a server may have booted (lint rule E9009).
        HealthCheckGracePeriod=BOOT_SECONDS,
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        Tags=autoscaling.Tags(Name=(Join("-", [tier.stack_name(), "praefect"]), True)),
        **signalled_group_policies(servers, servers - 1, BOOT_TIMEOUT, BOOT_TIMEOUT),
        DependsOn=list(BOOT_GRANTS),
    ))
    address = Sub(f"tcp://${{Dns}}:{PRAEFECT_PORT}", Dns=GetAtt(balancer, "DNSName"))
    tier.output(f"Gitaly{suffix}Address", address,
                "Praefect's address (internal load balancer) for GitLab's repository storage.", public=True)
    tier.output(f"Gitaly{suffix}TokenSecretArn", Ref(external),
                "Secret holding the Praefect external token (GitLab to Praefect).", public=True)
    tier.output("PraefectLoadBalancerDNSName", GetAtt(balancer, "DNSName"), "Internal load balancer of Praefect.")
    tier.output("PraefectAutoScalingGroupName", Ref(group), "Auto Scaling group of the Praefect servers.",
                public=True)
    tier.output("PraefectBootBundleParameterName", Ref(parameter),
                "SSM parameter naming the Praefect servers' boot bundle.")
