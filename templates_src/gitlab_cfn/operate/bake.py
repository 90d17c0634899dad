"""AMI baking: the guide's "Install GitLab and create custom AMI", automated.

1. Find the source image in the build region: GitLab's own AMI for the version
   (published by GitLab's AWS account), or the current Ubuntu LTS.
2. Launch a builder with ``scripts/bake-install.sh`` as user data and a
   temporary instance profile that may only put the result tag on builders; the script
   installs what the boot scripts need and tags the instance
   ``gitlab-cfn:bake=success`` (or ``failed``).
3. Create the image, tag it (GitLab version, source AMI, build time), copy it
   to every other region and tag the copies.
4. Write each region's image id to an SSM parameter (``/gitlab-cfn/ami/gitlab``
   by default): the app and Gitaly tiers read ``GitLabAmiId`` through an
   ``AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>`` parameter.

The builder instance and the temporary role are removed on success and on
failure alike.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from awacs.aws import (
    Allow,
    Condition,
    ForAllValuesStringEquals,
    PolicyDocument,
    Statement,
    StringEquals,
)
from awacs.ec2 import CreateTags
from botocore.exceptions import ClientError

from gitlab_cfn.compile.catalog import GITLAB_AMI_PARAMETER
from gitlab_cfn.compile.images import IMAGE_ROOT_GIB
from gitlab_cfn.compile.policies import assume_role
from gitlab_cfn.compile.userdata import render
from gitlab_cfn.compile.versions import check_supported
from gitlab_cfn.errors import ConfigError, GitlabCfnError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.progress import Progress

GITLAB_OWNER = "782774275127"      # GitLab's AWS account, publisher of the official AMIs
CANONICAL_OWNER = "099720109477"   # Canonical, publisher of the Ubuntu images
UBUNTU_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
RESULT_TAG = "gitlab-cfn:bake"
# The GitLab version of every image made here; upgrade reads it (and puts it on the
# repository servers it upgrades in place).
VERSION_TAG = "gitlab-cfn:gitlab-version"
ROLE_TAG, BUILDER_ROLE = "gitlab-cfn:role", "ami-builder"
# The builder's root volume, and so the image's root snapshot: every launch of the image
# needs a root volume at least this big (EC2 refuses smaller: InvalidBlockDeviceMapping).
# Defined once, in compile/images.py, where the templates' minimums come from.
ROOT_VOLUME_SIZE = IMAGE_ROOT_GIB


class BakeError(GitlabCfnError):
    """The bake ran and failed (exit 1)."""


@dataclass(frozen=True)
class BakeRequest:
    gitlab_version: str
    region: str
    copy_regions: tuple[str, ...] = ()
    edition: str = "ee"
    source: str = "gitlab-ami"
    instance_type: str = "c5.xlarge"
    subnet_id: str | None = None
    ssm_parameter: str = GITLAB_AMI_PARAMETER
    timeout: float = 45 * 60
    poll: float = 15.0

    def __post_init__(self):
        # Only versions whose gitlab.rb the boot scripts are checked against (before any AWS call).
        check_supported(self.gitlab_version)
        if self.edition not in ("ee", "ce"):
            raise ConfigError(f"--edition: must be one of ee, ce (got {self.edition!r})")
        if self.source not in ("gitlab-ami", "ubuntu"):
            raise ConfigError(f"--source: must be one of gitlab-ami, ubuntu (got {self.source!r})")
        if not self.ssm_parameter.startswith("/"):
            raise ConfigError(f"--ssm-parameter: must be a path starting with / (got {self.ssm_parameter!r})")

    @property
    def regions(self) -> list[str]:
        return [self.region] + [r for r in self.copy_regions if r != self.region]


@dataclass
class BakeResult:
    images: dict[str, str] = field(default_factory=dict)   # region -> image id
    builder: str | None = None
    source_image: str | None = None


def find_source_image(ec2, request: BakeRequest) -> str:
    if request.source == "gitlab-ami":
        edition = request.edition.upper()
        long_name = "Enterprise" if request.edition == "ee" else "Community"
        owner = GITLAB_OWNER
        names = [f"GitLab {edition} {request.gitlab_version}*",
                 f"GitLab {long_name} Edition - {request.gitlab_version}*"]
    else:
        owner, names = CANONICAL_OWNER, [UBUNTU_NAME]
    images = ec2.describe_images(
        Owners=[owner],
        Filters=[{"Name": "name", "Values": names},
                 {"Name": "architecture", "Values": ["x86_64"]},
                 {"Name": "state", "Values": ["available"]}],
    )["Images"]
    if not images:
        what = (f"GitLab {request.edition.upper()} {request.gitlab_version} AMI from GitLab (owner {owner})"
                if request.source == "gitlab-ami" else f"Ubuntu 24.04 AMI from Canonical (owner {owner})")
        raise ConfigError(f"--region: no {what} in {request.region}; check the version, or use --source ubuntu")
    return max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]


class BuilderProfile:
    """A temporary role and instance profile allowing the builder to report its result:
    the one tag key ``gitlab-cfn:bake``, on builder instances only."""

    def __init__(self, iam):
        self.iam = iam
        self.name = f"gitlab-cfn-ami-builder-{secrets.token_hex(4)}"
        self.created = False

    def policy(self) -> PolicyDocument:
        return PolicyDocument(Version="2012-10-17", Statement=[Statement(
            Effect=Allow,
            Action=[CreateTags],
            Resource=["arn:*:ec2:*:*:instance/*"],
            Condition=Condition([
                StringEquals(f"ec2:ResourceTag/{ROLE_TAG}", BUILDER_ROLE),
                ForAllValuesStringEquals("aws:TagKeys", [RESULT_TAG]),
            ]),
        )])

    def create(self) -> str:
        self.iam.create_role(RoleName=self.name, AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com").to_json(),
                             Description="gitlab-cfn AMI builder: tags itself with the bake result")
        self.created = True
        self.iam.put_role_policy(RoleName=self.name, PolicyName="tag-itself", PolicyDocument=self.policy().to_json())
        self.iam.create_instance_profile(InstanceProfileName=self.name)
        self.iam.add_role_to_instance_profile(InstanceProfileName=self.name, RoleName=self.name)
        self.iam.get_waiter("instance_profile_exists").wait(InstanceProfileName=self.name)
        return self.name

    def delete(self) -> None:
        if not self.created:
            return
        for call in (
            lambda: self.iam.remove_role_from_instance_profile(InstanceProfileName=self.name, RoleName=self.name),
            lambda: self.iam.delete_instance_profile(InstanceProfileName=self.name),
            lambda: self.iam.delete_role_policy(RoleName=self.name, PolicyName="tag-itself"),
            lambda: self.iam.delete_role(RoleName=self.name),
        ):
            try:
                call()
            except ClientError:
                pass


def _launch(ec2, request: BakeRequest, image: str, profile: str, progress: Progress) -> str:
    user_data = render("bake", {
        "AWS_REGION": request.region,
        "GITLAB_VERSION": request.gitlab_version,
        "GITLAB_EDITION": request.edition,
        "BAKE_SOURCE": request.source,
    })
    kwargs = dict(
        ImageId=image, InstanceType=request.instance_type, MinCount=1, MaxCount=1,
        UserData=user_data,
        IamInstanceProfile={"Name": profile},
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"VolumeSize": IMAGE_ROOT_GIB, "VolumeType": "gp3", "Encrypted": True}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": f"gitlab-cfn AMI builder {request.gitlab_version}"},
            {"Key": ROLE_TAG, "Value": BUILDER_ROLE}]}],
    )
    if request.subnet_id:
        kwargs["SubnetId"] = request.subnet_id
    deadline = time.monotonic() + 120
    while True:
        try:
            return ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
        except ClientError as exc:
            # A new instance profile takes a few seconds to reach EC2.
            if "instance profile" in str(exc).lower() and time.monotonic() < deadline:
                progress.update("waiting for the builder's instance profile to propagate")
                time.sleep(5)
                continue
            raise


def _wait_for_result(ec2, instance: str, request: BakeRequest, progress: Progress) -> None:
    deadline = time.monotonic() + request.timeout
    while True:
        reservations = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
        described = reservations[0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
        state = described["State"]["Name"]
        result = tags.get(RESULT_TAG)
        if result == "success":
            progress.done(f"builder {instance}: install script succeeded")
            return
        if result is not None:
            raise BakeError(f"the install script failed on builder {instance} ({RESULT_TAG}={result}); "
                            "its console output has the log")
        if state in ("stopped", "stopping", "terminated", "shutting-down"):
            raise BakeError(f"builder {instance} is {state} and never reported a result")
        if time.monotonic() > deadline:
            raise BakeError(f"builder {instance} reported nothing within {request.timeout / 60:.0f} minutes")
        progress.update(f"builder {instance} {state}: waiting for its install script")
        time.sleep(request.poll)


def _wait_for_image(ec2, image: str, region: str, request: BakeRequest, progress: Progress) -> None:
    deadline = time.monotonic() + request.timeout
    while True:
        found = ec2.describe_images(ImageIds=[image])["Images"]
        state = found[0]["State"] if found else "pending"
        if state == "available":
            progress.done(f"{region}: {image} available")
            return
        if state in ("failed", "error", "invalid", "deregistered"):
            raise BakeError(f"{region}: image {image} is {state}")
        if time.monotonic() > deadline:
            raise BakeError(f"{region}: image {image} not available within {request.timeout / 60:.0f} minutes")
        progress.update(f"{region}: image {image} {state}")
        time.sleep(request.poll)


def bake(request: BakeRequest, aws: Aws | None = None, progress: Progress | None = None) -> BakeResult:
    aws = aws or Aws()
    progress = progress or Progress()
    result = BakeResult()
    ec2 = aws.client("ec2", request.region)
    result.source_image = find_source_image(ec2, request)
    progress.done(f"source image {result.source_image} ({request.source}) in {request.region}")

    built_at = datetime.now(timezone.utc).replace(microsecond=0)
    name = f"gitlab-cfn gitlab-{request.edition} {request.gitlab_version} {built_at:%Y%m%d-%H%M%S}"
    tags = [
        {"Key": "Name", "Value": name},
        {"Key": VERSION_TAG, "Value": request.gitlab_version},
        {"Key": "gitlab-cfn:gitlab-edition", "Value": request.edition},
        {"Key": "gitlab-cfn:source-ami", "Value": result.source_image},
        {"Key": "gitlab-cfn:build-time", "Value": built_at.isoformat()},
    ]
    profile = BuilderProfile(aws.client("iam", request.region))
    try:
        profile.create()
        result.builder = _launch(ec2, request, result.source_image, profile.name, progress)
        progress.done(f"builder {result.builder} launched")
        _wait_for_result(ec2, result.builder, request, progress)
        image = ec2.create_image(InstanceId=result.builder, Name=name,
                                 Description=f"GitLab {request.edition.upper()} {request.gitlab_version}, baked by gitlab-cfn")["ImageId"]
        _wait_for_image(ec2, image, request.region, request, progress)
        ec2.create_tags(Resources=[image], Tags=tags)
        result.images[request.region] = image
    finally:
        if result.builder:
            ec2.terminate_instances(InstanceIds=[result.builder])
            progress.done(f"builder {result.builder} terminated")
        profile.delete()

    copies = {}
    for region in request.regions[1:]:
        copies[region] = aws.client("ec2", region).copy_image(
            SourceRegion=request.region, SourceImageId=result.images[request.region], Name=name,
            Description=f"GitLab {request.edition.upper()} {request.gitlab_version}, copied from {request.region}",
        )["ImageId"]
        progress.done(f"{region}: copying as {copies[region]}")
    for region, image in copies.items():
        regional = aws.client("ec2", region)
        _wait_for_image(regional, image, region, request, progress)
        regional.create_tags(Resources=[image], Tags=tags)
        result.images[region] = image

    for region, image in result.images.items():
        aws.client("ssm", region).put_parameter(
            Name=request.ssm_parameter, Value=image, Type="String", DataType="aws:ec2:image",
            Overwrite=True, Description=f"GitLab {request.edition.upper()} {request.gitlab_version} AMI, gitlab-cfn")
        progress.done(f"{region}: {request.ssm_parameter} = {image}")
    return result


def as_json(result: BakeResult) -> str:
    return json.dumps({"source_image": result.source_image, "builder": result.builder,
                       "images": result.images}, indent=2, sort_keys=True)
