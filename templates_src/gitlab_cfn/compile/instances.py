"""EC2 launch templates, written one way for every instance the stack runs, and
where the instances' boot bundle is.

IMDSv2 is required (no token-less metadata calls, one network hop), the root
volume is an encrypted gp3 volume, the key pair is attached only when the build
asks for one, and the instance role comes from an instance profile.
"""

from __future__ import annotations

import json

from troposphere import GetAtt, Ref, Sub, ec2, ssm
from troposphere.policies import (
    AutoScalingCreationPolicy,
    AutoScalingRollingUpdate,
    CreationPolicy,
    ResourceSignal,
    UpdatePolicy,
)

from gitlab_cfn.compile import bundle, images
from gitlab_cfn.compile.naming import name_tag
from gitlab_cfn.compile.policies import boot_read, grant
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


def signalled_group_policies(count: int, in_service: int, create_timeout: str,
                             pause: str) -> dict:
    """CreationPolicy and UpdatePolicy of an Auto Scaling group whose servers signal their
    boot: every one of ``count`` must signal at create; an update replaces one server at a
    time, keeps ``in_service`` running and waits for each new one's signal, with the
    processes that would fight the roll suspended."""
    return {
        "CreationPolicy": CreationPolicy(
            ResourceSignal=ResourceSignal(Count=count, Timeout=create_timeout),
            AutoScalingCreationPolicy=AutoScalingCreationPolicy(MinSuccessfulInstancesPercent=100),
        ),
        "UpdatePolicy": UpdatePolicy(AutoScalingRollingUpdate=AutoScalingRollingUpdate(
            MaxBatchSize=1,
            MinInstancesInService=in_service,
            WaitOnResourceSignals=True,
            PauseTime=pause,
            SuspendProcesses=["HealthCheck", "ReplaceUnhealthy", "AZRebalance",
                              "AlarmNotification", "ScheduledActions"],
        )),
    }


def from_template(template: ec2.LaunchTemplate):
    """Launch-template reference pinned to its latest version."""
    return dict(LaunchTemplateId=Ref(template), Version=GetAtt(template, "LatestVersionNumber"))


# -- the boot bundle -----------------------------------------------------------------------------
#
# A server's user data names only the SSM parameter of its role, never the bundle's key:
# the key lies under the build's key prefix, which deploy changes with every build, and a
# new user data replaces the app servers (a rolling update) and stops and starts an
# AWS::EC2::Instance ("Update requires: Some interruptions", and the new user data is not
# run again: https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-instance.html#cfn-ec2-instance-userdata).
# The parameter's value, updated in place with each build, says where the bundle is.

# Name of the SSM parameter holding a role's boot bundle location, per parent stack.
BUNDLE_PARAMETER_NAME = "/gitlab-cfn/${{ParentStackName}}/{role}/boot-bundle"


def bundle_parameter_name(role: str) -> str:
    """``/gitlab-cfn/${ParentStackName}/<role>/boot-bundle`` (an ``Fn::Sub`` text)."""
    return BUNDLE_PARAMETER_NAME.format(role=role)


def bundle_location(tier: Tier, extra: dict | None = None) -> Sub:
    """The bundle of this build as the bootstrap reads it from the parameter: JSON
    ``{bucket, key, region, sha256}``, the key under the build's key prefix
    (``<TemplateKeyPrefix>scripts/boot-<sha256>.tar.gz``, published beside the templates).
    ``extra``: more fields the role's boot script reads (``${Name}`` of the tier's parameters),
    which the user data has no room for (the SES SMTP secret, scripts/lib/email.sh)."""
    built = bundle.build()
    for name in ("TemplateBucketName", "TemplateKeyPrefix", "TemplateBucketRegion"):
        tier.param(name)
    return Sub(json.dumps({"bucket": "${TemplateBucketName}", "key": "${TemplateKeyPrefix}" + built.key,
                           "region": "${TemplateBucketRegion}", "sha256": built.sha256, **(extra or {})},
                          sort_keys=True))


def bundle_objects_arn(tier: Tier) -> Sub:
    """Every boot bundle of this build's location (and nothing else of the bucket)."""
    tier.param("TemplateBucketName")
    tier.param("TemplateKeyPrefix")
    return Sub(f"arn:${{AWS::Partition}}:s3:::${{TemplateBucketName}}/${{TemplateKeyPrefix}}"
               f"{bundle.SCRIPTS_DIR}/boot-*")


def bundle_parameter(tier: Tier, role: str, *, logical_id: str, grant_id: str, role_names: list,
                     what: str, extra: dict | None = None) -> ssm.Parameter:
    """The boot bundle parameter of ``role`` (``logical_id``), and ``grant_id``: the
    instance role(s) may read exactly that parameter and the bundles of this build's
    location. Its value changes with every build (an in-place update of the parameter);
    the user data naming it (``Ref``, which also orders the parameter's update before
    the launch template's or instance's) does not."""
    tier.stack_name()
    parameter = tier.add(ssm.Parameter(
        logical_id,
        Name=Sub(bundle_parameter_name(role)),
        Type="String",
        Value=bundle_location(tier, extra),
        Description=f"Boot bundle of {what}: where it is and its sha256 (gitlab-cfn).",
    ))
    arn = Sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter" + bundle_parameter_name(role))
    tier.add(grant(grant_id, boot_read(bundle_objects_arn(tier), [arn]), role_names))
    return parameter


def bundle_user_data(parameter: ssm.Parameter, *, pin: bool) -> dict:
    """What the preamble says about the bundle: the parameter, and with ``pin`` the sha256
    of this build's bundle, which the bootstrap requires the parameter to name (a launch
    template then changes exactly when a boot script does)."""
    values = {"BUNDLE_PARAMETER": Ref(parameter)}
    if pin:
        values["BUNDLE_SHA256"] = bundle.build().sha256
    return values
