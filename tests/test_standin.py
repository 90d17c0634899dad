"""The local AWS stand-in: a real server process, and one test per patch it applies.

Every test talks to the server over HTTP with boto3, as to AWS, by deploying a
small template that needs the patch.
"""

import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from gitlab_cfn.standin import patches_source

REGION = "eu-west-1"


def deploy(local_aws, template: dict, name: str = "probe", parameters: dict | None = None, region: str = REGION):
    cfn = local_aws.client("cloudformation", region)
    stack_id = cfn.create_stack(StackName=name, TemplateBody=json.dumps(template),
                                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
                                Capabilities=["CAPABILITY_IAM"])["StackId"]
    return cfn, cfn.describe_stacks(StackName=stack_id)["Stacks"][0]


def outputs(stack) -> dict:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def failed_events(cfn, stack_id):
    return [(e["LogicalResourceId"], e.get("ResourceStatusReason", "")) for e in
            cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
            if e["ResourceStatus"] == "CREATE_FAILED" and e["LogicalResourceId"] != e["StackName"]]


def test_the_stand_in_is_a_real_server_on_loopback(standin):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", standin.endpoint)
    assert standin.process.poll() is None
    with urllib.request.urlopen(f"{standin.endpoint}/moto-api/", timeout=5) as response:
        assert response.status == 200
    log = standin.log.read_text()
    assert "gitlab-cfn stand-in: moto with patches" in log


def test_a_stopped_standin_leaves_no_log_behind():
    from gitlab_cfn.standin import StandIn

    server = StandIn()
    with server:
        assert server.log.exists()
    assert not server.log.exists()


def test_without_the_standin_the_suite_stops_with_one_message(tmp_path):
    """pytest run by hand before `make standin`: one line naming it, not an error per test."""
    import subprocess
    import sys

    # A temporary folder of its own: other stand-ins on this machine (a parallel run) write
    # their logs to the shared one.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "GITLAB_CFN_STANDIN_VENV": str(tmp_path / "no-venv"), "TMPDIR": str(scratch)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_standin.py",
                          "tests/test_deploy.py", "-k", "patch_fail_loudly or deploy_local_end_to_end"],
                         cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 3, run.stdout[-2000:]
    assert not list(scratch.glob("gitlab-cfn-standin-*.log"))
    assert run.stdout.count("run 'make standin'") == 1, run.stdout[-2000:]
    assert " error" not in run.stdout.splitlines()[-1]


def test_every_patch_has_a_test():
    names = re.findall(r"^def (\w+)\(\) -> None:", patches_source(), flags=re.M)
    # Here, and in the test files of the modules that register patches of their own.
    sources = [Path(__file__)] + sorted(Path(__file__).parent.glob("test_standin_*.py"))
    tested = {n for p in sources for n in re.findall(r"^def test_patch_(\w+)\(", p.read_text(), flags=re.M)}
    assert set(names) == tested


def test_patch_fail_loudly_on_unsupported_types(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"},
        "Mystery": {"Type": "AWS::Foo::Bar", "Properties": {}}}})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert failed_events(cfn, stack["StackId"]) == [("Mystery", "the stand-in cannot create AWS::Foo::Bar")]


def test_patch_failed_create_rolls_back(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        "Broken": {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": "vpc-does-not-exist", "CidrBlock": "10.0.0.0/24"}}}})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    ((logical, reason),) = failed_events(cfn, stack["StackId"])
    assert logical == "Broken" and "vpc-does-not-exist" in reason
    # Rolled back: the VPC created before the failure is gone, and the stack deletes cleanly.
    assert [v for v in local_aws.client("ec2", REGION).describe_vpcs()["Vpcs"] if v.get("CidrBlock") == "10.0.0.0/16"
            and not v.get("IsDefault")] == []
    cfn.delete_stack(StackName=stack["StackId"])
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"


def _child_template(local_aws, body: dict) -> str:
    s3 = local_aws.client("s3", REGION)
    s3.create_bucket(Bucket="child-templates", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="child-templates", Key="child.yaml", Body=json.dumps(body))
    return f"https://child-templates.s3.{REGION}.amazonaws.com/child.yaml"


def test_patch_nested_stack_outputs(local_aws):
    url = _child_template(local_aws, {"Resources": {"Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.9.0.0/16"}}},
                                      "Outputs": {"VpcId": {"Value": {"Ref": "Vpc"}}}})
    _, stack = deploy(local_aws, {"Resources": {"Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": url}}},
                                  "Outputs": {"FromChild": {"Value": {"Fn::GetAtt": ["Child", "Outputs.VpcId"]}}}}, name="parent")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(stack)["FromChild"].startswith("vpc-")
    names = [s["StackName"] for s in local_aws.client("cloudformation", REGION).describe_stacks()["Stacks"]]
    assert any(re.fullmatch(r"parent-Child-[A-Z0-9]{12}", n) for n in names), names


def test_patch_deleted_stacks_stay_deleted(local_aws):
    url = _child_template(local_aws, {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                                      "Outputs": {"Topic": {"Value": {"Ref": "Topic"}}}})
    cfn, stack = deploy(local_aws, {"Resources": {"Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": url}}},
                                    "Outputs": {"Topic": {"Value": {"Fn::GetAtt": ["Child", "Outputs.Topic"]}}}}, name="gone")
    cfn.delete_stack(StackName=stack["StackId"])
    cfn.list_stack_resources(StackName=stack["StackId"])
    cfn.describe_stacks(StackName=stack["StackId"])
    alive = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert alive == []


def test_patch_network_resources_deleted(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.4.0.0/16"}},
        "Igw": {"Type": "AWS::EC2::InternetGateway"},
        "Attach": {"Type": "AWS::EC2::VPCGatewayAttachment", "Properties": {"VpcId": {"Ref": "Vpc"}, "InternetGatewayId": {"Ref": "Igw"}}},
        "Public": {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.4.0.0/24", "AvailabilityZone": "eu-west-1a"}},
        "Table": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": {"Ref": "Vpc"}}},
        "Default": {"Type": "AWS::EC2::Route", "DependsOn": "Attach", "Properties": {
            "RouteTableId": {"Ref": "Table"}, "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": {"Ref": "Igw"}}},
        "Assoc": {"Type": "AWS::EC2::SubnetRouteTableAssociation", "Properties": {"SubnetId": {"Ref": "Public"}, "RouteTableId": {"Ref": "Table"}}},
        "Eip": {"Type": "AWS::EC2::EIP", "Properties": {"Domain": "vpc"}},
        "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {"SubnetId": {"Ref": "Public"}, "AllocationId": {"Fn::GetAtt": ["Eip", "AllocationId"]}}},
        "Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g", "VpcId": {"Ref": "Vpc"}}}},
        "Outputs": {"Vpc": {"Value": {"Ref": "Vpc"}}}})
    vpc = outputs(stack)["Vpc"]
    cfn.delete_stack(StackName=stack["StackId"])
    ec2 = local_aws.client("ec2", REGION)
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Vpcs"] == []
    assert [n for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] not in ("deleted", "deleting")] == []
    assert ec2.describe_addresses()["Addresses"] == []


