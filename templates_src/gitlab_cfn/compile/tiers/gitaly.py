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

Seam for Gitaly Cluster: consumers only see ``GitalyAddress`` and
``GitalyTokenSecretArn``. A Praefect cluster (three Gitaly nodes, three
Praefect nodes, its PostgreSQL and an internal load balancer) replaces
``gitaly_node`` and publishes its internal load balancer under the same two
outputs; nothing outside this tier changes.

Exposes: ``GitalyAddress``, ``GitalyPrivateIp``, ``GitalyInstanceId``,
``GitalyTokenSecretArn``, ``GitLabShellSecretArn``, ``GitalyBootBundleParameterName``.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Select, Sub, ec2, iam

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
from gitlab_cfn.compile.tier import Tier, token_secret
from gitlab_cfn.compile.tiers.logs import agent_grant
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn gitaly: Gitaly server, its data volume and auth token."

GITALY_PORT = 8075
DATA_DEVICE = "/dev/sdf"
BOOT_TIMEOUT = "PT30M"
# The grants the server reads with while it boots: it depends on them.
BOOT_GRANTS = ("GitalyTokenSecretRead", "GitalyBootRead", "GitalyCloudWatchAgent")


def gitaly_node(tier: Tier, profile, subnet_id, az, secrets: dict, parameter) -> ec2.Instance:
    """One Gitaly server and its repository volume."""
    # Only what never changes: a new version of it would replace the server.
    template = launch_template(
        tier, "GitalyLaunchTemplate",
        name="gitaly",
        root_size=IMAGE_ROOT_GIB,
        key_pair=False,
    )
    io1 = tier.cfg.gitaly.volume_type == "io1"
    volume = tier.keep(ec2.Volume(
        "GitalyDataVolume",
        AvailabilityZone=az,
        Size=tier.param("GitalyVolumeSize"),
        VolumeType=tier.cfg.gitaly.volume_type,
        Iops=tier.param("GitalyVolumeIops"),
        Encrypted=True,
        Tags=tags("gitaly-data"),
    ), policy="Snapshot")
    if not io1:
        volume.Throughput = 250
    return tier.add(ec2.Instance(
        "GitalyInstance",
        LaunchTemplate=ec2.LaunchTemplateSpecification(**from_template(template)),
        # Pinned, used by this server only (ImageId is create-only).
        ImageId=tier.param("GitalyAmiId"),
        # Updated in place (stop and start; no interruption for the groups and profile).
        InstanceType=tier.param("GitalyInstanceType"),
        IamInstanceProfile=Ref(profile),
        SecurityGroupIds=[tier.input("GitalySecurityGroupId")],
        SubnetId=subnet_id,
        Volumes=[ec2.MountPoint(Device=DATA_DEVICE, VolumeId=Ref(volume))],
        UserData=user_data("gitaly", {
            "AWS_REGION": Ref("AWS::Region"),
            "CFN_STACK": Ref("AWS::StackName"),
            "CFN_RESOURCE": "GitalyInstance",
            "GITLAB_DOMAIN": tier.param("DomainName"),
            "GITALY_SECRET_ARN": Ref(secrets["token"]),
            "SHELL_SECRET_ARN": Ref(secrets["shell"]),
            "DATA_VOLUME_ID": Ref(volume),
            # The stack's log groups (tier logs): the server boots once they exist.
            "LOG_GROUP_PREFIX": tier.input("LogGroupPrefix"),
            # The parameter only: this user data must never change.
            **bundle_user_data(parameter, pin=False),
        }),
        CreationPolicy=signal_policy(1, BOOT_TIMEOUT),
        DependsOn=list(BOOT_GRANTS),
        Tags=tags("gitaly"),
    ))


def build(tier: Tier) -> None:
    tier.stack_name()
    key_arn = tier.input("KmsKeyArn")
    token = token_secret(tier, "GitalyTokenSecret", "Gitaly auth token", "gitaly")
    shell = token_secret(tier, "GitLabShellSecret", "shell secret (Gitaly to GitLab calls)", "gitaly")
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
    tier.add(agent_grant("GitalyCloudWatchAgent", [Ref(role)]))
    tier.add(grant(
        "GitalyTokenSecretRead", secret_read([Ref(token), Ref(shell)]),
        [Ref(role), tier.input("InstanceRoleName")]))
    parameter = bundle_parameter(tier, "gitaly", logical_id="GitalyBootBundleParameter",
                                 grant_id="GitalyBootRead", role_names=[Ref(role)], what="the Gitaly server")

    azs = tier.param("AvailabilityZones")
    instance = gitaly_node(tier, profile, tier.input("PrivateSubnet1Id"), Select(0, azs),
                           {"token": token, "shell": shell}, parameter)
    address = GetAtt(instance, "PrivateIp")
    tier.output("GitalyAddress", Sub(f"tcp://${{Ip}}:{GITALY_PORT}", Ip=address),
                "Gitaly address for GitLab's repository storage.", public=True)
    tier.output("GitalyPrivateIp", address, "Private address of the Gitaly server.")
    tier.output("GitalyInstanceId", Ref(instance), "Instance id of the Gitaly server.")
    tier.output("GitalyDataVolumeId", Ref("GitalyDataVolume"), "EBS volume of the repositories (backed up by tier backup).")
    tier.output("GitalyTokenSecretArn", Ref(token), "Secret holding the Gitaly auth token.",
                public=True)
    tier.output("GitLabShellSecretArn", Ref(shell), "Secret of Gitaly's calls back into GitLab.")
    tier.output("GitalyBootBundleParameterName", Ref(parameter),
                "SSM parameter naming the Gitaly server's boot bundle, read at its first boot.", public=True)
