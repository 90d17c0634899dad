"""Gitaly tier: the Git repository server of "Set up Gitaly".

Builds one Gitaly server in the first private subnet (c5.xlarge by default)
with a separate encrypted EBS data volume for the repositories (guide: io1,
20 GiB at 1000 IOPS; gp3 selectable), kept by a snapshot on delete or
replacement, and an auth token generated in Secrets Manager that both the
Gitaly server and the GitLab application servers may read. Port 8075 is open
to the application servers only (security groups tier).

Seam for Gitaly Cluster: consumers only see ``GitalyAddress`` and
``GitalyTokenSecretArn``. A Praefect cluster (three Gitaly nodes, three
Praefect nodes, its PostgreSQL and an internal load balancer) replaces
``gitaly_node`` and publishes its internal load balancer under the same two
outputs; nothing outside this tier changes.

Exposes: ``GitalyAddress``, ``GitalyPrivateIp``, ``GitalyInstanceId``,
``GitalyTokenSecretArn``.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Select, Sub, ec2, iam, secretsmanager

from ..instances import from_template, launch_template
from ..naming import tags
from ..policies import assume_role, grant, kms_use, managed_policy_arn, secret_read
from ..tier import Tier

DESCRIPTION = "gitlab-cfn gitaly: Gitaly server, its data volume and auth token."

GITALY_PORT = 8075
DATA_DEVICE = "/dev/sdf"


def gitaly_node(tier: Tier, profile, subnet_id, az) -> ec2.Instance:
    """One Gitaly server and its repository volume."""
    template = launch_template(
        tier, "GitalyLaunchTemplate",
        name="gitaly",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("GitalyInstanceType"),
        profile_arn=GetAtt(profile, "Arn"),
        security_group_ids=[tier.input("GitalySecurityGroupId")],
        root_size=20,
    )
    instance = tier.add(ec2.Instance(
        "GitalyInstance",
        LaunchTemplate=ec2.LaunchTemplateSpecification(**from_template(template)),
        SubnetId=subnet_id,
        Tags=tags("gitaly"),
    ))
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
    tier.add(ec2.VolumeAttachment(
        "GitalyDataVolumeAttachment",
        InstanceId=Ref(instance),
        VolumeId=Ref(volume),
        Device=DATA_DEVICE,
    ))
    return instance


def build(tier: Tier) -> None:
    tier.stack_name()
    key_arn = tier.input("KmsKeyArn")
    token = tier.keep(secretsmanager.Secret(
        "GitalyTokenSecret",
        Description=Sub("GitLab Gitaly auth token of stack ${ParentStackName}"),
        KmsKeyId=key_arn,
        GenerateSecretString=secretsmanager.GenerateSecretString(
            SecretStringTemplate="{}",
            GenerateStringKey="token",
            PasswordLength=64,
            ExcludePunctuation=True,
        ),
        Tags=tags("gitaly"),
    ))
    role = tier.add(iam.Role(
        "GitalyRole",
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
    profile = tier.add(iam.InstanceProfile("GitalyInstanceProfile", Roles=[Ref(role)]))
    tier.add(grant(
        "GitalyTokenSecretRead", secret_read([Ref(token)]),
        [Ref(role), tier.input("InstanceRoleName")]))

    azs = tier.param("AvailabilityZones")
    instance = gitaly_node(tier, profile, tier.input("PrivateSubnet1Id"), Select(0, azs))
    address = GetAtt(instance, "PrivateIp")
    tier.output("GitalyAddress", Sub(f"tcp://${{Ip}}:{GITALY_PORT}", Ip=address),
                "Gitaly address for GitLab's repository storage.", public=True)
    tier.output("GitalyPrivateIp", address, "Private address of the Gitaly server.")
    tier.output("GitalyInstanceId", Ref(instance), "Instance id of the Gitaly server.")
    tier.output("GitalyTokenSecretArn", Ref(token), "Secret holding the Gitaly auth token.",
                public=True)
