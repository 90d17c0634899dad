"""`gitlab-cfn deploy` updates through nested change sets, on the stand-in, with a small build.

The build is written by hand (a parent, an app tier with an Auto Scaling group, a Gitaly
tier with a pinned image, an instance and its volume) so that each test shows one thing:
the change set as AWS shapes it is walked into every nested stack, parameter-only changes
are seen, data is not replaced, and nothing runs unconfirmed.
"""

import hashlib
import json
import os
import pty
import subprocess

import pytest
import yaml
from test_cli import EXE

REGION = "eu-west-1"
OLDER_IMAGE, NEWER_IMAGE = "ami-0a11ab5e1c0de1842", "ami-0a11ab5e1c0de1851"   # GitLab 18.11.11, 19.3.0
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
ROOT = [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3", "Encrypted": True}}]


def _url(tier):
    return {"Fn::Sub": "https://${TemplateBucketName}.s3.${TemplateBucketRegion}.amazonaws.com/"
                       "${TemplateKeyPrefix}templates/" + tier + ".template.yaml"}


MAIN = {
    "Parameters": {
        "TemplateBucketName": {"Type": "String"}, "TemplateKeyPrefix": {"Type": "String"},
        "TemplateBucketRegion": {"Type": "String"},
        "AvailabilityZones": {"Type": "List<AWS::EC2::AvailabilityZone::Name>"},
        "GitLabAmiId": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/gitlab-cfn/ami/gitlab"},
        "GitalyAmiId": {"Type": "AWS::EC2::Image::Id", "Description": "Gitaly's image, pinned"},
        "AppInstanceType": {"Type": "String", "Default": "c5.xlarge", "AllowedValues": ["c5.xlarge", "c5.2xlarge"]},
    },
    "Resources": {
        "AppStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": _url("app"), "Parameters": {
            "ImageId": {"Ref": "GitLabAmiId"}, "InstanceType": {"Ref": "AppInstanceType"},
            "Zones": {"Fn::Join": [",", {"Ref": "AvailabilityZones"}]}}}},
        "GitalyStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": _url("gitaly"), "Parameters": {
            "ImageId": {"Ref": "GitalyAmiId"}, "Zone": {"Fn::Select": [0, {"Ref": "AvailabilityZones"}]}}}},
    },
    "Outputs": {"Group": {"Value": {"Fn::GetAtt": ["AppStack", "Outputs.Group"]}},
                "Gitaly": {"Value": {"Fn::GetAtt": ["GitalyStack", "Outputs.Server"]}}},
}
APP = {
    "Parameters": {"ImageId": {"Type": "AWS::EC2::Image::Id"}, "InstanceType": {"Type": "String"},
                   "Zones": {"Type": "CommaDelimitedList"}},
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.20.0.0/16"}},
        "Subnet": {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.20.1.0/24", "AvailabilityZone": {"Fn::Select": [0, {"Ref": "Zones"}]}}},
        "AppLaunchTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": {"Ref": "ImageId"}, "InstanceType": {"Ref": "InstanceType"}, "BlockDeviceMappings": ROOT}}},
        "AppGroup": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                     "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": 1, "MinInstancesInService": 1}},
                     "Properties": {"MinSize": "2", "MaxSize": "2", "VPCZoneIdentifier": [{"Ref": "Subnet"}],
                                    "LaunchTemplate": {"LaunchTemplateId": {"Ref": "AppLaunchTemplate"}, "Version": {
                                        "Fn::GetAtt": ["AppLaunchTemplate", "LatestVersionNumber"]}}}}},
    "Outputs": {"Group": {"Value": {"Ref": "AppGroup"}}},
}
GITALY = {
    "Parameters": {"ImageId": {"Type": "AWS::EC2::Image::Id"}, "Zone": {"Type": "String"}},
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.30.0.0/16"}},
        "Subnet": {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.30.1.0/24", "AvailabilityZone": {"Ref": "Zone"}}},
        "GitalyDataVolume": {"Type": "AWS::EC2::Volume", "DeletionPolicy": "Snapshot", "UpdateReplacePolicy": "Snapshot",
                             "Properties": {"AvailabilityZone": {"Ref": "Zone"}, "Size": 100}},
        "GitalyInstance": {"Type": "AWS::EC2::Instance", "Properties": {
            "ImageId": {"Ref": "ImageId"}, "InstanceType": "c5.xlarge", "SubnetId": {"Ref": "Subnet"},
            "BlockDeviceMappings": ROOT, "Volumes": [{"Device": "/dev/sdf", "VolumeId": {"Ref": "GitalyDataVolume"}}]}}},
    "Outputs": {"Server": {"Value": {"Ref": "GitalyInstance"}}},
}


