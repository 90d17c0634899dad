"""Bastion and Gitaly tiers, and the launch templates every instance uses."""

import pytest
from conftest import props, resources, templates_for
from gitlab_cfn.compile import catalog


def launch_templates(t):
    for tier, template in t.items():
        for name, res in resources(template, "AWS::EC2::LaunchTemplate").items():
            yield tier, name, res["Properties"]["LaunchTemplateData"]


def test_every_launch_template_requires_imdsv2_and_encrypts_its_root(variant):
    _, _, t = variant
    found = list(launch_templates(t))
    assert found
    for tier, name, data in found:
        assert data["MetadataOptions"]["HttpTokens"] == "required", name
        (root,) = data["BlockDeviceMappings"]
        assert root["Ebs"]["Encrypted"] is True, name
        assert root["Ebs"]["VolumeType"] == "gp3"


def test_instances_launch_only_from_launch_templates(variant):
    _, _, t = variant
    for template in t.values():
        for name, inst in resources(template, "AWS::EC2::Instance").items():
            assert set(inst["Properties"]) <= {"LaunchTemplate", "SubnetId", "NetworkInterfaces", "Volumes",
                                               "UserData", "Tags", "ImageId", "InstanceType",
                                               "IamInstanceProfile", "SecurityGroupIds"}, name
            assert "LaunchTemplate" in inst["Properties"], name


def test_key_pair_only_when_asked():
    with_key = templates_for({})
    without = templates_for({"ssh_key_pair": False})
    # Never on the Gitaly server: a new key pair would replace it (KeyName is create-only).
    assert all(data["KeyName"] == {"Ref": "KeyPairName"} for tier, _, data in launch_templates(with_key)
               if tier != "gitaly")
    assert "KeyPairName" not in with_key["gitaly"]["Parameters"]
    assert all("KeyName" not in data for *_, data in launch_templates(without))
    assert "KeyPairName" not in without["main"]["Parameters"]
    assert with_key["main"]["Parameters"]["KeyPairName"]["Type"] == "AWS::EC2::KeyPair::KeyName"


