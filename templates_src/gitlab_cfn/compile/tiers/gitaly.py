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
- the internal token (Praefect to Gitaly; the Gitaly servers' auth token), generated in
  Secrets Manager with the stack's key;
- server-side repository backups: each node is told the backups bucket (``BACKUP_BUCKET_NAME``,
  scripts/gitaly.sh writes Gitaly's ``backup.go_cloud_url``), and the role may write there
  (``GitalyServerSideBackup``: exactly the S3 and KMS requests of Gitaly's backup sink);
- Praefect, its load balancer and the cluster's address are the praefect tier's. With
  ``gitaly.keep_single_server`` the single server stays beside the cluster (storage
  ``default``, the same logical ids and user data, so an update from the POC neither
  replaces nor deletes it).

Exposes: ``GitLabShellSecretArn``, ``GitalyBootBundleParameterName``; with the single
server ``GitalyAddress``, ``GitalyTokenSecretArn``, ``GitalyPrivateIp``,
``GitalyInstanceId``; with a cluster ``Gitaly<n>InstanceId``, ``Gitaly<n>PrivateIp``,
``PraefectInternalTokenSecretArn``.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Select, Sub, ec2, iam

from gitlab_cfn.compile import scrape
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
    gitaly_backup_sink,
    grant,
    kms_use,
    managed_policy_arn,
    secret_read,
)
from gitlab_cfn.compile.tier import Tier, gitlab_roles, token_secret
from gitlab_cfn.compile.tiers.logs import agent_grant
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn gitaly: Gitaly server, its data volume and auth token."

GITALY_PORT = 8075
DATA_DEVICE = "/dev/sdf"
BOOT_TIMEOUT = "PT30M"
# The grants the server reads with while it boots: it depends on them.
BOOT_GRANTS = ("GitalyTokenSecretRead", "GitalyBootRead", "GitalyCloudWatchAgent")




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
    # A cluster's servers: gp3 at the size's IOPS (parameters GitalyNodeVolume*); the single
    # server keeps the POC's volume (gitaly.volume_type, GitalyVolume*; see sizes.py).
    volume_type = "gp3" if storage is not None else tier.cfg.gitaly.volume_type
    params = "GitalyNodeVolume" if storage is not None else "GitalyVolume"
    volume = tier.keep(ec2.Volume(
        f"{prefix}DataVolume",
        AvailabilityZone=az,
        Size=tier.param(f"{params}Size"),
        VolumeType=volume_type,
        Iops=tier.param(f"{params}Iops"),
        Encrypted=True,
        Tags=tags("gitaly-data"),
    ), policy="Snapshot")
    if volume_type == "gp3":
        volume.Throughput = 250
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": f"{prefix}Instance",
        "GITLAB_DOMAIN": tier.param("DomainName"),
        "GITALY_SECRET_ARN": Ref(secrets["token"]),
        "SHELL_SECRET_ARN": Ref(secrets["shell"]),
        "DATA_VOLUME_ID": Ref(volume),
        # The stack's log groups (tier logs): the server boots once they exist. Their prefix
        # is /gitlab-cfn/<parent stack>/<LOG_GROUP_ID>, put together by lib/cloudwatch.sh.
        "LOG_GROUP_ID": tier.input("LogGroupId"),
        # The parameter only: this user data must never change.
        **bundle_user_data(parameter, pin=False),
    }
    if storage is not None:
        values["GITALY_STORAGE"] = storage
        # Server-side repository backups to the backups bucket (scripts/gitaly.sh,
        # gitaly_backup_url; grant GitalyServerSideBackup). A cluster node only: the single
        # server's user data never changes.
        values["BACKUP_BUCKET_NAME"] = tier.input("BackupsBucketName")
    values.update(scrape.user_data_values(tier.cfg))
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
        ],
        Policies=[iam.Policy(
            PolicyName="gitlab-data-key", PolicyDocument=kms_use(key_arn, ["secretsmanager"]))],
        Tags=tags("gitaly"),
    ))
    profile = tier.add(iam.InstanceProfile("GitalyInstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    # Every Gitaly server (the single one and each cluster node) has this role.
    tier.add(agent_grant("GitalyCloudWatchAgent", [Ref(role)]))
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
        [Ref(role), *gitlab_roles(tier)]))
    parameter = bundle_parameter(tier, "gitaly", logical_id="GitalyBootBundleParameter",
                                 grant_id="GitalyBootRead", role_names=[Ref(role)], what="the Gitaly server")
    tier.output("GitLabShellSecretArn", Ref(shell), "Secret of Gitaly's calls back into GitLab.")
    tier.output("GitalyBootBundleParameterName", Ref(parameter),
                "SSM parameter naming the Gitaly server's boot bundle, read at its first boot.", public=True)

    azs = tier.param("AvailabilityZones")
    instance = None
    if single:
        instance = gitaly_node(tier, profile, tier.input("PrivateSubnet1Id"), Select(0, azs),
                               {"token": token, "shell": shell}, parameter)
        address = GetAtt(instance, "PrivateIp")
        tier.output("GitalyAddress", Sub(f"tcp://${{Ip}}:{GITALY_PORT}", Ip=address),
                    "Gitaly address for GitLab's repository storage.", public=True)
        tier.output("GitalyPrivateIp", address, "Private address of the Gitaly server.")
        tier.output("GitalyInstanceId", Ref(instance), "Instance id of the Gitaly server.")
        tier.output("GitalyDataVolumeId", Ref("GitalyDataVolume"),
                    "EBS volume of the repositories (backed up by tier backup).")
        tier.output("GitalyTokenSecretArn", Ref(token), "Secret holding the Gitaly auth token.",
                    public=True)
    if cfg.cluster:
        cluster(tier, role, profile, shell, parameter, single=instance)


