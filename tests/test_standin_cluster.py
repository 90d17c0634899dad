"""The stand-in's patches for the sizes beyond the POC (standin/cluster.py), one test each,
and the offline deploy of every size's whole nested stack.

Each patch test deploys a small template through the running server over HTTP, as
tests/test_standin.py does; test_standin's ``test_every_patch_has_a_test`` finds these
tests here too.
"""

from __future__ import annotations

import json

import pytest
from gitlab_cfn.compile import compiler, config, sizes
from gitlab_cfn.operate.deploy import first_failure
from test_deploy import deploy_cmd
from test_standin import REGION, deploy, failed_events, outputs

VPC = {
    "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
    "SubnetA": {"Type": "AWS::EC2::Subnet", "Properties": {
        "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.0.1.0/24", "AvailabilityZone": f"{REGION}a"}},
    "SubnetB": {"Type": "AWS::EC2::Subnet", "Properties": {
        "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.0.3.0/24", "AvailabilityZone": f"{REGION}b"}},
}


def test_patch_network_load_balancer_from_template(local_aws):
    long_stack = "gitlab-production-platform-team-gitalystack"
    template = {"Resources": {
        **VPC,
        "Nlb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
            "Type": "network", "Scheme": "internal", "Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}],
            "LoadBalancerAttributes": [{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}]}},
        "Targets": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
            "Protocol": "TCP", "Port": 2305, "VpcId": {"Ref": "Vpc"}, "HealthCheckProtocol": "TCP",
            "TargetGroupAttributes": [{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]}},
        "Listener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {
            "LoadBalancerArn": {"Ref": "Nlb"}, "Port": 2305, "Protocol": "TCP",
            "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "Targets"}}]}},
    }, "Outputs": {"Dns": {"Value": {"Fn::GetAtt": ["Nlb", "DNSName"]}}, "Arn": {"Value": {"Ref": "Nlb"}},
                   "Group": {"Value": {"Ref": "Targets"}}}}
    cfn, stack = deploy(local_aws, template, name=long_stack)
    # Stock moto made an application load balancer, which refuses the TCP listener.
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    elb = local_aws.client("elbv2", REGION)
    (nlb,) = elb.describe_load_balancers(LoadBalancerArns=[outputs(stack)["Arn"]])["LoadBalancers"]
    assert (nlb["Type"], nlb["Scheme"]) == ("network", "internal")
    assert len(nlb["LoadBalancerName"]) <= 32 and not nlb["LoadBalancerName"].endswith("-")
    attributes = {a["Key"]: a["Value"] for a in
                  elb.describe_load_balancer_attributes(LoadBalancerArn=nlb["LoadBalancerArn"])["Attributes"]}
    assert attributes["load_balancing.cross_zone.enabled"] == "true"
    (group,) = elb.describe_target_groups(TargetGroupArns=[outputs(stack)["Group"]])["TargetGroups"]
    assert len(group["TargetGroupName"]) <= 32 and group["HealthCheckProtocol"] == "TCP"
    attributes = {a["Key"]: a["Value"] for a in
                  elb.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "30"
    (listener,) = elb.describe_listeners(LoadBalancerArn=nlb["LoadBalancerArn"])["Listeners"]
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 2305)


def _redis(parameter_group: dict, engine_version: str = "7.1") -> dict:
    return {"Resources": {
        **VPC,
        "Subnets": {"Type": "AWS::ElastiCache::SubnetGroup", "Properties": {
            "Description": "probe", "SubnetIds": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}]}},
        "Params": {"Type": "AWS::ElastiCache::ParameterGroup", "Properties": parameter_group},
        "Redis": {"Type": "AWS::ElastiCache::ReplicationGroup", "Properties": {
            "ReplicationGroupDescription": "probe", "Engine": "redis", "EngineVersion": engine_version,
            "CacheNodeType": "cache.m5.large", "NumCacheClusters": 2, "AutomaticFailoverEnabled": True,
            "CacheSubnetGroupName": {"Ref": "Subnets"}, "CacheParameterGroupName": {"Ref": "Params"}}},
    }, "Outputs": {"Params": {"Value": {"Ref": "Params"}}, "Redis": {"Value": {"Ref": "Redis"}}}}


GOOD_GROUP = {"CacheParameterGroupFamily": "redis7", "Description": "cache",
              "Properties": {"maxmemory-policy": "allkeys-lru"}}