def test_bastions_a_and_b_in_the_first_two_public_subnets(default):
    bastion = default["bastion"]
    assert props(bastion, "BastionA")["NetworkInterfaces"][0]["SubnetId"] == {"Ref": "PublicSubnet1Id"}
    assert props(bastion, "BastionB")["NetworkInterfaces"][0]["SubnetId"] == {"Ref": "PublicSubnet2Id"}
    for host in ("A", "B"):
        assert props(bastion, f"Bastion{host}Eip")["InstanceId"] == {"Ref": f"Bastion{host}"}
    params = default["main"]["Parameters"]
    assert params["BastionInstanceType"]["Default"] == "t3.micro"
    assert params["BastionAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert "/ubuntu/server/24.04/" in params["BastionAmiId"]["Default"]
    role = props(bastion, "BastionRole")
    assert [a["Fn::Sub"].rsplit("/", 1)[1] for a in role["ManagedPolicyArns"]] == ["AmazonSSMManagedInstanceCore"]
    assert "Policies" not in role


def test_bastions_can_be_left_out():
    t = templates_for({"bastions": False})
    assert "bastion" not in t
    assert "BastionStack" not in t["main"]["Resources"]
    assert not [n for n in t["main"]["Parameters"] if n.startswith("Bastion")]


def test_gitaly_server_in_the_first_private_subnet(default):
    gitaly = default["gitaly"]
    instance = props(gitaly, "GitalyInstance")
    assert instance["SubnetId"] == {"Ref": "PrivateSubnet1Id"}
    assert instance["InstanceType"] == {"Ref": "GitalyInstanceType"}
    assert instance["SecurityGroupIds"] == [{"Ref": "GitalySecurityGroupId"}]
    assert instance["IamInstanceProfile"] == {"Ref": "GitalyInstanceProfile"}
    assert default["main"]["Parameters"]["GitalyInstanceType"]["Default"] == "c5.xlarge"


def _create_only(resource_type):
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return {p.removeprefix("/properties/") for p in schema["createOnlyProperties"]}


def test_gitaly_is_never_replaced_by_an_upgrade(variant):
    """What an upgrade or a settings change can touch is never a create-only property of the
    Gitaly server (per the registry schema shipped with cfn-lint), and its launch template holds
    nothing that can change, so its version stays the same."""
    _, _, t = variant
    gitaly, main = t["gitaly"], t["main"]
    create_only = _create_only("AWS::EC2::Instance")
    assert {"ImageId", "KeyName", "LaunchTemplate", "SubnetId"} <= create_only
    instance = props(gitaly, "GitalyInstance")
    assert instance["ImageId"] == {"Ref": "GitalyAmiId"}
    assert main["Parameters"]["GitalyAmiId"]["Type"] == "AWS::EC2::Image::Id"   # pinned, not SSM-typed
    assert "Default" not in main["Parameters"]["GitalyAmiId"]
    assert "pinned" in main["Parameters"]["GitalyAmiId"]["Description"]
    # Used by the Gitaly tier only.
    users = [tier for tier, template in t.items() if tier != "main" and "GitalyAmiId" in template.get("Parameters", {})]
    assert users == ["gitaly"]
    assert "GitLabAmiId" not in gitaly["Parameters"] and "KeyPairName" not in gitaly["Parameters"]
    # The launch template holds only constants: no Ref, no Sub over a parameter but the stack's name.
    data = props(gitaly, "GitalyLaunchTemplate")["LaunchTemplateData"]
    assert set(data) == {"BlockDeviceMappings", "MetadataOptions", "Monitoring", "TagSpecifications"}
    assert "Ref" not in str(data).replace("'Ref': 'ParentStackName'", "")


def test_gitaly_user_data_does_not_name_the_bundle(default):
    """The user data of the Gitaly server never changes with a new build (a change would stop
    and start it without running it again): it names the SSM parameter that does."""
    instance = props(default["gitaly"], "GitalyInstance")
    _, variables = instance["UserData"]["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"]
    assert variables["BUNDLE_PARAMETER"] == {"Ref": "GitalyBootBundleParameter"}
    assert not [n for n in variables if n.startswith("BUNDLE_") and n != "BUNDLE_PARAMETER"]
    parameter = default["gitaly"]["Resources"]["GitalyBootBundleParameter"]
    assert parameter["Type"] == "AWS::SSM::Parameter" and parameter["Properties"]["Type"] == "String"
    assert parameter["Properties"]["Name"] == {"Fn::Sub": "/gitlab-cfn/${ParentStackName}/gitaly/boot-bundle"}
    assert default["main"]["Outputs"]["GitalyBootBundleParameterName"]["Value"] == {
        "Fn::GetAtt": ["GitalyStack", "Outputs.GitalyBootBundleParameterName"]}


def test_each_server_reads_exactly_the_bundles_and_its_own_parameter(default):
    for tier, logical, role, parameter in (
            ("gitaly", "GitalyBootRead", {"Ref": "GitalyRole"}, "gitaly"),
            ("app", "AppBootRead", {"Ref": "InstanceRoleName"}, "gitlab-app"),
            ("bastion", "BastionBootRead", {"Ref": "BastionRole"}, "bastion")):
        grant = props(default[tier], logical)
        assert grant["Roles"] == [role]
        read, location = grant["PolicyDocument"]["Statement"]
        assert read["Action"] == ["s3:GetObject"]
        assert read["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:s3:::${TemplateBucketName}/"
                                                "${TemplateKeyPrefix}scripts/boot-*"}]
        assert location["Action"] == ["ssm:GetParameter"]
        assert location["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                                                    f"parameter/gitlab-cfn/${{ParentStackName}}/{parameter}/boot-bundle"}]


def test_every_gitlab_server_root_is_at_least_the_image(variant):
    from gitlab_cfn.compile.images import IMAGE_ROOT_GIB

    _, _, t = variant
    (root,) = props(t["gitaly"], "GitalyLaunchTemplate")["LaunchTemplateData"]["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeSize"] == IMAGE_ROOT_GIB
    assert t["main"]["Parameters"]["AppRootVolumeSize"]["MinValue"] == IMAGE_ROOT_GIB


def test_gitaly_data_volume_follows_the_guide_and_is_kept(default):
    volume = default["gitaly"]["Resources"]["GitalyDataVolume"]
    p = volume["Properties"]
    assert p["VolumeType"] == "io1" and p["Encrypted"] is True
    assert p["AvailabilityZone"] == {"Fn::Select": [0, {"Ref": "AvailabilityZones"}]}
    params = default["main"]["Parameters"]
    assert (params["GitalyVolumeSize"]["Default"], params["GitalyVolumeIops"]["Default"]) == (20, 1000)
    assert volume["DeletionPolicy"] == volume["UpdateReplacePolicy"] == "Snapshot"
    attach = props(default["gitaly"], "GitalyInstance")["Volumes"]
    assert attach == [{"Device": "/dev/sdf", "VolumeId": {"Ref": "GitalyDataVolume"}}]


def test_gitaly_gp3_volume():
    t = templates_for({"gitaly": {"volume_type": "gp3"}})
    p = props(t["gitaly"], "GitalyDataVolume")
    assert p["VolumeType"] == "gp3" and p["Throughput"] == 250
    assert t["main"]["Parameters"]["GitalyVolumeIops"]["MinValue"] == 3000


def test_gitaly_token_readable_by_gitaly_and_the_application(default):
    grant = props(default["gitaly"], "GitalyTokenSecretRead")
    assert grant["Roles"] == [{"Ref": "GitalyRole"}, {"Ref": "InstanceRoleName"}]
    assert default["gitaly"]["Outputs"]["GitalyAddress"]["Value"] == {
        "Fn::Sub": ["tcp://${Ip}:8075", {"Ip": {"Fn::GetAtt": ["GitalyInstance", "PrivateIp"]}}]}


@pytest.mark.parametrize("param", ["AppInstanceType", "GitalyInstanceType"])
def test_gitlab_servers_are_never_burstable(default, param):
    allowed = default["main"]["Parameters"][param]["AllowedValues"]
    assert allowed == list(catalog.GITLAB_INSTANCE_TYPES)
    assert not [t for t in allowed if t.startswith("t")]