def cluster(tier: Tier, gitaly_role_, gitaly_profile, shell, gitaly_parameter, single=None) -> None:
    """The Gitaly servers of a Gitaly Cluster and the internal token Praefect reaches them
    with (the praefect tier builds Praefect and its load balancer)."""
    cfg = tier.cfg
    internal = token_secret(tier, "PraefectInternalTokenSecret",
                            "Praefect internal token (Praefect to Gitaly)", "praefect")
    # The Gitaly servers read it here; the Praefect servers are granted it in their tier.
    tier.add(grant("PraefectInternalTokenRead", secret_read([Ref(internal)]), [Ref(gitaly_role_)]))
    # Every Gitaly server of the role (the kept single server too, should it be given a
    # backup destination by hand) may write server-side repository backups to the backups bucket.
    tier.add(grant("GitalyServerSideBackup", gitaly_backup_sink(tier.input("BackupsBucketName"),
                                                                  tier.input("KmsKeyArn")), [Ref(gitaly_role_)]))

    node_grants = (*BOOT_GRANTS, "PraefectInternalTokenRead")
    nodes = []
    for n in range(1, cfg.gitaly.nodes + 1):
        i = (n - 1) % cfg.az_count
        nodes.append(gitaly_node(
            tier, gitaly_profile, tier.input(f"PrivateSubnet{i + 1}Id"), Select(i, tier.param("AvailabilityZones")),
            {"token": internal, "shell": shell}, gitaly_parameter, prefix=f"Gitaly{n}",
            storage=node_name(n), grants=node_grants))
    # One server at a time: every server takes its type from GitalyInstanceType, and a type
    # change stops and starts the instance ("Update requires: Some interruptions",
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-instance.html#cfn-ec2-instance-instancetype).
    # CloudFormation updates a resource only once those it depends on are updated, so each
    # server depending on the previous one (the kept single server first) keeps the others
    # serving while one restarts. The price: they are also created one after another.
    previous = single
    for node in nodes:
        if previous is not None:
            node.DependsOn = [*node.DependsOn, previous.title]
        previous = node
    # Servers sharing a private subnet (more servers than AZs, or the kept single server in
    # the first one): lint rule E9010 asks why, on each of them.
    placed = [(0, single)] if single is not None else []
    placed += [((n - 1) % cfg.az_count, node) for n, node in enumerate(nodes, 1)]
    for index, server in placed:
        if sum(1 for other, _ in placed if other == index) > 1:
            subnet = f"PrivateSubnet{index + 1}Id"
            server.Metadata = {"gitlab-cfn": {"shared-by-design": {subnet: (
                f"{len(placed)} Gitaly servers over {cfg.az_count} AZs share subnets; {subnet} is the network "
                "stack's output, which changes only when that subnet is replaced, never for another server")}}}
    for n, node in enumerate(nodes, 1):
        tier.output(f"Gitaly{n}InstanceId", Ref(node), f"Instance id of Gitaly server {node_name(n)}.")
        tier.output(f"Gitaly{n}PrivateIp", GetAtt(node, "PrivateIp"), f"Private address of Gitaly server {node_name(n)}.")
        tier.output(f"Gitaly{n}DataVolumeId", Ref(f"Gitaly{n}DataVolume"),
                    f"EBS volume of Gitaly server {node_name(n)}'s repositories (backed up by tier backup).")
    tier.output("PraefectInternalTokenSecretArn", Ref(internal),
                "Secret holding the Praefect internal token (Praefect to the Gitaly servers).")