def test_patch_dynamic_references(local_aws):
    secrets = local_aws.client("secretsmanager", REGION)
    arn = secrets.create_secret(Name="db", SecretString=json.dumps({"password": "s3cr3t-value"}))["ARN"]
    local_aws.client("ssm", REGION).put_parameter(Name="/probe/cidr", Value="10.7.0.0/16", Type="String")
    _, stack = deploy(local_aws, {"Resources": {"Vpc": {"Type": "AWS::EC2::VPC", "Properties": {
        "CidrBlock": "{{resolve:ssm:/probe/cidr}}",
        "Tags": [{"Key": "pw", "Value": f"{{{{resolve:secretsmanager:{arn}:SecretString:password}}}}"}]}}},
        "Outputs": {"Vpc": {"Value": {"Ref": "Vpc"}}}})
    vpc = local_aws.client("ec2", REGION).describe_vpcs(VpcIds=[outputs(stack)["Vpc"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.7.0.0/16"
    assert {t["Key"]: t["Value"] for t in vpc["Tags"]}["pw"] == "s3cr3t-value"


def test_patch_availability_zones_of_the_region(local_aws):
    _, stack = deploy(local_aws, {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                                  "Outputs": {"Az": {"Value": {"Fn::Select": [1, {"Fn::GetAZs": ""}]}}}})
    assert outputs(stack)["Az"] == "eu-west-1b"


def test_patch_elb_canonical_hosted_zone(local_aws):
    _, stack = deploy(local_aws, {"Resources": {"Lb": {"Type": "AWS::ElasticLoadBalancing::LoadBalancer", "Properties": {
        "AvailabilityZones": ["eu-west-1a"],
        "Listeners": [{"LoadBalancerPort": "80", "InstancePort": "80", "Protocol": "HTTP"}]}}},
        "Outputs": {"Zone": {"Value": {"Fn::GetAtt": ["Lb", "CanonicalHostedZoneNameID"]}}}})
    # The Classic Load Balancer zone AWS publishes for eu-west-1 (Elastic Load Balancing
    # endpoints and quotas, AWS General Reference), not another region's.
    assert outputs(stack)["Zone"] == "Z32O12XQLNTSW2"


def test_patch_kms_key_policy_as_document(local_aws):
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                                                      "Action": "kms:*", "Resource": "*"}]}
    _, stack = deploy(local_aws, {"Resources": {"Key": {"Type": "AWS::KMS::Key", "Properties": {
        "KeyPolicy": policy, "Tags": [{"Key": "team", "Value": "platform"}]}}},
        "Outputs": {"Key": {"Value": {"Ref": "Key"}}}})
    kms = local_aws.client("kms", REGION)
    key = outputs(stack)["Key"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    assert json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]) == policy
    assert kms.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "team", "TagValue": "platform"}]


def test_patch_missing_ssm_parameter(local_aws):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        deploy(local_aws, {"Parameters": {"Ami": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                                                  "Default": "/no/such/parameter"}},
                           "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert "/no/such/parameter" in str(err.value)


def test_patch_public_ssm_parameters(local_aws):
    name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    _, stack = deploy(local_aws, {"Parameters": {"Ami": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                                                         "Default": name}},
                                  "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                                  "Outputs": {"Ami": {"Value": {"Ref": "Ami"}}}})
    image = outputs(stack)["Ami"]
    described = local_aws.client("ec2", REGION).describe_images(ImageIds=[image])["Images"][0]
    assert described["OwnerId"] == "099720109477" and "ubuntu-noble-24.04" in described["Name"]


def test_patch_snapshot_deletion_policy(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {"Data": {
        "Type": "AWS::EC2::Volume", "DeletionPolicy": "Snapshot",
        "Properties": {"AvailabilityZone": "eu-west-1a", "Size": 20, "Encrypted": True}}},
        "Outputs": {"Volume": {"Value": {"Ref": "Data"}}}})
    volume = outputs(stack)["Volume"]
    cfn.delete_stack(StackName=stack["StackId"])
    ec2 = local_aws.client("ec2", REGION)
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume]}])["Volumes"] == []
    assert [s["VolumeId"] for s in ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [volume]}])["Snapshots"]] == [volume]


def test_patch_s3_bucket_properties(local_aws):
    deploy(local_aws, {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
        "BucketName": "gl-probe",
        "Tags": [{"Key": "team", "Value": "platform"}],
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True}}}}})
    s3 = local_aws.client("s3", REGION)
    assert s3.get_bucket_tagging(Bucket="gl-probe")["TagSet"] == [{"Key": "team", "Value": "platform"}]
    assert s3.get_bucket_versioning(Bucket="gl-probe")["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket="gl-probe")["PublicAccessBlockConfiguration"].values())


def test_patch_generated_identifiers(local_aws):
    long_name = "gitlab-production-platform-team-eu-west-1-databasestack"
    _, stack = deploy(local_aws, {"Resources": {"Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
        "Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100",
        "MasterUsername": "gitlab", "MasterUserPassword": "not-a-real-password-1"}}},
        "Outputs": {"Id": {"Value": {"Ref": "Database"}}}}, name=long_name)
    identifier = outputs(stack)["Id"]
    assert len(identifier) <= 63 and identifier == identifier.lower() and "--" not in identifier


def test_patch_rds_deletion_protection(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {"Database": {
        "Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "Properties": {
            "Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100",
            "MasterUsername": "gitlab", "MasterUserPassword": "not-a-real-password-1", "DeletionProtection": True}}},
        "Outputs": {"Id": {"Value": {"Ref": "Database"}}}}, name="protected")
    identifier = outputs(stack)["Id"]
    rds = local_aws.client("rds", REGION)
    assert rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["DeletionProtection"] is True
    cfn.delete_stack(StackName=stack["StackId"])
    failed = cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]
    assert failed["StackStatus"] == "DELETE_FAILED"
    reasons = [e.get("ResourceStatusReason") for e in cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"]]
    assert any("protected DB Instance" in (r or "") for r in reasons)
    rds.modify_db_instance(DBInstanceIdentifier=identifier, DeletionProtection=False, ApplyImmediately=True)
    cfn.delete_stack(StackName=stack["StackId"])
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    snapshots = rds.describe_db_snapshots(DBInstanceIdentifier=identifier)["DBSnapshots"]
    assert f"{identifier}-final-snapshot" in [s["DBSnapshotIdentifier"] for s in snapshots]


def test_patch_rds_parameter_group_ref(local_aws):
    _, stack = deploy(local_aws, {"Resources": {"Params": {"Type": "AWS::RDS::DBParameterGroup", "Properties": {
        "Description": "probe", "Family": "postgres17", "Parameters": {"rds.force_ssl": "1"}}}},
        "Outputs": {"Name": {"Value": {"Ref": "Params"}}}})
    name = outputs(stack)["Name"]
    groups = local_aws.client("rds", REGION).describe_db_parameter_groups(DBParameterGroupName=name)["DBParameterGroups"]
    assert groups[0]["DBParameterGroupFamily"] == "postgres17"


def test_patch_instance_launch_template_and_network(local_aws):
    ec2 = local_aws.client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.5.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]
    _, stack = deploy(local_aws, {"Resources": {
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": "ami-0a11ab5e1c0de1851", "InstanceType": "c5.xlarge"}}},
        "Data": {"Type": "AWS::EC2::Volume", "Properties": {"AvailabilityZone": "eu-west-1a", "Size": 20}},
        "Server": {"Type": "AWS::EC2::Instance", "Properties": {
            "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"},
                               "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}},
            "NetworkInterfaces": [{"DeviceIndex": "0", "SubnetId": subnet}],
            "Volumes": [{"Device": "/dev/sdf", "VolumeId": {"Ref": "Data"}}]}}},
        "Outputs": {"Server": {"Value": {"Ref": "Server"}}}})
    instance = ec2.describe_instances(InstanceIds=[outputs(stack)["Server"]])["Reservations"][0]["Instances"][0]
    assert (instance["ImageId"], instance["InstanceType"], instance["SubnetId"]) == ("ami-0a11ab5e1c0de1851", "c5.xlarge", subnet)
    assert "/dev/sdf" in [m["DeviceName"] for m in instance["BlockDeviceMappings"]]


