"""Gitaly tier: the Git repository server of "Set up Gitaly".

Builds one Gitaly server in the first private subnet (c5.xlarge by default)
with a separate encrypted EBS data volume for the repositories (guide: io1,
20 GiB at 1000 IOPS; gp3 selectable), kept by a snapshot on delete or
replacement, and two secrets generated in Secrets Manager that both the
Gitaly server and the GitLab application servers may read: the Gitaly auth
token and the secret of Gitaly's calls back into GitLab. Port 8075 is open to
the application servers only (security groups tier). The boot script
(scripts/gitaly.sh) formats the volume only if it is empty and signals the
instance's CreationPolicy.

The volume is attached through the instance's ``Volumes`` so that it is there
when the boot script runs: a separate VolumeAttachment would wait for the
instance, and the instance waits for its boot script's signal.

The server is never replaced by an upgrade or a change of settings: CloudFormation
would create the replacement while the data volume is still attached to the old
server, and the update would fail. Create-only properties of AWS::EC2::Instance
(the registry schema shipped with cfn-lint: ``ImageId``, ``KeyName``,
``LaunchTemplate``, ``SubnetId``, ``AvailabilityZone``, ``NetworkInterfaces``...)
therefore come from values that change only on purpose:

- the image from ``GitalyAmiId``, a plain image id used by this server only and
  pinned at creation (not the SSM-typed ``GitLabAmiId``, which CloudFormation
  resolves again on every update); GitLab on Gitaly is upgraded in place;
- no key pair (``KeyPairName`` is shared with the other servers; Gitaly is
  administered through Session Manager);
- a launch template that holds only what never changes (metadata options, the
  root volume, tags), so that its version stays 1;
- type, instance profile and security group set on the instance itself, where
  CloudFormation changes them without replacing it;
- user data that never changes (changing it stops and starts the server and is
  not run again): the bootstrap finds the boot bundle through the SSM parameter
  ``GitalyBootBundleParameter``, which the stack updates with every build. The
  server runs its bundle at its first boot only: a later build's bundle reaches
  the running server only when it is replaced or its script is run by hand.

Lint rule E9010 refuses a stateful server whose create-only properties hang on an
SSM-typed or shared parameter.

Gitaly Cluster (config ``gitaly.nodes`` 3 or more; sizes from 3k), as GitLab's
"Configure Gitaly Cluster" describes it (https://docs.gitlab.com/administration/gitaly/praefect/configure/):

- ``gitaly.nodes`` Gitaly servers ``Gitaly<n>Instance``, node ``n`` in private subnet
  ``(n-1) mod AZs + 1``, each with its own kept, encrypted volume ``Gitaly<n>DataVolume``,
  built exactly like the single server above (pinned image, constant launch template,
  never in a group that replaces them); each serves storage ``gitaly-<n>``;
- ``praefect.nodes`` Praefect servers in an Auto Scaling group (Praefect is stateless)
  behind an internal Network Load Balancer: TCP 2305, TCP health checks, cross-zone on;
- three tokens generated in Secrets Manager with the stack's key: the external token
  (GitLab to Praefect), the internal token (Praefect to Gitaly; the Gitaly servers'
  auth token), and the Praefect database user's password (user ``praefect``); the
  database itself is ``praefect_production`` on the main RDS instance, or on Praefect's
  own instance (``praefect.database: own``), created by the first Praefect server under
  the bootstrap lock;
- ``GitalyAddress`` and ``GitalyTokenSecretArn`` are then the load balancer's address and
  the external token, so the application servers need nothing else. With
  ``gitaly.keep_single_server`` the single server stays (storage ``default``, the same
  logical ids, so an update from the POC neither replaces nor deletes it) and the
  cluster is published as ``Gitaly2Address`` / ``Gitaly2TokenSecretArn`` (storage ``cluster``).

Exposes: ``GitalyAddress``, ``GitalyTokenSecretArn``, ``GitLabShellSecretArn``,
``GitalyBootBundleParameterName``; with the single server ``GitalyPrivateIp`` and
``GitalyInstanceId``; with a cluster ``Gitaly<n>InstanceId``, ``Gitaly<n>PrivateIp``,
``PraefectLoadBalancerDNSName``, ``PraefectAutoScalingGroupName``,
``PraefectBootBundleParameterName`` (and ``Gitaly2Address``, ``Gitaly2TokenSecretArn``
when the single server is kept).
"""