def test_patch_cache_parameter_groups(local_aws):
    # Stock moto: "the stand-in cannot create AWS::ElastiCache::ParameterGroup".
    cfn, stack = deploy(local_aws, _redis(GOOD_GROUP))
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    (group,) = local_aws.client("elasticache", REGION).describe_replication_groups(
        ReplicationGroupId=outputs(stack)["Redis"])["ReplicationGroups"]
    assert outputs(stack)["Params"]
    # Refused as ElastiCache refuses them: an eviction policy Redis does not have, a family
    # that does not exist, a family that is not the engine's.
    bad = [({**GOOD_GROUP, "Properties": {"maxmemory-policy": "allkeys-newest"}}, "7.1", "maxmemory-policy"),
           ({**GOOD_GROUP, "CacheParameterGroupFamily": "redis9"}, "7.1", "unknown cache parameter group family"),
           (GOOD_GROUP, "6.2", "does not match engine version 6.2")]
    for n, (params, version, reason) in enumerate(bad):
        cfn, stack = deploy(local_aws, _redis(params, version), name=f"bad{n}")
        assert stack["StackStatus"] in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED"), stack["StackStatus"]
        assert any(reason in why for _, why in failed_events(cfn, stack["StackId"])), failed_events(cfn, stack["StackId"])


# -- the offline deploy of every size --------------------------------------------------------------

# Each size once; the AZ counts alternate, so both are deployed with and without a cluster.
DEPLOYS = [("2k", 2), ("3k", 3), ("5k", 2), ("10k", 3), ("25k", 2), ("50k", 3)]


def _seed(local_aws, region: str) -> dict:
    local_aws.client("ec2", region).create_key_pair(KeyName="ops")
    arn = local_aws.client("acm", region).request_certificate(DomainName="gitlab.example.test")["CertificateArn"]
    local_aws.client("ssm", region).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value="ami-0a11ab5e1c0de1851",
                                                 Type="String")
    return {"DomainName": "gitlab.example.test", "CertificateArn": arn, "GitSshCIDR": "203.0.113.0/24",
            "RemoteAccessCIDR": "198.51.100.0/24", "KeyPairName": "ops"}


@pytest.mark.parametrize("size, az", DEPLOYS)
def test_every_size_deploys_offline(size, az, local_aws, standin, tmp_path):
    region = "eu-west-1"
    build = tmp_path / "build"
    cfg = config.from_dict({"size": size, "az_count": az})
    compiler.write_build(cfg, build)
    params = tmp_path / "params.json"
    zones = ",".join(f"{region}{z}" for z in "abc"[:az])
    params.write_text(json.dumps({**_seed(local_aws, region), "AvailabilityZones": zones}))
    run = deploy_cmd("--endpoint-url", standin.endpoint, "--stack-name", f"s{size}", "--region", region,
                     "--params", str(params), build=build)
    cfn = local_aws.client("cloudformation", region)
    assert run.returncode == 0, (run.stderr[-2000:], first_failure(cfn, f"s{size}"))
    out = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=f"s{size}")["Stacks"][0]["Outputs"]}
    row = sizes.SIZES[size]

    autoscaling = local_aws.client("autoscaling", region)
    (sidekiq,) = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[out["SidekiqAutoScalingGroupName"]])["AutoScalingGroups"]
    assert (sidekiq["MinSize"], len(sidekiq["Instances"])) == (row.sidekiq[0], row.sidekiq[0])
    groups = local_aws.client("elasticache", region).describe_replication_groups()["ReplicationGroups"]
    assert len(groups) == (2 if row.separate_cache else 1)
    ec2 = local_aws.client("ec2", region)
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
               if i["State"]["Name"] == "running"]
    gitaly = [i for i in running if any(t["Key"] == "Name" and "-gitaly" in t["Value"] for t in i.get("Tags", []))]
    assert len(gitaly) == row.gitaly[0]
    if row.cluster:
        # One server per AZ first, round the AZs.
        assert len({i["Placement"]["AvailabilityZone"] for i in gitaly}) == min(az, row.gitaly[0])
        (praefect,) = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[out["PraefectAutoScalingGroupName"]])["AutoScalingGroups"]
        assert len(praefect["Instances"]) == row.praefect[0]
        elb = local_aws.client("elbv2", region)
        (nlb,) = [b for b in elb.describe_load_balancers()["LoadBalancers"] if b["Type"] == "network"]
        assert nlb["Scheme"] == "internal"
        assert out["GitalyAddress"] == f"tcp://{nlb['DNSName']}:2305"
        (group,) = elb.describe_target_groups(LoadBalancerArn=nlb["LoadBalancerArn"])["TargetGroups"]
        assert (group["Protocol"], group["Port"]) == ("TCP", 2305)
        secrets = local_aws.client("secretsmanager", region)
        token = secrets.get_secret_value(SecretId=out["GitalyTokenSecretArn"])["SecretString"]
        assert "Praefect external token" in secrets.describe_secret(SecretId=out["GitalyTokenSecretArn"])["Description"]
        assert len(json.loads(token)["token"]) == 64