@pytest.fixture
def build(tmp_path):
    out = tmp_path / "build"
    (out / "templates").mkdir(parents=True)
    entries = {}
    for tier, body in (("main", MAIN), ("app", APP), ("gitaly", GITALY)):
        text = yaml.safe_dump(body, sort_keys=False)
        path = f"templates/{tier}.template.yaml"
        (out / path).write_text(text)
        entries[tier] = {"path": path, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps({"templates": entries, "config": {"az_count": 2}}))
    return out


def deploy(standin, build, tmp_path, *extra, params=None, stdin=subprocess.DEVNULL):
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params or {"AvailabilityZones": "eu-west-1a,eu-west-1b"}))
    return subprocess.run([EXE, "deploy", "--build", str(build), "--poll-seconds", "0.2", "--endpoint-url",
                           standin.endpoint, "--stack-name", "site", "--region", REGION, "--params", str(path), *extra],
                          capture_output=True, text=True, env=ENV, timeout=180, stdin=stdin)


def image(local_aws, value):
    local_aws.client("ssm", REGION).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value=value, Type="String",
                                                 DataType="aws:ec2:image", Overwrite=True)


def stack(local_aws):
    found = local_aws.client("cloudformation", REGION).describe_stacks(StackName="site")["Stacks"][0]
    return ({p["ParameterKey"]: p["ParameterValue"] for p in found["Parameters"]},
            {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])})


def instances(local_aws, group):
    groups = local_aws.client("autoscaling", REGION).describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    ids = sorted(i["InstanceId"] for i in groups["AutoScalingGroups"][0]["Instances"])
    ec2 = local_aws.client("ec2", REGION)
    return {i["InstanceId"]: i["ImageId"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]}


def with_terminal(answer: str):
    """A pseudo-terminal as standard input, the answer already typed."""
    controller, terminal = pty.openpty()
    os.write(controller, answer.encode())
    return controller, terminal