def test_patch_resource_models(local_aws):
    """Types stock moto skips are created in moto's own backends."""
    ec2 = local_aws.client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.6.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.6.{i}.0/24", AvailabilityZone=f"eu-west-1{z}")["Subnet"]["SubnetId"]
               for i, z in ((1, "a"), (2, "b"))]
    _, stack = deploy(local_aws, {"Resources": {
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {"GenerateSecretString": {
            "SecretStringTemplate": "{\"username\": \"gitlab\"}", "GenerateStringKey": "password",
            "PasswordLength": 40, "ExcludePunctuation": True}}},
        # (SecretTargetAttachment: test_patch_secret_target_attachment_connection_fields, with a database.)
        "CacheSubnets": {"Type": "AWS::ElastiCache::SubnetGroup", "Properties": {"Description": "d", "SubnetIds": subnets}},
        "Redis": {"Type": "AWS::ElastiCache::ReplicationGroup", "Properties": {
            "ReplicationGroupDescription": "r", "Engine": "redis", "CacheNodeType": "cache.t3.medium",
            "NumCacheClusters": 2, "AutomaticFailoverEnabled": True, "MultiAZEnabled": True,
            "CacheSubnetGroupName": {"Ref": "CacheSubnets"}, "TransitEncryptionEnabled": True,
            "AuthToken": {"Fn::Sub": ["{{resolve:secretsmanager:${S}:SecretString:password}}", {"S": {"Ref": "Secret"}}]}}},
        "Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g", "VpcId": vpc}},
        "Egress": {"Type": "AWS::EC2::SecurityGroupEgress", "Properties": {
            "GroupId": {"Fn::GetAtt": ["Group", "GroupId"]}, "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "CidrIp": "0.0.0.0/0", "Description": "https"}},
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "gl-policy-probe"}},
        "Policy": {"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": {"Ref": "Bucket"}, "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                                    "Resource": "arn:aws:s3:::gl-policy-probe/*",
                                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "Namespace": "AWS/EC2", "MetricName": "CPUUtilization", "Statistic": "Average", "Period": 60,
            "EvaluationPeriods": 5, "Threshold": 60, "ComparisonOperator": "GreaterThanThreshold"}}},
        "Outputs": {"Secret": {"Value": {"Ref": "Secret"}}, "Group": {"Value": {"Fn::GetAtt": ["Group", "GroupId"]}},
                    "Redis": {"Value": {"Fn::GetAtt": ["Redis", "PrimaryEndPoint.Address"]}}}})
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    out = outputs(stack)
    secret = json.loads(local_aws.client("secretsmanager", REGION).get_secret_value(SecretId=out["Secret"])["SecretString"])
    assert secret["username"] == "gitlab" and len(secret["password"]) == 40 and secret["password"].isalnum()
    (group,) = local_aws.client("elasticache", REGION).describe_replication_groups()["ReplicationGroups"]
    assert group["AutomaticFailover"] == "enabled" and group["MultiAZ"] == "enabled"
    assert out["Redis"].startswith("master.")
    rules = ec2.describe_security_groups(GroupIds=[out["Group"]])["SecurityGroups"][0]["IpPermissionsEgress"]
    assert any(r.get("FromPort") == 443 for r in rules)
    policy = json.loads(local_aws.client("s3", REGION).get_bucket_policy(Bucket="gl-policy-probe")["Policy"])
    assert policy["Statement"][0]["Effect"] == "Deny"
    (alarm,) = local_aws.client("cloudwatch", REGION).describe_alarms()["MetricAlarms"]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (60.0, "GreaterThanThreshold")


def test_scaling_policy_model(local_aws):
    """AWS::AutoScaling::ScalingPolicy (a resource model) lands on the group."""
    ec2 = local_aws.client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]
    deploy(local_aws, {"Resources": {
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {"ImageId": "ami-0a11ab5e1c0de1851"}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
            "MinSize": "1", "MaxSize": "2", "VPCZoneIdentifier": [subnet],
            "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"}, "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}}},
        "Out": {"Type": "AWS::AutoScaling::ScalingPolicy", "Properties": {
            "AutoScalingGroupName": {"Ref": "Group"}, "PolicyType": "SimpleScaling",
            "AdjustmentType": "ChangeInCapacity", "ScalingAdjustment": 1, "Cooldown": "300"}}}})
    (policy,) = local_aws.client("autoscaling", REGION).describe_policies()["ScalingPolicies"]
    assert (policy["ScalingAdjustment"], policy["AdjustmentType"]) == (1, "ChangeInCapacity")


# -- Service Catalog -----------------------------------------------------------------

def _template_object(local_aws, key="v1/main.template.yaml") -> str:
    s3 = local_aws.client("s3", REGION)
    if "gl-templates" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="gl-templates", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="gl-templates", Key=key, Body=b"Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n")
    return f"https://gl-templates.s3.{REGION}.amazonaws.com/{key}"


def _product(sc, url, name="GitLab"):
    return sc.create_product(Name=name, Owner="Platform", ProductType="CLOUD_FORMATION_TEMPLATE",
                             ProvisioningArtifactParameters={"Name": "1.0.0", "Type": "CLOUD_FORMATION_TEMPLATE",
                                                             "Info": {"LoadTemplateFromURL": url}})


def test_patch_servicecatalog_provisioning_artifacts(local_aws):
    sc = local_aws.client("servicecatalog", REGION)
    first = _product(sc, _template_object(local_aws))
    product = first["ProductViewDetail"]["ProductViewSummary"]["ProductId"]
    assert first["ProvisioningArtifactDetail"]["Name"] == "1.0.0"
    assert re.fullmatch(r"pa-[a-z0-9]{13}", first["ProvisioningArtifactDetail"]["Id"])

    second = sc.create_provisioning_artifact(ProductId=product, IdempotencyToken="t-2", Parameters={
        "Name": "1.1.0", "Type": "CLOUD_FORMATION_TEMPLATE",
        "Info": {"LoadTemplateFromURL": _template_object(local_aws, "v2/main.template.yaml")}})
    again = sc.create_provisioning_artifact(ProductId=product, IdempotencyToken="t-2", Parameters={
        "Name": "1.1.0", "Info": {"LoadTemplateFromURL": "https://gl-templates.s3.amazonaws.com/x"}})
    assert again["ProvisioningArtifactDetail"]["Id"] == second["ProvisioningArtifactDetail"]["Id"]
    names = [a["Name"] for a in sc.list_provisioning_artifacts(ProductId=product)["ProvisioningArtifactDetails"]]
    assert names == ["1.0.0", "1.1.0"]
    assert [a["Name"] for a in sc.describe_product_as_admin(Id=product)["ProvisioningArtifactSummaries"]] == names

    old = first["ProvisioningArtifactDetail"]["Id"]
    sc.update_provisioning_artifact(ProductId=product, ProvisioningArtifactId=old, Guidance="DEPRECATED")
    described = sc.describe_provisioning_artifact(ProductId=product, ProvisioningArtifactId=old)
    assert described["ProvisioningArtifactDetail"]["Guidance"] == "DEPRECATED"
    assert described["Info"]["LoadTemplateFromURL"].endswith("v1/main.template.yaml")

    # A template that is not there is refused, and creates nothing.
    with pytest.raises(sc.exceptions.InvalidParametersException, match="Failed to fetch the template"):
        sc.create_provisioning_artifact(ProductId=product, IdempotencyToken="t-3", Parameters={
            "Name": "9.9.9", "Info": {"LoadTemplateFromURL": "https://gl-templates.s3.amazonaws.com/missing.yaml"}})
    with pytest.raises(sc.exceptions.InvalidParametersException, match="already has a provisioning artifact"):
        sc.create_provisioning_artifact(ProductId=product, IdempotencyToken="t-4", Parameters={
            "Name": "1.1.0", "Info": {"LoadTemplateFromURL": _template_object(local_aws)}})
    with pytest.raises(sc.exceptions.InvalidParametersException):
        _product(sc, "https://gl-templates.s3.amazonaws.com/missing.yaml", name="Broken")
    assert [p["ProductViewSummary"]["Name"] for p in sc.search_products_as_admin()["ProductViewDetails"]] == ["GitLab"]

    sc.delete_provisioning_artifact(ProductId=product, ProvisioningArtifactId=old)
    with pytest.raises(sc.exceptions.InvalidParametersException, match="last provisioning artifact"):
        sc.delete_provisioning_artifact(ProductId=product, ProvisioningArtifactId=second["ProvisioningArtifactDetail"]["Id"])


def test_patch_servicecatalog_portfolio_associations(local_aws):
    sc = local_aws.client("servicecatalog", REGION)
    portfolio = sc.create_portfolio(DisplayName="GitLab", ProviderName="Platform")["PortfolioDetail"]["Id"]
    product = _product(sc, _template_object(local_aws))["ProductViewDetail"]["ProductViewSummary"]["ProductId"]
    sc.associate_product_with_portfolio(ProductId=product, PortfolioId=portfolio)
    assert [p["Id"] for p in sc.list_portfolios_for_product(ProductId=product)["PortfolioDetails"]] == [portfolio]
    found = sc.search_products_as_admin(PortfolioId=portfolio)["ProductViewDetails"]
    assert [p["ProductViewSummary"]["ProductId"] for p in found] == [product]

    role = "arn:aws:iam::123456789012:role/Developers"
    sc.associate_principal_with_portfolio(PortfolioId=portfolio, PrincipalARN=role, PrincipalType="IAM")
    assert sc.list_principals_for_portfolio(PortfolioId=portfolio)["Principals"] == [
        {"PrincipalARN": role, "PrincipalType": "IAM"}]
    with pytest.raises(sc.exceptions.InvalidParametersException, match="not an IAM role"):
        sc.associate_principal_with_portfolio(PortfolioId=portfolio, PrincipalARN="developers", PrincipalType="IAM")

    with pytest.raises(sc.exceptions.InvalidParametersException, match="still has products"):
        sc.delete_portfolio(Id=portfolio)
    with pytest.raises(sc.exceptions.InvalidParametersException, match="still in a portfolio"):
        sc.delete_product(Id=product)
    sc.disassociate_product_from_portfolio(ProductId=product, PortfolioId=portfolio)
    sc.disassociate_principal_from_portfolio(PortfolioId=portfolio, PrincipalARN=role)
    sc.delete_portfolio(Id=portfolio)
    sc.delete_product(Id=product)
    assert sc.list_portfolios()["PortfolioDetails"] == []


def test_patch_servicecatalog_constraints(local_aws):
    sc = local_aws.client("servicecatalog", REGION)
    portfolio = sc.create_portfolio(DisplayName="GitLab", ProviderName="Platform")["PortfolioDetail"]["Id"]
    product = _product(sc, _template_object(local_aws))["ProductViewDetail"]["ProductViewSummary"]["ProductId"]
    launch = json.dumps({"RoleArn": "arn:aws:iam::123456789012:role/gitlab-cfn/Launch"})
    with pytest.raises(sc.exceptions.ResourceNotFoundException, match="is not in portfolio"):
        sc.create_constraint(PortfolioId=portfolio, ProductId=product, Type="LAUNCH", Parameters=launch)
    sc.associate_product_with_portfolio(ProductId=product, PortfolioId=portfolio)
    with pytest.raises(sc.exceptions.InvalidParametersException, match="needs RoleArn or LocalRoleName"):
        sc.create_constraint(PortfolioId=portfolio, ProductId=product, Type="LAUNCH", Parameters="{}")

    created = sc.create_constraint(PortfolioId=portfolio, ProductId=product, Type="LAUNCH", Parameters=launch)
    constraint = created["ConstraintDetail"]["ConstraintId"]
    assert re.fullmatch(r"cons-[a-z0-9]{13}", constraint) and created["Status"] == "AVAILABLE"
    with pytest.raises(sc.exceptions.InvalidParametersException, match="already has a launch constraint"):
        sc.create_constraint(PortfolioId=portfolio, ProductId=product, Type="LAUNCH", Parameters=launch)
    listed = sc.list_constraints_for_portfolio(PortfolioId=portfolio, ProductId=product)["ConstraintDetails"]
    assert [(c["ConstraintId"], c["Type"]) for c in listed] == [(constraint, "LAUNCH")]
    assert json.loads(sc.describe_constraint(Id=constraint)["ConstraintParameters"]) == json.loads(launch)
    with pytest.raises(sc.exceptions.InvalidParametersException, match="has constraints"):
        sc.disassociate_product_from_portfolio(ProductId=product, PortfolioId=portfolio)
    sc.delete_constraint(Id=constraint)
    assert sc.list_constraints_for_portfolio(PortfolioId=portfolio)["ConstraintDetails"] == []


# -- updates: change sets, nested change sets, updates in place -----------------------------------

GITLAB_IMAGE, OLDER_IMAGE, UBUNTU_IMAGE = "ami-0a11ab5e1c0de1851", "ami-0a11ab5e1c0de1842", "ami-0b0b1e24040000001"
CHILD = {
    "Parameters": {"ImageId": {"Type": "AWS::EC2::Image::Id"}, "Zones": {"Type": "CommaDelimitedList"},
                   "InstanceType": {"Type": "String", "Default": "c5.xlarge"}},
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.7.0.0/16"}},
        "Subnet": {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.7.1.0/24", "AvailabilityZone": {"Fn::Select": [0, {"Ref": "Zones"}]}}},
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": {"Ref": "ImageId"}, "InstanceType": {"Ref": "InstanceType"}}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                  "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": 1, "MinInstancesInService": 1}},
                  "Properties": {"MinSize": "2", "MaxSize": "2", "VPCZoneIdentifier": [{"Ref": "Subnet"}],
                                 "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"},
                                                    "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}}},
        "Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"Version": {"Value": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}},
                "Group": {"Value": {"Ref": "Group"}}},
}


def _upgradable(local_aws, name="site"):
    """A parent whose nested stack runs an Auto Scaling group from an image named by an SSM parameter."""
    ssm = local_aws.client("ssm", REGION)
    ssm.put_parameter(Name="/probe/ami", Value=OLDER_IMAGE, Type="String", DataType="aws:ec2:image")
    url = _child_template(local_aws, CHILD)
    parent = {"Parameters": {"ImageId": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/probe/ami"},
                             "Zones": {"Type": "List<AWS::EC2::AvailabilityZone::Name>"}},
              "Resources": {"Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {
                  "TemplateURL": url, "Parameters": {"ImageId": {"Ref": "ImageId"},
                                                     "Zones": {"Fn::Join": [",", {"Ref": "Zones"}]}}}}},
              "Outputs": {"Version": {"Value": {"Fn::GetAtt": ["Child", "Outputs.Version"]}},
                          "Group": {"Value": {"Fn::GetAtt": ["Child", "Outputs.Group"]}}}}
    cfn, stack = deploy(local_aws, parent, name=name, parameters={"Zones": "eu-west-1a,eu-west-1b"})
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    return cfn, ssm, parent, stack


def _change_set(cfn, stack, parent, name, zones="eu-west-1a,eu-west-1b", nested=True):
    params = [{"ParameterKey": "ImageId", "UsePreviousValue": True}, {"ParameterKey": "Zones", "ParameterValue": zones}]
    created = cfn.create_change_set(StackName=stack["StackName"], ChangeSetName=name, TemplateBody=json.dumps(parent),
                                    Parameters=params, ChangeSetType="UPDATE", IncludeNestedStacks=nested)
    return cfn.describe_change_set(ChangeSetName=created["Id"], StackName=stack["StackName"])


def test_patch_change_sets_as_aws_shapes_them(local_aws):
    cfn, ssm, parent, stack = _upgradable(local_aws)
    unchanged = _change_set(cfn, stack, parent, "same")
    assert (unchanged["Status"], unchanged["ExecutionStatus"]) == ("FAILED", "UNAVAILABLE")
    assert "didn't contain changes" in unchanged["StatusReason"]

    # Only the image behind the SSM parameter changes: the root shows the nested stack, whose own
    # change set shows the launch template (new version) and the group (follows it).
    ssm.put_parameter(Name="/probe/ami", Value=GITLAB_IMAGE, Type="String", DataType="aws:ec2:image", Overwrite=True)
    root = _change_set(cfn, stack, parent, "new-image")
    assert (root["Status"], root["ExecutionStatus"], root["IncludeNestedStacks"]) == ("CREATE_COMPLETE", "AVAILABLE", True)
    assert root.get("ParentChangeSetId") is None and root.get("RootChangeSetId") is None
    (row,) = [c["ResourceChange"] for c in root["Changes"]]
    assert (row["Action"], row["LogicalResourceId"], row["ResourceType"], row["Replacement"]) == (
        "Modify", "Child", "AWS::CloudFormation::Stack", "False")
    assert row["Details"][0] == {"Target": {"Attribute": "Properties", "RequiresRecreation": "Never"},
                                 "Evaluation": "Dynamic", "ChangeSource": "Automatic"}
    child = cfn.describe_change_set(ChangeSetName=row["ChangeSetId"])
    assert (child["ParentChangeSetId"], child["RootChangeSetId"]) == (root["ChangeSetId"], root["ChangeSetId"])
    assert (child["Status"], child["ExecutionStatus"]) == ("CREATE_COMPLETE", "UNAVAILABLE")
    assert child["StackId"] == row["PhysicalResourceId"]
    changes = {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in child["Changes"]}
    assert sorted(changes) == ["Group", "Template"]
    template = changes["Template"]
    assert (template["Action"], template["Replacement"], template["Scope"]) == ("Modify", "False", ["Properties"])
    assert {"Target": {"Attribute": "Properties", "Name": "LaunchTemplateData", "RequiresRecreation": "Never"},
            "Evaluation": "Static", "ChangeSource": "ParameterReference", "CausingEntity": "ImageId"} in template["Details"]
    group = changes["Group"]
    assert group["Details"] == [{"Target": {"Attribute": "Properties", "Name": "LaunchTemplate", "RequiresRecreation": "Conditionally"},
                                 "Evaluation": "Dynamic", "ChangeSource": "ResourceAttribute",
                                 "CausingEntity": "Template.LatestVersionNumber"}]
    with pytest.raises(Exception, match="Executable from root change set"):
        cfn.execute_change_set(ChangeSetName=row["ChangeSetId"])

    # Another list of zones: the subnet's zone is create-only, so the subnet is replaced.
    zones = _change_set(cfn, stack, parent, "new-zones", zones="eu-west-1b,eu-west-1c")
    nested = cfn.describe_change_set(ChangeSetName=zones["Changes"][0]["ResourceChange"]["ChangeSetId"])
    subnet = {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in nested["Changes"]}["Subnet"]
    assert subnet["Replacement"] == "True" and subnet["PolicyAction"] == "ReplaceAndDelete"
    assert {"Target": {"Attribute": "Properties", "Name": "AvailabilityZone", "RequiresRecreation": "Always"},
            "Evaluation": "Static", "ChangeSource": "ParameterReference", "CausingEntity": "Zones"} in subnet["Details"]

    # Without IncludeNestedStacks the root row names no change set.
    flat = _change_set(cfn, stack, parent, "flat", nested=False)
    assert "ChangeSetId" not in flat["Changes"][0]["ResourceChange"]


def _instances(local_aws, group):
    groups = local_aws.client("autoscaling", REGION).describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return sorted(i["InstanceId"] for i in groups["AutoScalingGroups"][0]["Instances"])


def test_patch_updates_in_place(local_aws):
    cfn, ssm, parent, stack = _upgradable(local_aws)
    children = {s["StackName"]: s["StackId"] for s in cfn.describe_stacks()["Stacks"] if s["StackName"] != "site"}
    ssm.put_parameter(Name="/probe/ami", Value=GITLAB_IMAGE, Type="String", DataType="aws:ec2:image", Overwrite=True)
    _change_set(cfn, stack, parent, "other", zones="eu-west-1b,eu-west-1c")
    root = _change_set(cfn, stack, parent, "new-image")
    cfn.execute_change_set(ChangeSetName=root["ChangeSetId"])
    after = cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]
    assert after["StackStatus"] == "UPDATE_COMPLETE"
    assert outputs(after)["Version"] == "2" and outputs(stack)["Version"] == "1"
    assert {p["ParameterKey"]: (p["ParameterValue"], p.get("ResolvedValue")) for p in after["Parameters"]}["ImageId"] == (
        "/probe/ami", GITLAB_IMAGE)
    # The nested stack is the same stack, updated.
    assert {s["StackName"]: s["StackId"] for s in cfn.describe_stacks()["Stacks"] if s["StackName"] != "site"} == children
    (child_id,) = children.values()
    assert cfn.describe_stacks(StackName=child_id)["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    events = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in cfn.describe_stack_events(StackName=child_id)["StackEvents"]]
    assert ("Template", "UPDATE_COMPLETE") in events and ("Vpc", "UPDATE_IN_PROGRESS") not in events
    # The executed change set stays, EXECUTE_COMPLETE; the stack's other change sets are gone.
    summaries = [(c["ChangeSetName"], c["ExecutionStatus"]) for c in cfn.list_change_sets(StackName="site")["Summaries"]
                 if c["StackName"] == "site"]
    assert summaries == [("new-image", "EXECUTE_COMPLETE")]


def test_patch_auto_scaling_group_rolling_update(local_aws):
    cfn, ssm, parent, stack = _upgradable(local_aws)
    group = outputs(stack)["Group"]
    before = _instances(local_aws, group)
    assert len(before) == 2
    ssm.put_parameter(Name="/probe/ami", Value=GITLAB_IMAGE, Type="String", DataType="aws:ec2:image", Overwrite=True)
    cfn.execute_change_set(ChangeSetName=_change_set(cfn, stack, parent, "roll")["ChangeSetId"])
    assert outputs(cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0])["Group"] == group
    after = _instances(local_aws, group)
    assert len(after) == 2 and not set(after) & set(before)
    ec2 = local_aws.client("ec2", REGION)
    described = {i["InstanceId"]: i for r in ec2.describe_instances(InstanceIds=before + after)["Reservations"]
                 for i in r["Instances"]}
    assert {described[i]["ImageId"] for i in after} == {GITLAB_IMAGE}
    assert {described[i]["State"]["Name"] for i in before} == {"terminated"}


def test_patch_instance_updated_in_place(local_aws):
    template = {"Parameters": {"Type": {"Type": "String"}, "Image": {"Type": "String"}},
                "Resources": {"Server": {"Type": "AWS::EC2::Instance", "Properties": {
                    "ImageId": {"Ref": "Image"}, "InstanceType": {"Ref": "Type"}}}},
                "Outputs": {"Server": {"Value": {"Ref": "Server"}}}}
    cfn, stack = deploy(local_aws, template, name="server", parameters={"Type": "c5.large", "Image": OLDER_IMAGE})
    first = outputs(stack)["Server"]
    ec2 = local_aws.client("ec2", REGION)

    def update(**values):
        created = cfn.create_change_set(StackName="server", ChangeSetName=f"to-{values['Image']}",
                                        TemplateBody=json.dumps(template), ChangeSetType="UPDATE",
                                        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()])
        change = cfn.describe_change_set(ChangeSetName=created["Id"])["Changes"][0]["ResourceChange"]
        cfn.execute_change_set(ChangeSetName=created["Id"])
        return change, outputs(cfn.describe_stacks(StackName="server")["Stacks"][0])["Server"]

    change, same = update(Type="c5.xlarge", Image=OLDER_IMAGE)
    assert change["Replacement"] == "Conditional"
    assert same == first
    instance = ec2.describe_instances(InstanceIds=[first])["Reservations"][0]["Instances"][0]
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("c5.xlarge", "running")
    change, replaced = update(Type="c5.xlarge", Image=GITLAB_IMAGE)
    assert change["Replacement"] == "True"
    assert replaced != first
    states = {i["InstanceId"]: (i["State"]["Name"], i["ImageId"]) for r in
              ec2.describe_instances(InstanceIds=[first, replaced])["Reservations"] for i in r["Instances"]}
    assert states == {first: ("terminated", OLDER_IMAGE), replaced: ("running", GITLAB_IMAGE)}


def test_patch_block_device_not_smaller_than_snapshot(local_aws):
    from botocore.exceptions import ClientError

    ec2 = local_aws.client("ec2", REGION)
    image = ec2.describe_images(ImageIds=[GITLAB_IMAGE])["Images"][0]
    root = image["BlockDeviceMappings"][0]["Ebs"]
    assert root["VolumeSize"] == 30

    def run(size, image_id=GITLAB_IMAGE):
        return ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="c5.large",
                                 BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": size}}])

    with pytest.raises(ClientError) as refused:
        run(20)
    assert refused.value.response["Error"]["Code"] == "InvalidBlockDeviceMapping"
    assert refused.value.response["Error"]["Message"] == (
        f"Volume of size 20GB is smaller than snapshot '{root['SnapshotId']}', expect size >= 30GB")
    assert run(30)["Instances"][0]["ImageId"] == GITLAB_IMAGE
    assert run(8, UBUNTU_IMAGE)["Instances"][0]["ImageId"] == UBUNTU_IMAGE
    # Through a launch template, as an Auto Scaling group or CloudFormation launches.
    template = ec2.create_launch_template(LaunchTemplateName="small", LaunchTemplateData={
        "ImageId": GITLAB_IMAGE, "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 20}}]})
    with pytest.raises(ClientError, match="InvalidBlockDeviceMapping"):
        ec2.run_instances(MinCount=1, MaxCount=1, LaunchTemplate={
            "LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]})


def test_patch_volume_in_use(local_aws):
    from botocore.exceptions import ClientError

    ec2 = local_aws.client("ec2", REGION)
    a, b = (i["InstanceId"] for i in ec2.run_instances(ImageId=UBUNTU_IMAGE, MinCount=2, MaxCount=2, InstanceType="c5.large",
                                                        Placement={"AvailabilityZone": "eu-west-1a"})["Instances"])
    volume = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=100)["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=a, Device="/dev/sdf")
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=volume, InstanceId=b, Device="/dev/sdf")
    assert refused.value.response["Error"] == {"Code": "VolumeInUse", "Message": f"{volume} is already attached to an instance"}
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"][0]["InstanceId"] == a
    ec2.terminate_instances(InstanceIds=[a])
    ec2.attach_volume(VolumeId=volume, InstanceId=b, Device="/dev/sdf")
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"][0]["InstanceId"] == b


def _role_with_profile(local_aws, managed: bool):
    cfn, stack = deploy(local_aws, {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"] if managed else []}},
        "Profile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {"Roles": [{"Ref": "Role"}]}},
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": UBUNTU_IMAGE, "InstanceType": "c5.large",
            "IamInstanceProfile": {"Arn": {"Fn::GetAtt": ["Profile", "Arn"]}}}}}}},
        name=f"profile-{managed}".lower())
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cfn.list_stack_resources(StackName=stack["StackId"])["StackResourceSummaries"]}
    return resources


def test_patch_role_managed_policies(local_aws):
    resources = _role_with_profile(local_aws, managed=True)
    attached = local_aws.client("iam", REGION).list_attached_role_policies(RoleName=resources["Role"])
    assert [a["PolicyName"] for a in attached["AttachedPolicies"]] == ["AmazonSSMManagedInstanceCore"]
    cfn, stack = deploy(local_aws, {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
        "ManagedPolicyArns": ["arn:aws:iam::aws:policy/NoSuchPolicy"]}}}}, name="nosuch")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"


def _launched(local_aws, managed: bool) -> str:
    template = _role_with_profile(local_aws, managed)["Template"]
    (instance,) = local_aws.client("ec2", REGION).run_instances(
        LaunchTemplate={"LaunchTemplateId": template}, MinCount=1, MaxCount=1)["Instances"]
    return instance


def test_patch_instance_profile_from_launch_template(local_aws):
    instance = _launched(local_aws, managed=False)
    profile = instance["IamInstanceProfile"]["Arn"]
    assert profile.startswith("arn:aws:iam::123456789012:instance-profile/profile-false-Profile-")
    described = local_aws.client("ec2", REGION).describe_iam_instance_profile_associations()
    assert [(a["InstanceId"], a["IamInstanceProfile"]["Arn"]) for a in described["IamInstanceProfileAssociations"]] \
        == [(instance["InstanceId"], profile)]


def test_patch_ssm_managed_instances(local_aws):
    ec2 = local_aws.client("ec2", REGION)
    ssm = local_aws.client("ssm", REGION)
    launched = {managed: _launched(local_aws, managed)["InstanceId"] for managed in (True, False)}
    online = ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": list(launched.values())}])["InstanceInformationList"]
    assert [(i["InstanceId"], i["PingStatus"]) for i in online] == [(launched[True], "Online")]
    ec2.terminate_instances(InstanceIds=[launched[True]])
    assert ssm.describe_instance_information()["InstanceInformationList"] == []


def test_patch_ssm_commands_on_their_instances(local_aws):
    from botocore.exceptions import ClientError

    ec2 = local_aws.client("ec2", REGION)
    ssm = local_aws.client("ssm", REGION)
    a, b, c = (i["InstanceId"] for i in ec2.run_instances(ImageId=UBUNTU_IMAGE, MinCount=3, MaxCount=3,
                                                           InstanceType="c5.large")["Instances"])
    ec2.terminate_instances(InstanceIds=[c])
    sent = ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript",
                            Parameters={"commands": ["true"]})["Command"]
    assert sent["InstanceIds"] == [a]
    assert [cmd["InstanceIds"] for cmd in ssm.list_commands()["Commands"]] == [[a]]
    for bad in ("i-0123456789abcdef0", c):
        with pytest.raises(ClientError) as refused:
            ssm.send_command(InstanceIds=[b, bad], DocumentName="AWS-RunShellScript",
                             Parameters={"commands": ["true"]})
        assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"
    assert len(ssm.list_commands()["Commands"]) == 1


def test_patch_failed_rollback_keeps_what_it_cannot_delete(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {
        "Database": {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "Properties": {
            "Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100",
            "MasterUsername": "gitlab", "MasterUserPassword": "not-a-real-password-1", "DeletionProtection": True}},
        "Topic": {"Type": "AWS::SNS::Topic"},
        "Broken": {"Type": "AWS::Foo::Bar", "DependsOn": ["Database", "Topic"]}}}, name="half")
    assert stack["StackStatus"] == "ROLLBACK_FAILED"
    events = [(e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason", ""))
              for e in cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"]]
    (failed,) = [e for e in events if e[1] == "DELETE_FAILED"]
    assert failed[0] == "Database" and "Cannot delete protected DB Instance" in failed[2]
    # What is left is the database alone; the topic was rolled back.
    resources = cfn.list_stack_resources(StackName=stack["StackId"])["StackResourceSummaries"]
    assert [r["LogicalResourceId"] for r in resources] == ["Database"]
    assert local_aws.client("sns", REGION).list_topics()["Topics"] == []
    identifier = resources[0]["PhysicalResourceId"]
    cfn.delete_stack(StackName=stack["StackId"])
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_FAILED"
    rds = local_aws.client("rds", REGION)
    rds.modify_db_instance(DBInstanceIdentifier=identifier, DeletionProtection=False, ApplyImmediately=True)
    cfn.delete_stack(StackName=stack["StackId"])
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    assert rds.describe_db_snapshots(DBInstanceIdentifier=identifier)["DBSnapshots"]


def test_patch_rds_groups_in_use_kept(local_aws):
    from botocore.exceptions import ClientError

    ec2 = local_aws.client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{n}.0/24", AvailabilityZone=f"eu-west-1{z}")["Subnet"]["SubnetId"]
               for n, z in ((1, "a"), (2, "b"))]
    rds = local_aws.client("rds", REGION)
    rds.create_db_subnet_group(DBSubnetGroupName="inuse", DBSubnetGroupDescription="probe", SubnetIds=subnets)
    rds.create_db_parameter_group(DBParameterGroupName="inuse", DBParameterGroupFamily="postgres17", Description="probe")
    rds.create_db_instance(DBInstanceIdentifier="db", Engine="postgres", DBInstanceClass="db.m6i.large",
                           AllocatedStorage=100, MasterUsername="gitlab", MasterUserPassword="not-a-real-password-1",
                           DBSubnetGroupName="inuse", DBParameterGroupName="inuse")
    with pytest.raises(ClientError) as refused:
        rds.delete_db_parameter_group(DBParameterGroupName="inuse")
    assert refused.value.response["Error"]["Code"] == "InvalidDBParameterGroupState"
    with pytest.raises(ClientError) as refused:
        rds.delete_db_subnet_group(DBSubnetGroupName="inuse")
    assert refused.value.response["Error"] == {
        "Code": "InvalidDBSubnetGroupStateFault", "Type": "Sender",
        "Message": "Cannot delete the subnet group 'inuse' because at least one database instance: db is still using it."}
    # Still usable: the instance is described with its groups.
    assert rds.describe_db_instances(DBInstanceIdentifier="db")["DBInstances"][0]["DBSubnetGroup"]["DBSubnetGroupName"] == "inuse"
    rds.delete_db_instance(DBInstanceIdentifier="db", SkipFinalSnapshot=True)
    rds.delete_db_parameter_group(DBParameterGroupName="inuse")
    rds.delete_db_subnet_group(DBSubnetGroupName="inuse")


def test_patch_stack_parameters_as_given(local_aws):
    local_aws.client("ssm", REGION).put_parameter(Name="/probe/ami", Value=GITLAB_IMAGE, Type="String")
    _, stack = deploy(local_aws, {
        "Parameters": {"Zones": {"Type": "List<AWS::EC2::AvailabilityZone::Name>"},
                       "Image": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/probe/ami"},
                       "Secret": {"Type": "String", "NoEcho": True}, "Size": {"Type": "Number", "Default": 30}},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}},
        parameters={"Zones": "eu-west-1a,eu-west-1b", "Secret": "not-shown"})
    assert sorted(stack["Parameters"], key=lambda p: p["ParameterKey"]) == [
        {"ParameterKey": "Image", "ParameterValue": "/probe/ami", "ResolvedValue": GITLAB_IMAGE},
        {"ParameterKey": "Secret", "ParameterValue": "****"},
        {"ParameterKey": "Size", "ParameterValue": "30"},
        {"ParameterKey": "Zones", "ParameterValue": "eu-west-1a,eu-west-1b"}]


# -- AWS's rules the stand-in keeps (rules.py) ----------------------------------------------------

def _replication_group(elasticache, name, token, tls=True):
    return elasticache.create_replication_group(
        ReplicationGroupId=name, ReplicationGroupDescription="probe", Engine="redis", CacheNodeType="cache.t3.micro",
        NumCacheClusters=1, TransitEncryptionEnabled=tls, AuthToken=token)


def test_patch_elasticache_auth_token_rules(local_aws):
    from botocore.exceptions import ClientError

    elasticache = local_aws.client("elasticache", REGION)
    refused = {
        "no-tls": ("a" * 32, False, "InvalidParameterCombination"),
        "short": ("a" * 15, True, "InvalidParameterValue"),
        "long": ("a" * 129, True, "InvalidParameterValue"),
        "slash": ("a" * 20 + "/", True, "InvalidParameterValue"),
        "at": ("a" * 20 + "@", True, "InvalidParameterValue"),
        "quote": ("a" * 20 + '"', True, "InvalidParameterValue"),
        "space": ("a" * 20 + " b", True, "InvalidParameterValue"),
        "percent": ("a" * 20 + "%", True, "InvalidParameterValue"),   # printable, but not one of !&#$^<>-
        "non-ascii": ("a" * 20 + "é", True, "InvalidParameterValue"),
    }
    for name, (token, tls, code) in refused.items():
        with pytest.raises(ClientError) as error:
            _replication_group(elasticache, f"refused-{name}", token, tls)
        assert error.value.response["Error"]["Code"] == code, name
    assert elasticache.describe_replication_groups()["ReplicationGroups"] == []
    for name, token in {"shortest": "a1" * 8, "longest": "Z9" * 64, "specials": "abcdefgh12345678!&#$^<>-"}.items():
        group = _replication_group(elasticache, f"kept-{name}", token)["ReplicationGroup"]
        assert group["AuthTokenEnabled"] is True and group["TransitEncryptionEnabled"] is True

    # Through CloudFormation: the group fails its stack, with the reason.
    cfn, stack = deploy(local_aws, {"Resources": {"Redis": {"Type": "AWS::ElastiCache::ReplicationGroup", "Properties": {
        "ReplicationGroupDescription": "probe", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
        "NumCacheClusters": 1, "TransitEncryptionEnabled": True, "AuthToken": "with/slash-0123456789"}}}})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert [(lid, "Invalid AuthToken provided" in reason) for lid, reason in failed_events(cfn, stack["StackId"])] \
        == [("Redis", True)]


def test_the_cache_tiers_generated_token_is_one_elasticache_accepts(local_aws):
    """The token secret of the built cache template, generated by Secrets Manager with the
    template's own GenerateSecretString, then given to ElastiCache with the group's settings."""
    from conftest import templates_for

    resources = templates_for({})["cache"]["Resources"]
    group = resources["RedisReplicationGroup"]["Properties"]
    secret = group["AuthToken"]["Fn::Sub"][1]["Secret"]["Ref"]
    generate = resources[secret]["Properties"]["GenerateSecretString"]
    options = {k: generate[k] for k in ("PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation",
                                        "ExcludeUppercase", "ExcludeLowercase", "IncludeSpace",
                                        "RequireEachIncludedType") if k in generate}
    secrets = local_aws.client("secretsmanager", REGION)
    elasticache = local_aws.client("elasticache", REGION)
    for n in range(5):
        token = secrets.get_random_password(**options)["RandomPassword"]
        _replication_group(elasticache, f"built-{n}", token, tls=group["TransitEncryptionEnabled"])


def test_patch_secret_target_attachment_connection_fields(local_aws):
    body = {"Resources": {
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {"GenerateSecretString": {
            "SecretStringTemplate": '{"username": "gitlab"}', "GenerateStringKey": "password",
            "PasswordLength": 40, "ExcludePunctuation": True}}},
        "Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
            "Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100", "Port": "5432",
            "DBName": "gitlabhq_production", "MasterUsername": "gitlab",
            "MasterUserPassword": {"Fn::Sub": "{{resolve:secretsmanager:${Secret}:SecretString:password}}"}}},
        "Attachment": {"Type": "AWS::SecretsManager::SecretTargetAttachment", "Properties": {
            "SecretId": {"Ref": "Secret"}, "TargetId": {"Ref": "Database"}, "TargetType": "AWS::RDS::DBInstance"}}},
        "Outputs": {"Secret": {"Value": {"Ref": "Secret"}}, "Database": {"Value": {"Ref": "Database"}}}}
    cfn, stack = deploy(local_aws, body, name="attached")
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    database = local_aws.client("rds", REGION).describe_db_instances(
        DBInstanceIdentifier=outputs(stack)["Database"])["DBInstances"][0]
    document = json.loads(local_aws.client("secretsmanager", REGION).get_secret_value(
        SecretId=outputs(stack)["Secret"])["SecretString"])
    password = document.pop("password")
    assert len(password) == 40
    assert document == {"username": "gitlab", "engine": "postgres", "host": database["Endpoint"]["Address"],
                        "port": 5432, "dbname": "gitlabhq_production",
                        "dbInstanceIdentifier": database["DBInstanceIdentifier"]}

    # Removed from the stack, the attachment takes its fields out again.
    del body["Resources"]["Attachment"]
    cfn.update_stack(StackName="attached", TemplateBody=json.dumps(body))
    assert cfn.describe_stacks(StackName="attached")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    assert json.loads(local_aws.client("secretsmanager", REGION).get_secret_value(
        SecretId=outputs(stack)["Secret"])["SecretString"]) == {"username": "gitlab", "password": password}

    # A target that is not there fails the attachment.
    cfn, stack = deploy(local_aws, {"Resources": {
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {"SecretString": '{"password": "x"}'}},
        "Attachment": {"Type": "AWS::SecretsManager::SecretTargetAttachment", "Properties": {
            "SecretId": {"Ref": "Secret"}, "TargetId": "no-such-db", "TargetType": "AWS::RDS::DBInstance"}}}},
        name="unattached")
    assert failed_events(cfn, stack["StackId"]) == [("Attachment", "DBInstance no-such-db not found.")]


def _profile(iam, name):
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return profile["Arn"]


def test_patch_launch_template_versions_honoured(local_aws):
    ec2, iam = local_aws.client("ec2", REGION), local_aws.client("iam", REGION)
    # A stack's template: an update makes version 2, the default stays 1 (as CloudFormation:
    # aws-cloudformation/cloudformation-coverage-roadmap#1518).
    body = {"Resources": {"Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
        "ImageId": UBUNTU_IMAGE, "InstanceType": "c5.large"}}}},
        "Outputs": {"Id": {"Value": {"Ref": "Template"}},
                    "Latest": {"Value": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}},
                    "Default": {"Value": {"Fn::GetAtt": ["Template", "DefaultVersionNumber"]}}}}
    cfn, stack = deploy(local_aws, body, name="versions")
    assert (outputs(stack)["Latest"], outputs(stack)["Default"]) == ("1", "1")
    body["Resources"]["Template"]["Properties"]["LaunchTemplateData"]["InstanceType"] = "c5.xlarge"
    cfn.update_stack(StackName="versions", TemplateBody=json.dumps(body))
    updated = cfn.describe_stacks(StackName="versions")["Stacks"][0]
    assert updated["StackStatus"] == "UPDATE_COMPLETE"
    assert (outputs(updated)["Latest"], outputs(updated)["Default"]) == ("2", "1")
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=outputs(updated)["Id"])["LaunchTemplateVersions"]
    assert sorted((v["VersionNumber"], v["LaunchTemplateData"]["InstanceType"]) for v in versions) == \
        [(1, "c5.large"), (2, "c5.xlarge")]

    # Version 1 (the default) and 2 differ in type and instance profile; each launch uses the
    # version it names.
    first, second = _profile(iam, "first"), _profile(iam, "second")
    template = ec2.create_launch_template(LaunchTemplateName="two", LaunchTemplateData={
        "ImageId": UBUNTU_IMAGE, "InstanceType": "c5.large", "IamInstanceProfile": {"Arn": first}})["LaunchTemplate"]
    ec2.create_launch_template_version(LaunchTemplateId=template["LaunchTemplateId"], LaunchTemplateData={
        "ImageId": UBUNTU_IMAGE, "InstanceType": "m5.large", "IamInstanceProfile": {"Arn": second}})
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]
    lt = template["LaunchTemplateId"]
    cfn, stack = deploy(local_aws, {"Resources": {
        "Server": {"Type": "AWS::EC2::Instance", "Properties": {
            "LaunchTemplate": {"LaunchTemplateId": lt, "Version": "1"}, "SubnetId": subnet}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
            "MinSize": "1", "MaxSize": "1", "VPCZoneIdentifier": [subnet],
            "LaunchTemplate": {"LaunchTemplateId": lt, "Version": "2"}}}},
        "Outputs": {"Server": {"Value": {"Ref": "Server"}}}}, name="launches")
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])

    def launched(instance_id):
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
        return found["InstanceType"], found["IamInstanceProfile"]["Arn"], tags.get("aws:ec2launchtemplate:version")

    assert launched(outputs(stack)["Server"]) == ("c5.large", first, "1")
    (member,) = local_aws.client("autoscaling", REGION).describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]
    assert launched(member["InstanceId"]) == ("m5.large", second, "2")

    # AWS::EC2::Instance takes a version number, not $Latest.
    cfn, stack = deploy(local_aws, {"Resources": {"Server": {"Type": "AWS::EC2::Instance", "Properties": {
        "LaunchTemplate": {"LaunchTemplateId": lt, "Version": "$Latest"}, "SubnetId": subnet}}}}, name="latest")
    assert [lid for lid, _ in failed_events(cfn, stack["StackId"])] == ["Server"]


def test_patch_volumes_stay_in_their_zone(local_aws):
    from botocore.exceptions import ClientError

    ec2 = local_aws.client("ec2", REGION)
    (instance,) = ec2.run_instances(ImageId=UBUNTU_IMAGE, MinCount=1, MaxCount=1, InstanceType="c5.large",
                                    Placement={"AvailabilityZone": "eu-west-1a"})["Instances"]
    elsewhere = ec2.create_volume(AvailabilityZone="eu-west-1b", Size=10)["VolumeId"]
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=elsewhere, InstanceId=instance["InstanceId"], Device="/dev/sdf")
    assert refused.value.response["Error"] == {
        "Code": "InvalidVolume.ZoneMismatch",
        "Message": f"The volume '{elsewhere}' is not in the same availability zone as instance '{instance['InstanceId']}'"}
    assert ec2.describe_volumes(VolumeIds=[elsewhere])["Volumes"][0]["Attachments"] == []
    beside = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=10)["VolumeId"]
    ec2.attach_volume(VolumeId=beside, InstanceId=instance["InstanceId"], Device="/dev/sdf")

    # A stack's instance and a volume of another zone: the instance fails, the stack rolls back.
    vpc = ec2.create_vpc(CidrBlock="10.6.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.6.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]
    cfn, stack = deploy(local_aws, {"Resources": {
        "Data": {"Type": "AWS::EC2::Volume", "Properties": {"AvailabilityZone": "eu-west-1b", "Size": 20}},
        "Server": {"Type": "AWS::EC2::Instance", "Properties": {
            "ImageId": UBUNTU_IMAGE, "SubnetId": subnet, "Volumes": [{"Device": "/dev/sdf", "VolumeId": {"Ref": "Data"}}]}}}})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert [(lid, "InvalidVolume.ZoneMismatch" in r or "not in the same availability zone" in r)
            for lid, r in failed_events(cfn, stack["StackId"])] == [("Server", True)]


def test_patch_servicecatalog_templates_read(local_aws):
    sc = local_aws.client("servicecatalog", REGION)
    s3 = local_aws.client("s3", REGION)
    good = _template_object(local_aws)
    product = _product(sc, good)["ProductViewDetail"]["ProductViewSummary"]["ProductId"]
    bodies = {
        "empty-resources.yaml": b"Resources: {}\n",
        "no-resources.json": json.dumps({"Outputs": {"X": {"Value": "y"}}}).encode(),
        "broken.yaml": b"Resources:\n  Topic: [unclosed\n",
        "a-list.yaml": b"- Resources\n",
    }
    for n, (key, body) in enumerate(bodies.items()):
        s3.put_object(Bucket="gl-templates", Key=key, Body=body)
        url = f"https://gl-templates.s3.{REGION}.amazonaws.com/{key}"
        with pytest.raises(sc.exceptions.InvalidParametersException,
                           match="Invalid templateBody. Please make sure that your template is valid"):
            sc.create_provisioning_artifact(ProductId=product, IdempotencyToken=f"bad-{n}", Parameters={
                "Name": f"0.0.{n}", "Info": {"LoadTemplateFromURL": url}})
        with pytest.raises(sc.exceptions.InvalidParametersException, match="Invalid templateBody"):
            _product(sc, url, name=f"Broken{n}")
    assert [a["Name"] for a in sc.list_provisioning_artifacts(ProductId=product)["ProvisioningArtifactDetails"]] \
        == ["1.0.0"]
    assert [p["ProductViewSummary"]["Name"] for p in sc.search_products_as_admin()["ProductViewDetails"]] == ["GitLab"]
    # CloudFormation's short forms are YAML, and read as such.
    s3.put_object(Bucket="gl-templates", Key="short.yaml", Body=(
        b"Parameters:\n  Name: {Type: String}\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
        b"    Properties:\n      TopicName: !Sub '${Name}-topic'\n      Tags: !If [c, [], !Ref AWS::NoValue]\n"))
    sc.create_provisioning_artifact(ProductId=product, IdempotencyToken="short", Parameters={
        "Name": "2.0.0", "Info": {"LoadTemplateFromURL": f"https://gl-templates.s3.{REGION}.amazonaws.com/short.yaml"}})


def test_patch_termination_protection(local_aws):
    from botocore.exceptions import ClientError

    cfn = local_aws.client("cloudformation", REGION)
    cfn.create_stack(StackName="kept", TemplateBody=json.dumps({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}),
                     EnableTerminationProtection=True)
    assert cfn.describe_stacks(StackName="kept")["Stacks"][0]["EnableTerminationProtection"] is True
    with pytest.raises(ClientError, match=r"Stack \[kept\] cannot be deleted while TerminationProtection is enabled"):
        cfn.delete_stack(StackName="kept")
    assert cfn.describe_stacks(StackName="kept")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    stack_id = cfn.update_termination_protection(StackName="kept", EnableTerminationProtection=False)["StackId"]
    assert stack_id.startswith(f"arn:aws:cloudformation:{REGION}:123456789012:stack/kept/")
    cfn.delete_stack(StackName="kept")
    assert [s for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"] == []
