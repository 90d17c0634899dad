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

Seam for Gitaly Cluster: consumers only see ``GitalyAddress`` and
``GitalyTokenSecretArn``. A Praefect cluster (three Gitaly nodes, three
Praefect nodes, its PostgreSQL and an internal load balancer) replaces
``gitaly_node`` and publishes its internal load balancer under the same two
outputs; nothing outside this tier changes.

Exposes: ``GitalyAddress``, ``GitalyPrivateIp``, ``GitalyInstanceId``,
``GitalyTokenSecretArn``, ``GitLabShellSecretArn``.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Select, Sub, ec2, iam

from gitlab_cfn.compile.instances import from_template, launch_template, signal_policy
from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import (
    assume_role,
    grant,
    kms_use,
    managed_policy_arn,
    secret_read,
)
from gitlab_cfn.compile.tier import Tier, token_secret
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn gitaly: Gitaly server, its data volume and auth token."

GITALY_PORT = 8075
DATA_DEVICE = "/dev/sdf"
BOOT_TIMEOUT = "PT30M"


def gitaly_node(tier: Tier, profile, subnet_id, az, secrets: dict) -> ec2.Instance:
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
        }),
        CreationPolicy=signal_policy(1, BOOT_TIMEOUT),
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
            managed_policy_arn("CloudWatchAgentServerPolicy"),
        ],
        Policies=[iam.Policy(
            PolicyName="gitlab-data-key", PolicyDocument=kms_use(key_arn, ["secretsmanager"]))],
        Tags=tags("gitaly"),
    ))
    profile = tier.add(iam.InstanceProfile("GitalyInstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    tier.add(grant(
        "GitalyTokenSecretRead", secret_read([Ref(token), Ref(shell)]),
        [Ref(role), tier.input("InstanceRoleName")]))

    azs = tier.param("AvailabilityZones")
    instance = gitaly_node(tier, profile, tier.input("PrivateSubnet1Id"), Select(0, azs),
                           {"token": token, "shell": shell})
    address = GetAtt(instance, "PrivateIp")
    tier.output("GitalyAddress", Sub(f"tcp://${{Ip}}:{GITALY_PORT}", Ip=address),
                "Gitaly address for GitLab's repository storage.", public=True)
    tier.output("GitalyPrivateIp", address, "Private address of the Gitaly server.")
    tier.output("GitalyInstanceId", Ref(instance), "Instance id of the Gitaly server.")
    tier.output("GitalyTokenSecretArn", Ref(token), "Secret holding the Gitaly auth token.",
                public=True)
    tier.output("GitLabShellSecretArn", Ref(shell), "Secret of Gitaly's calls back into GitLab.")