def test_a_new_image_rolls_the_app_after_confirmation_and_leaves_the_pinned_gitaly(local_aws, standin, build, tmp_path):
    image(local_aws, OLDER_IMAGE)
    created = deploy(standin, build, tmp_path)
    assert created.returncode == 0, created.stderr
    # The pinned image, not given, comes from the SSM image parameter at creation, and says so.
    assert (f"GitalyAmiId = {OLDER_IMAGE} (not given: the image SSM parameter /gitlab-cfn/ami/gitlab names it)"
            in created.stderr)
    params, outputs = stack(local_aws)
    assert params["GitalyAmiId"] == OLDER_IMAGE
    group, gitaly = outputs["Group"], outputs["Gitaly"]
    before = instances(local_aws, group)
    assert set(before.values()) == {OLDER_IMAGE}

    # A re-baked image: the same build, only the value behind the SSM parameter changes.
    image(local_aws, NEWER_IMAGE)
    controller, terminal = with_terminal("n\n")
    try:
        declined = deploy(standin, build, tmp_path, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert declined.returncode == 1, declined.stderr
    lines = declined.stderr.splitlines()
    assert any("reusing the stack's previous values of AppInstanceType, GitLabAmiId, GitalyAmiId (GitalyAmiId="
               in line and line.endswith("; 2 at their default)") for line in lines)
    changes = [line.split("change: ", 1)[1] for line in lines if "change: " in line]
    assert changes == [
        "app: Modify  AppLaunchTemplate (AWS::EC2::LaunchTemplate): LaunchTemplateData (parameter ImageId)",
        "app: Modify  AppGroup (AWS::AutoScaling::AutoScalingGroup) [MAY BE REPLACED]: "
        "LaunchTemplate (may replace, refers to AppLaunchTemplate.LatestVersionNumber)",
    ]
    assert "execute these 2 changes to stack site? [y/N] n" in lines
    assert lines[-1] == "gitlab-cfn: error: the update of site was not confirmed; nothing was changed"
    assert instances(local_aws, group) == before

    # No terminal and no --yes: refused, one line, exit 2.
    unattended = deploy(standin, build, tmp_path)
    assert unattended.returncode == 2
    assert unattended.stderr.splitlines()[-1] == (
        "gitlab-cfn: error: --yes: no terminal to confirm the update on; nothing was changed; "
        "review the changes above and run again with --yes")
    cfn = local_aws.client("cloudformation", REGION)
    assert [c for c in cfn.list_change_sets(StackName="site")["Summaries"] if c["StackName"] == "site"] == []
    assert instances(local_aws, group) == before

    confirmed = deploy(standin, build, tmp_path, "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stderr.splitlines()[-1] == "stack site: UPDATE_COMPLETE"
    params, outputs = stack(local_aws)
    after = instances(local_aws, outputs["Group"])
    assert outputs["Group"] == group and set(after.values()) == {NEWER_IMAGE} and not set(after) & set(before)
    # Gitaly keeps its image and its server.
    assert (params["GitalyAmiId"], outputs["Gitaly"]) == (OLDER_IMAGE, gitaly)


def test_changed_zones_replacing_data_are_refused(local_aws, standin, build, tmp_path):
    image(local_aws, OLDER_IMAGE)
    assert deploy(standin, build, tmp_path).returncode == 0
    moved = deploy(standin, build, tmp_path, "--yes", params={"AvailabilityZones": "eu-west-1b,eu-west-1c"})
    assert moved.returncode == 1
    lines = moved.stderr.splitlines()
    changes = [line.split("change: ", 1)[1] for line in lines if "change: " in line]
    # The subnets' zone is create-only (registry schema): they are replaced, and the Gitaly
    # instance in its subnet with them; the volume's zone is not create-only for CloudFormation.
    assert "gitaly: Modify  Subnet (AWS::EC2::Subnet) [REPLACED]: AvailabilityZone (create-only, parameter Zone)" in changes
    assert ("gitaly: Modify  GitalyInstance (AWS::EC2::Instance) [MAY BE REPLACED, holds data]: "
            "SubnetId (create-only, refers to Subnet)") in changes
    assert lines[-1].startswith("gitlab-cfn: error: the change set would lose data: gitaly:GitalyInstance would be "
                                "replaced (conditionally) (SubnetId (create-only, refers to Subnet)); ")
    assert lines[-1].endswith("nothing was changed; allow it with --allow-replace TIER:LOGICAL_ID")
    params, _ = stack(local_aws)
    assert params["AvailabilityZones"] == "eu-west-1a,eu-west-1b"


def test_without_the_image_parameter_a_create_is_refused_before_anything_is_sent(local_aws, standin, build, tmp_path):
    refused = deploy(standin, build, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "gitlab-cfn: error: GitalyAmiId: not given, and SSM parameter /gitlab-cfn/ami/gitlab does not exist in "
        "eu-west-1; bake an image first (gitlab-cfn bake-ami) or give the image id in --params")
    assert local_aws.client("cloudformation", REGION).describe_stacks()["Stacks"] == []
    given = deploy(standin, build, tmp_path, params={"AvailabilityZones": "eu-west-1a,eu-west-1b",
                                                     "GitalyAmiId": OLDER_IMAGE, "GitLabAmiId": "/gitlab-cfn/ami/gitlab"})
    # GitLabAmiId's SSM parameter does not exist either (CloudFormation would refuse the create,
    # "Unable to fetch parameters"): deploy says so before anything is uploaded.
    assert given.returncode == 2, given.stderr
    assert given.stderr.splitlines()[-1].startswith(
        "gitlab-cfn: error: GitLabAmiId: SSM parameter /gitlab-cfn/ami/gitlab does not exist in eu-west-1; "
        "nothing was uploaded")
    assert local_aws.client("s3", REGION).list_buckets()["Buckets"] == []


def test_local_fills_the_pinned_image_like_the_other_demo_values(build):
    result = subprocess.run([EXE, "deploy", "--build", str(build), "--poll-seconds", "0.2", "--local",
                             "--stack-name", "demo", "--region", REGION],
                            capture_output=True, text=True, env=ENV, timeout=180)
    assert result.returncode == 0, result.stderr
    assert any(line.endswith("local value GitalyAmiId = ami-0a11ab5e1c0de1851") for line in result.stderr.splitlines())
    assert any(line.endswith("local value AvailabilityZones = eu-west-1a,eu-west-1b") for line in result.stderr.splitlines())
    assert result.stderr.splitlines()[-1] == "stack demo: CREATE_COMPLETE"
