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
                                               "UserData", "Tags"}, name
            assert "LaunchTemplate" in inst["Properties"], name


def test_key_pair_only_when_asked():
    with_key = templates_for({})
    without = templates_for({"ssh_key_pair": False})
    assert all(data["KeyName"] == {"Ref": "KeyPairName"} for *_, data in launch_templates(with_key))
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
    assert props(gitaly, "GitalyInstance")["SubnetId"] == {"Ref": "PrivateSubnet1Id"}
    data = props(gitaly, "GitalyLaunchTemplate")["LaunchTemplateData"]
    assert data["InstanceType"] == {"Ref": "GitalyInstanceType"}
    assert data["SecurityGroupIds"] == [{"Ref": "GitalySecurityGroupId"}]
    assert default["main"]["Parameters"]["GitalyInstanceType"]["Default"] == "c5.xlarge"


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