from __future__ import annotations

from troposphere import GetAtt, Join, Ref, Select, Sub, autoscaling, ec2, iam
from troposphere import elasticloadbalancingv2 as elbv2
from troposphere.policies import (
    AutoScalingCreationPolicy,
    AutoScalingRollingUpdate,
    CreationPolicy,
    ResourceSignal,
    UpdatePolicy,
)

from gitlab_cfn.compile.instances import (
    IMAGE_ROOT_GIB,
    bundle_parameter,
    bundle_user_data,
    from_template,
    launch_template,
    signal_policy,
)
from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import (
    assume_role,
    grant,
    kms_use,
    managed_policy_arn,
    secret_read,
)
from gitlab_cfn.compile.tier import Tier, generated_secret, scanner_skip, token_secret
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn gitaly: Gitaly server, its data volume and auth token."

GITALY_PORT = 8075
DATA_DEVICE = "/dev/sdf"
BOOT_TIMEOUT = "PT30M"
# The grants the server reads with while it boots: it depends on them.
BOOT_GRANTS = ("GitalyTokenSecretRead", "GitalyBootRead")


PRAEFECT_PORT = 2305
PRAEFECT_DB_NAME = "praefect_production"
PRAEFECT_DB_USER = "praefect"
PRAEFECT_BOOT_TIMEOUT = "PT30M"
PRAEFECT_BOOT_SECONDS = 30 * 60
# The storage names (contract with the boot scripts): the single server is 'default';
# the cluster's virtual storage is 'default' too, or 'cluster' beside a kept single server.
SINGLE_STORAGE = "default"


def node_name(n: int) -> str:
    """The Gitaly node (and storage) name of cluster node ``n`` (1-based), as Praefect knows it."""
    return f"gitaly-{n}"


def gitaly_template(tier: Tier) -> ec2.LaunchTemplate:
    """The Gitaly servers' launch template: only what never changes (a new version of it
    would replace every server), made once and shared by them."""
    existing = tier.template.resources.get("GitalyLaunchTemplate")
    if existing is not None:
        return existing
    return launch_template(
        tier, "GitalyLaunchTemplate",
        name="gitaly",
        root_size=IMAGE_ROOT_GIB,
        key_pair=False,
    )


