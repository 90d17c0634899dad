"""EC2 launch templates, written one way for every instance the stack runs.

IMDSv2 is required (no token-less metadata calls, one network hop), the root
volume is an encrypted gp3 volume, the key pair is attached only when the build
asks for one, and the instance role comes from an instance profile.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, ec2
from troposphere.policies import CreationPolicy, ResourceSignal

from gitlab_cfn.compile.naming import name_tag
from gitlab_cfn.compile.tier import Tier

# Root device of Ubuntu images, which both the bastion and GitLab AMIs are.
ROOT_DEVICE = "/dev/sda1"


def launch_template(
    tier: Tier,
    logical_id: str,
    *,
    name: str,
    image_id,
    instance_type,
    profile_arn,
    root_size,
    security_group_ids: list | None = None,
    user_data=None,
    detailed_monitoring: bool = False,
) -> ec2.LaunchTemplate:
    """A launch template; ``security_group_ids`` is left out when the instance
    brings its own network interface, ``user_data`` when the instance sets it."""
    data = ec2.LaunchTemplateData(
        ImageId=image_id,
        InstanceType=instance_type,
        IamInstanceProfile=ec2.IamInstanceProfile(Arn=profile_arn),
        MetadataOptions=ec2.MetadataOptions(
            HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1),
        BlockDeviceMappings=[ec2.LaunchTemplateBlockDeviceMapping(
            DeviceName=ROOT_DEVICE,
            Ebs=ec2.EBSBlockDevice(
                VolumeSize=root_size, VolumeType="gp3", Encrypted=True, DeleteOnTermination=True),
        )],
        Monitoring=ec2.Monitoring(Enabled=detailed_monitoring),
        TagSpecifications=[
            ec2.TagSpecifications(ResourceType=kind, Tags=[{"Key": "Name", "Value": name_tag(name)}])
            for kind in ("instance", "volume")
        ],
    )
    if security_group_ids is not None:
        data.SecurityGroupIds = security_group_ids
    if user_data is not None:
        data.UserData = user_data
    if tier.cfg.ssh_key_pair:
        data.KeyName = tier.param("KeyPairName")
    return tier.add(ec2.LaunchTemplate(logical_id, LaunchTemplateData=data))


def signal_policy(count: int, timeout: str) -> CreationPolicy:
    """Wait for ``count`` cfn-signal calls from the boot script, at most ``timeout``."""
    return CreationPolicy(ResourceSignal=ResourceSignal(Count=count, Timeout=timeout))


def from_template(template: ec2.LaunchTemplate):
    """Launch-template reference pinned to its latest version."""
    return dict(LaunchTemplateId=Ref(template), Version=GetAtt(template, "LatestVersionNumber"))
