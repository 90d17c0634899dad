"""AMI baking against the local AWS stand-in.

moto runs no user data, so a test thread plays the builder's install script in
its one observable act: tagging its own instance with the result.
"""

import json
import os
import subprocess
import threading
import time

import pytest
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate import bake
from gitlab_cfn.operate.progress import Progress
from test_cli import EXE

GITLAB_AMI = "ami-0a11ab5e1c0de1851"   # "GitLab EE 19.3.0" in the stand-in's image catalog
UBUNTU_AMI = "ami-0b0b1e24040000001"


class Builder(threading.Thread):
    """Waits for the builder instance, then tags it as bake-install.sh would."""

    def __init__(self, ec2, result: str):
        super().__init__(daemon=True)
        self.ec2, self.result, self.instance = ec2, result, None

    def run(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = self.ec2.describe_instances(Filters=[
                {"Name": "tag:gitlab-cfn:role", "Values": ["ami-builder"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
            if found:
                self.instance = found[0]["Instances"][0]["InstanceId"]
                self.ec2.create_tags(Resources=[self.instance], Tags=[{"Key": "gitlab-cfn:bake", "Value": self.result}])
                return
            time.sleep(0.1)


def request(**overrides):
    values = dict(gitlab_version="19.3.0", region="us-east-1", copy_regions=("eu-west-1", "ap-southeast-2"),
                  poll=0.1, timeout=60)
    values.update(overrides)
    return bake.BakeRequest(**values)


def builders(ec2):
    return [i for r in ec2.describe_instances(Filters=[{"Name": "tag:gitlab-cfn:role", "Values": ["ami-builder"]}])["Reservations"]
            for i in r["Instances"]]


def test_bake_publishes_an_image_per_region_and_terminates_the_builder(local_aws):
    ec2 = local_aws.client("ec2", "us-east-1")
    builder = Builder(ec2, "success")
    builder.start()
    result = bake.bake(request(), local_aws, Progress(quiet=True))
    builder.join()

    assert result.source_image == GITLAB_AMI
    assert sorted(result.images) == ["ap-southeast-2", "eu-west-1", "us-east-1"]
    for region, image in result.images.items():
        regional = local_aws.client("ec2", region)
        (described,) = regional.describe_images(ImageIds=[image])["Images"]
        tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
        assert tags["gitlab-cfn:gitlab-version"] == "19.3.0"
        assert tags["gitlab-cfn:source-ami"] == GITLAB_AMI
        assert tags["gitlab-cfn:build-time"].endswith("+00:00")
        value = local_aws.client("ssm", region).get_parameter(Name="/gitlab-cfn/ami/gitlab")["Parameter"]["Value"]
        assert value == image
    assert len(set(result.images.values())) == 3  # a copy per region, not the same id
    assert [b["State"]["Name"] for b in builders(ec2)] == ["terminated"]
    assert [b["InstanceId"] for b in builders(ec2)] == [builder.instance]
    roles = local_aws.client("iam", "us-east-1").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith("gitlab-cfn-ami-builder-")]


def test_builder_may_only_report_its_result_on_builders(local_aws):
    document = json.loads(bake.BuilderProfile(None).policy().to_json())
    (statement,) = document["Statement"]
    assert statement["Action"] == ["ec2:CreateTags"]
    assert statement["Condition"]["StringEquals"] == {"ec2:ResourceTag/gitlab-cfn:role": "ami-builder"}
    assert statement["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["gitlab-cfn:bake"]}


def test_a_failed_install_terminates_the_builder_and_publishes_nothing(local_aws):
    ec2 = local_aws.client("ec2", "us-east-1")
    builder = Builder(ec2, "failed")
    builder.start()
    with pytest.raises(bake.BakeError, match=r"the install script failed on builder i-\w+ \(gitlab-cfn:bake=failed\)"):
        bake.bake(request(), local_aws, Progress(quiet=True))
    builder.join()
    assert [b["State"]["Name"] for b in builders(ec2)] == ["terminated"]
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    for region in ("us-east-1", "eu-west-1"):
        assert local_aws.client("ssm", region).get_parameters(Names=["/gitlab-cfn/ami/gitlab"])["Parameters"] == []
    roles = local_aws.client("iam", "us-east-1").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith("gitlab-cfn-ami-builder-")]


def test_a_builder_that_never_reports_times_out_and_is_terminated(local_aws):
    ec2 = local_aws.client("ec2", "us-east-1")
    with pytest.raises(bake.BakeError, match="reported nothing within"):
        bake.bake(request(timeout=1), local_aws, Progress(quiet=True))
    assert [b["State"]["Name"] for b in builders(ec2)] == ["terminated"]


def test_a_missing_source_image_is_a_clear_error_and_launches_nothing(local_aws):
    with pytest.raises(ConfigError) as err:
        bake.bake(request(gitlab_version="19.1.6"), local_aws, Progress(quiet=True))
    assert str(err.value) == ("--region: no GitLab EE 19.1.6 AMI from GitLab (owner 782774275127) in us-east-1; "
                              "check the version, or use --source ubuntu")
    assert builders(local_aws.client("ec2", "us-east-1")) == []


def test_ubuntu_source_installs_the_package_on_the_builder(local_aws):
    ec2 = local_aws.client("ec2", "us-east-1")
    builder = Builder(ec2, "success")
    builder.start()
    result = bake.bake(request(source="ubuntu", copy_regions=()), local_aws, Progress(quiet=True))
    builder.join()
    assert result.source_image == UBUNTU_AMI
    user_data = ec2.describe_instance_attribute(InstanceId=builder.instance, Attribute="userData")
    import base64

    text = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert "export BAKE_SOURCE='ubuntu'" in text and "export GITLAB_VERSION='19.3.0'" in text
    assert "install_gitlab_package" in text


@pytest.mark.parametrize(("field", "value", "message"), [
    ("gitlab_version", "18.5", "--gitlab-version: '18.5' is not a GitLab version X.Y.Z (for example 19.3.0)"),
    ("gitlab_version", "18.5.1", "--gitlab-version: GitLab 18.5.1 is not supported; gitlab-cfn supports "
                                 "18.11.x to 19.3.x (18.11, 19.0, 19.1, 19.2, 19.3)"),
    ("gitlab_version", "19.4.0", "--gitlab-version: GitLab 19.4.0 is not supported; gitlab-cfn supports "
                                 "18.11.x to 19.3.x (18.11, 19.0, 19.1, 19.2, 19.3)"),
    ("edition", "premium", "--edition: must be one of ee, ce (got 'premium')"),
    ("source", "amazon-linux", "--source: must be one of gitlab-ami, ubuntu (got 'amazon-linux')"),
    ("ssm_parameter", "gitlab-ami", "--ssm-parameter: must be a path starting with / (got 'gitlab-ami')"),
])
def test_bad_bake_arguments(field, value, message):
    with pytest.raises(ConfigError) as err:
        request(**{field: value})
    assert str(err.value) == message


def test_bake_ami_command_end_to_end(local_aws, standin):
    builder = Builder(local_aws.client("ec2", "us-east-1"), "success")
    builder.start()
    result = subprocess.run(
        [EXE, "bake-ami", "--endpoint-url", standin.endpoint, "--gitlab-version", "19.3.0",
         "--region", "us-east-1", "--copy-to", "eu-west-1", "--poll-seconds", "0.1", "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    builder.join()
    assert result.returncode == 0, result.stderr
    images = json.loads(result.stdout)["images"]
    assert sorted(images) == ["eu-west-1", "us-east-1"]
    assert "builder i-" in result.stderr and "terminated" in result.stderr
    assert "eu-west-1: /gitlab-cfn/ami/gitlab = ami-" in result.stderr

    missing = subprocess.run(
        [EXE, "bake-ami", "--endpoint-url", standin.endpoint, "--gitlab-version", "19.0.8", "--region", "us-east-1"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("no GitLab EE 19.0.8 AMI from GitLab (owner 782774275127) in us-east-1; "
                                           "check the version, or use --source ubuntu")


def test_unsupported_versions_are_refused_before_any_aws_call():
    # An endpoint nothing listens on: any AWS call would end in exit 1, not 2.
    result = subprocess.run(
        [EXE, "bake-ami", "--endpoint-url", "http://127.0.0.1:9", "--gitlab-version", "18.5.1", "--region", "us-east-1"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert result.returncode == 2
    assert result.stderr == ("gitlab-cfn: error: --gitlab-version: GitLab 18.5.1 is not supported; gitlab-cfn "
                             "supports 18.11.x to 19.3.x (18.11, 19.0, 19.1, 19.2, 19.3)\n")


def test_a_baked_image_has_the_builder_root_volume_size(local_aws):
    """The image's root snapshot is the builder's root volume: launches must be at least as big."""
    ec2 = local_aws.client("ec2", "us-east-1")
    builder = Builder(ec2, "success")
    builder.start()
    result = bake.bake(request(copy_regions=("eu-west-1",)), local_aws, Progress(quiet=True))
    builder.join()
    for region, image in result.images.items():
        (described,) = local_aws.client("ec2", region).describe_images(ImageIds=[image])["Images"]
        assert described["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == bake.ROOT_VOLUME_SIZE
