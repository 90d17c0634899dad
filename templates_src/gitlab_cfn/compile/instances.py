"""EC2 launch templates, written one way for every instance the stack runs, and
where the instances' boot bundle is.

IMDSv2 is required (no token-less metadata calls, one network hop), the root
volume is an encrypted gp3 volume, the key pair is attached only when the build
asks for one, and the instance role comes from an instance profile.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, ec2
from troposphere.policies import CreationPolicy, ResourceSignal

from gitlab_cfn.compile import bundle, images
from gitlab_cfn.compile.naming import name_tag
from gitlab_cfn.compile.tier import Tier

# Root device of Ubuntu images, which both the bastion and GitLab AMIs are.
ROOT_DEVICE = "/dev/sda1"
# Root sizes of the images (see images): re-exported for the tiers.
IMAGE_ROOT_GIB = images.IMAGE_ROOT_GIB
UBUNTU_ROOT_GIB = images.UBUNTU_ROOT_GIB


def launch_template(
    tier: Tier,
    logical_id: str,
    *,
    name: str,
    root_size,
    image_id=None,
    instance_type=None,
    profile_arn=None,
    security_group_ids: list | None = None,
    user_data=None,
    detailed_monitoring: bool = False,
    key_pair: bool = True,
) -> ec2.LaunchTemplate:
    """A launch template; what is left out (``None``) the instance sets itself:
    ``security_group_ids`` when it brings its own network interface; image, type,
    profile, groups and user data when the template must never change (a server
    that CloudFormation would replace on a new launch template version)."""
    data = ec2.LaunchTemplateData(
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
    if image_id is not None:
        data.ImageId = image_id
    if instance_type is not None:
        data.InstanceType = instance_type
    if profile_arn is not None:
        data.IamInstanceProfile = ec2.IamInstanceProfile(Arn=profile_arn)
    if security_group_ids is not None:
        data.SecurityGroupIds = security_group_ids
    if user_data is not None:
        data.UserData = user_data
    if tier.cfg.ssh_key_pair and key_pair:
        data.KeyName = tier.param("KeyPairName")
    return tier.add(ec2.LaunchTemplate(logical_id, LaunchTemplateData=data))


def signal_policy(count: int, timeout: str) -> CreationPolicy:
    """Wait for ``count`` cfn-signal calls from the boot script, at most ``timeout``."""
    return CreationPolicy(ResourceSignal=ResourceSignal(Count=count, Timeout=timeout))


def from_template(template: ec2.LaunchTemplate):
    """Launch-template reference pinned to its latest version."""
    return dict(LaunchTemplateId=Ref(template), Version=GetAtt(template, "LatestVersionNumber"))


# -- the boot bundle -----------------------------------------------------------------------------

def bundle_location(tier: Tier) -> dict:
    """Where the boot bundle of this build is, as the bootstrap reads it: published
    beside the templates, ``<TemplateKeyPrefix>scripts/boot-<sha256>.tar.gz``."""
    built = bundle.build()
    return {
        "BUNDLE_BUCKET": tier.param("TemplateBucketName"),
        "BUNDLE_KEY": Sub("${TemplateKeyPrefix}" + built.key),
        "BUNDLE_REGION": tier.param("TemplateBucketRegion"),
        "BUNDLE_SHA256": built.sha256,
    }


def bundle_objects_arn(tier: Tier) -> Sub:
    """Every boot bundle of this build's location (and nothing else of the bucket)."""
    tier.param("TemplateBucketName")
    tier.param("TemplateKeyPrefix")
    return Sub(f"arn:${{AWS::Partition}}:s3:::${{TemplateBucketName}}/${{TemplateKeyPrefix}}"
               f"{bundle.SCRIPTS_DIR}/boot-*")