def gitaly_node(tier: Tier, profile, subnet_id, az, secrets: dict, parameter, *, prefix: str = "Gitaly",
                storage: str | None = None, grants=BOOT_GRANTS) -> ec2.Instance:
    """One Gitaly server ``<prefix>Instance`` and its repository volume ``<prefix>DataVolume``.
    ``storage``: the storage name it serves, told to a cluster's nodes only (the single
    server's user data must never change, and it serves 'default')."""
    template = gitaly_template(tier)
    io1 = tier.cfg.gitaly.volume_type == "io1"
    volume = tier.keep(ec2.Volume(
        f"{prefix}DataVolume",
        AvailabilityZone=az,
        Size=tier.param("GitalyVolumeSize"),
        VolumeType=tier.cfg.gitaly.volume_type,
        Iops=tier.param("GitalyVolumeIops"),
        Encrypted=True,
        Tags=tags("gitaly-data"),
    ), policy="Snapshot")
    if not io1:
        volume.Throughput = 250
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": f"{prefix}Instance",
        "GITLAB_DOMAIN": tier.param("DomainName"),
        "GITALY_SECRET_ARN": Ref(secrets["token"]),
        "SHELL_SECRET_ARN": Ref(secrets["shell"]),
        "DATA_VOLUME_ID": Ref(volume),
        # The parameter only: this user data must never change.
        **bundle_user_data(parameter, pin=False),
    }
    if storage is not None:
        values["GITALY_STORAGE"] = storage
    return tier.add(ec2.Instance(
        f"{prefix}Instance",
        LaunchTemplate=ec2.LaunchTemplateSpecification(**from_template(template)),
        # Pinned, used by this server only (ImageId is create-only).
        ImageId=tier.param(f"{prefix}AmiId"),
        # Updated in place (stop and start; no interruption for the groups and profile).
        InstanceType=tier.param("GitalyInstanceType"),
        IamInstanceProfile=Ref(profile),
        SecurityGroupIds=[tier.input("GitalySecurityGroupId")],
        SubnetId=subnet_id,
        Volumes=[ec2.MountPoint(Device=DATA_DEVICE, VolumeId=Ref(volume))],
        UserData=user_data("gitaly", values),
        CreationPolicy=signal_policy(1, BOOT_TIMEOUT),
        DependsOn=list(grants),
        Tags=tags("gitaly" if storage is None else f"gitaly-{prefix.removeprefix('Gitaly')}"),
    ))


def gitaly_role(tier: Tier) -> tuple[iam.Role, iam.InstanceProfile]:
    key_arn = tier.input("KmsKeyArn")
    role = tier.add(iam.Role(
        "GitalyRole",
        Path=IAM_PATH,
        Description="GitLab Gitaly server: its token, Session Manager, CloudWatch agent.",
        AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
        ManagedPolicyArns=[
            managed_policy_arn("AmazonSSMManagedInstanceCore"),
            managed_policy_arn("CloudWatchAgentServerPolicy"),
        ],
        Policies=[iam.Policy(
            PolicyName="gitlab-data-key", PolicyDocument=kms_use(key_arn, ["secretsmanager"]))],
        Tags=tags("gitaly"),
    ))
    profile = tier.add(iam.InstanceProfile("GitalyInstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    return role, profile


def build(tier: Tier) -> None:
    tier.stack_name()
    cfg = tier.cfg
    single = not cfg.cluster or cfg.gitaly.keep_single_server
    token = token_secret(tier, "GitalyTokenSecret", "Gitaly auth token", "gitaly") if single else None
    shell = token_secret(tier, "GitLabShellSecret", "shell secret (Gitaly to GitLab calls)", "gitaly")
    role, profile = gitaly_role(tier)
    tier.add(grant(
        "GitalyTokenSecretRead", secret_read([Ref(token), Ref(shell)] if single else [Ref(shell)]),
        [Ref(role), tier.input("InstanceRoleName")]))
    parameter = bundle_parameter(tier, "gitaly", logical_id="GitalyBootBundleParameter",
                                 grant_id="GitalyBootRead", role_names=[Ref(role)], what="the Gitaly server")
    tier.output("GitLabShellSecretArn", Ref(shell), "Secret of Gitaly's calls back into GitLab.")
    tier.output("GitalyBootBundleParameterName", Ref(parameter),
                "SSM parameter naming the Gitaly server's boot bundle, read at its first boot.", public=True)

    azs = tier.param("AvailabilityZones")
    if single:
        instance = gitaly_node(tier, profile, tier.input("PrivateSubnet1Id"), Select(0, azs),
                               {"token": token, "shell": shell}, parameter)
        address = GetAtt(instance, "PrivateIp")
        tier.output("GitalyAddress", Sub(f"tcp://${{Ip}}:{GITALY_PORT}", Ip=address),
                    "Gitaly address for GitLab's repository storage.", public=True)
        tier.output("GitalyPrivateIp", address, "Private address of the Gitaly server.")
        tier.output("GitalyInstanceId", Ref(instance), "Instance id of the Gitaly server.")
        tier.output("GitalyTokenSecretArn", Ref(token), "Secret holding the Gitaly auth token.",
                    public=True)
    if cfg.cluster:
        cluster(tier, role, profile, shell, parameter, suffix="2" if single else "")


def cluster(tier: Tier, gitaly_role_, gitaly_profile, shell, gitaly_parameter, suffix: str) -> None:
    """Gitaly Cluster: the Gitaly servers, Praefect behind an internal load balancer, tokens.
    Published as ``Gitaly<suffix>Address`` / ``Gitaly<suffix>TokenSecretArn``."""
    cfg = tier.cfg
    key_arn = tier.input("KmsKeyArn")
    external = token_secret(tier, "PraefectExternalTokenSecret",
                            "Praefect external token (GitLab to Praefect)", "praefect")
    internal = token_secret(tier, "PraefectInternalTokenSecret",
                            "Praefect internal token (Praefect to Gitaly)", "praefect")
    database = generated_secret(tier, "PraefectDatabaseSecret", "Praefect PostgreSQL user", "praefect",
                                key="password", length=40, username=PRAEFECT_DB_USER)
    praefect_role = tier.add(iam.Role(
        "PraefectRole",
        Path=IAM_PATH,
        Description="GitLab Praefect servers: their tokens and database secrets, Session Manager, CloudWatch agent.",
        AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
        ManagedPolicyArns=[
            managed_policy_arn("AmazonSSMManagedInstanceCore"),
            managed_policy_arn("CloudWatchAgentServerPolicy"),
        ],
        Policies=[iam.Policy(
            PolicyName="gitlab-data-key", PolicyDocument=kms_use(key_arn, ["secretsmanager"]))],
        Tags=tags("praefect"),
    ))
    praefect_profile = tier.add(iam.InstanceProfile(
        "PraefectInstanceProfile", Path=IAM_PATH, Roles=[Ref(praefect_role)]))
    # Each secret readable by the roles that use it and no other.
    tier.add(grant("PraefectInternalTokenRead", secret_read([Ref(internal)]),
                   [Ref(gitaly_role_), Ref(praefect_role)]))
    tier.add(grant("PraefectExternalTokenRead", secret_read([Ref(external)]),
                   [Ref(praefect_role), tier.input("InstanceRoleName")]))
    if cfg.praefect.database == "own":
        db_host, db_port = tier.input("PraefectDatabaseEndpoint"), tier.input("PraefectDatabasePort")
        db_secret = tier.input("PraefectDatabaseMasterSecretArn")
    else:
        db_host, db_port = tier.input("DatabaseEndpoint"), tier.input("DatabasePort")
        db_secret = tier.input("DatabaseSecretArn")
    tier.add(grant("PraefectDatabaseSecretsRead", secret_read([Ref(database), db_secret]), [Ref(praefect_role)]))

    node_grants = (*BOOT_GRANTS, "PraefectInternalTokenRead")
    nodes = []
    for n in range(1, cfg.gitaly.nodes + 1):
        i = (n - 1) % cfg.az_count
        nodes.append(gitaly_node(
            tier, gitaly_profile, tier.input(f"PrivateSubnet{i + 1}Id"), Select(i, tier.param("AvailabilityZones")),
            {"token": internal, "shell": shell}, gitaly_parameter, prefix=f"Gitaly{n}",
            storage=node_name(n), grants=node_grants))
    if cfg.gitaly.nodes > cfg.az_count:
        # More servers than AZs: some share a private subnet (lint rule E9010 asks why).
        for n, node in enumerate(nodes, 1):
            subnet = f"PrivateSubnet{(n - 1) % cfg.az_count + 1}Id"
            if sum(1 for m in range(1, len(nodes) + 1) if (m - 1) % cfg.az_count == (n - 1) % cfg.az_count) > 1:
                node.Metadata = {"gitlab-cfn": {"shared-by-design": {subnet: (
                    f"{len(nodes)} Gitaly servers over {cfg.az_count} AZs share subnets; {subnet} is the network "
                    "stack's output, which changes only when that subnet is replaced, never for another server")}}}
    for n, node in enumerate(nodes, 1):
        tier.output(f"Gitaly{n}InstanceId", Ref(node), f"Instance id of Gitaly server {node_name(n)}.")
        tier.output(f"Gitaly{n}PrivateIp", GetAtt(node, "PrivateIp"), f"Private address of Gitaly server {node_name(n)}.")

    parameter = bundle_parameter(tier, "praefect", logical_id="PraefectBootBundleParameter",
                                 grant_id="PraefectBootRead", role_names=[Ref(praefect_role)],
                                 what="the Praefect servers")
    # gitaly-1=10.0.1.23,gitaly-2=...: node name = private address (Gitaly listens on 8075).
    gitaly_nodes = Sub(",".join(f"{node_name(n)}=${{Ip{n}}}" for n in range(1, len(nodes) + 1)),
                       **{f"Ip{n}": GetAtt(node, "PrivateIp") for n, node in enumerate(nodes, 1)})
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": "PraefectAutoScalingGroup",
        "GITLAB_DOMAIN": tier.param("DomainName"),
        "DB_HOST": db_host,
        "DB_PORT": db_port,
        "DB_SECRET_ARN": db_secret,
        "PRAEFECT_DB_NAME": PRAEFECT_DB_NAME,
        "PRAEFECT_DB_SECRET_ARN": Ref(database),
        "PRAEFECT_EXTERNAL_SECRET_ARN": Ref(external),
        "PRAEFECT_INTERNAL_SECRET_ARN": Ref(internal),
        "GITALY_NODES": gitaly_nodes,
        "VIRTUAL_STORAGE": "cluster" if suffix else "default",
        **bundle_user_data(parameter, pin=True),
    }
    template = launch_template(
        tier, "PraefectLaunchTemplate",
        name="praefect",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("PraefectInstanceType"),
        profile_arn=GetAtt(praefect_profile, "Arn"),
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
        # Every Praefect server takes traffic from every AZ (GitLab: "cross-zone").
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
    count = cfg.praefect.nodes
    group = tier.add(autoscaling.AutoScalingGroup(
        "PraefectAutoScalingGroup",
        VPCZoneIdentifier=tier.input("PrivateSubnetIds"),
        LaunchTemplate=autoscaling.LaunchTemplateSpecification(**from_template(template)),
        MinSize=str(count),
        MaxSize=str(count),
        TargetGroupARNs=[Ref(targets)],
        HealthCheckType="ELB",
        # Health checks count only once a server may have booted (lint rule E9009).
        HealthCheckGracePeriod=PRAEFECT_BOOT_SECONDS,
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        Tags=autoscaling.Tags(Name=(Join("-", [tier.stack_name(), "praefect"]), True)),
        CreationPolicy=CreationPolicy(
            ResourceSignal=ResourceSignal(Count=count, Timeout=PRAEFECT_BOOT_TIMEOUT),
            AutoScalingCreationPolicy=AutoScalingCreationPolicy(MinSuccessfulInstancesPercent=100),
        ),
        UpdatePolicy=UpdatePolicy(AutoScalingRollingUpdate=AutoScalingRollingUpdate(
            MaxBatchSize=1,
            MinInstancesInService=count - 1,
            WaitOnResourceSignals=True,
            PauseTime=PRAEFECT_BOOT_TIMEOUT,
            SuspendProcesses=["HealthCheck", "ReplaceUnhealthy", "AZRebalance",
                              "AlarmNotification", "ScheduledActions"],
        )),
        DependsOn=["PraefectInternalTokenRead", "PraefectExternalTokenRead", "PraefectDatabaseSecretsRead",
                   "PraefectBootRead"],
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
