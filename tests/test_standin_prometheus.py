"""The monitoring server on the stand-in: its stand-in patch, and a whole stack deployed with it,
whose servers its scrape jobs find by the EC2 filters its boot script writes.

The patch test deploys a small template through the running server over HTTP, as
tests/test_standin.py does (``test_every_patch_has_a_test`` finds it here).
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from pathlib import Path

from gitlab_cfn.compile import compiler, config, scrape, userdata
from gitlab_cfn.operate.deploy import first_failure
from test_deploy import deploy_cmd
from test_standin import REGION, deploy, failed_events
from test_standin_cluster import VPC, _seed

from support import boot

IMAGE = "ami-0a11ab5e1c0de1851"


def test_patch_auto_scaling_group_cloudformation_tags(local_aws):
    template = {"Resources": {
        **VPC,
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": IMAGE, "InstanceType": "c5.large"}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
            "MinSize": "2", "MaxSize": "2", "VPCZoneIdentifier": [{"Ref": "SubnetA"}],
            "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"},
                               "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}},
            "Tags": [{"Key": "Name", "Value": "probe-app", "PropagateAtLaunch": True}]}},
    }}
    cfn, stack = deploy(local_aws, template)
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    ec2 = local_aws.client("ec2", REGION)
    found = [i for r in ec2.describe_instances(Filters=[
        {"Name": "tag:aws:cloudformation:logical-id", "Values": ["Group"]}])["Reservations"] for i in r["Instances"]]
    # Stock moto: no aws:cloudformation tag on the group's instances, so nothing found.
    assert len(found) == 2
    for instance in found:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert (tags["aws:cloudformation:stack-name"], tags["aws:cloudformation:stack-id"], tags["Name"]) == \
            ("probe", stack["StackId"], "probe-app")
    (group,) = local_aws.client("autoscaling", REGION).describe_auto_scaling_groups()["AutoScalingGroups"]
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["aws:cloudformation:logical-id"] == "Group"


def preamble(user_data: str) -> dict[str, str]:
    return dict(line[len("export "):].split("=", 1) for line in user_data.splitlines()
                if line.startswith("export ")) | {}


def rendered_scrape_configs(values: dict[str, str]) -> list[dict]:
    """prometheus['scrape_configs'] as scripts/monitoring.sh writes it for these preamble values,
    evaluated by the package's settings DSL (support/gitlab_rb_eval.rb)."""
    with tempfile.TemporaryDirectory(prefix="gitlab-cfn-monitoring-") as scratch:
        program = Path(scratch) / "monitoring.sh"
        program.write_text(userdata.body("monitoring"))
        done = subprocess.run(["bash", "-c", f"source {program}\nrender_gitlab_rb\n"], capture_output=True,
                              text=True, timeout=30, env={"PATH": boot.BOOT_PATH, "LANG": "C.UTF-8", **values})
    assert done.returncode == 0, done.stderr
    return boot.evaluate_gitlab_rb(done.stdout)["settings"]["prometheus"]["scrape_configs"]


def test_a_stack_with_the_monitoring_server_deploys_and_its_jobs_find_the_stacks_servers(local_aws, standin, tmp_path):
    cfg = config.from_dict({"monitoring": {"node": True}})
    build = tmp_path / "build"
    compiler.write_build(cfg, build)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**_seed(local_aws, REGION), "AvailabilityZones": f"{REGION}a,{REGION}b"}))
    run = deploy_cmd("--endpoint-url", standin.endpoint, "--stack-name", "mon", "--region", REGION,
                     "--params", str(params), build=build)
    cfn = local_aws.client("cloudformation", REGION)
    assert run.returncode == 0, (run.stderr[-2000:], first_failure(cfn, "mon"))
    out = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="mon")["Stacks"][0]["Outputs"]}
    autoscaling, ec2 = local_aws.client("autoscaling", REGION), local_aws.client("ec2", REGION)
    (group,) = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[out["PrometheusAutoScalingGroupName"]])["AutoScalingGroups"]
    (member,) = group["Instances"]

    # The monitoring server's user data, as EC2 gives it to the instance, resolved by CloudFormation.
    encoded = ec2.describe_instance_attribute(InstanceId=member["InstanceId"], Attribute="userData")["UserData"]["Value"]
    values = {k: v.strip("'") for k, v in preamble(base64.b64decode(encoded).decode()).items()}
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "tag:aws:cloudformation:logical-id", "Values": ["Vpc"]}])["Vpcs"]
    assert (values["VPC_ID"], values["AWS_REGION"]) == (vpc["VpcId"], REGION)

    # Each job's filters, as the boot script writes them, select exactly the stack's servers of its role.
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
               if i["State"]["Name"] == "running"]
    by_group = {g["AutoScalingGroupName"]: {i["InstanceId"] for i in g["Instances"]}
                for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]}
    app = by_group[out["AutoScalingGroupName"]] if "AutoScalingGroupName" in out else next(
        ids for name, ids in by_group.items() if "AppAutoScalingGroup" in name)
    gitaly = {i["InstanceId"] for i in running if any(t["Key"] == "Name" and t["Value"] == "mon-gitaly"
                                                       for t in i.get("Tags", []))}
    expected = {"gitlab-app": app, "gitaly": gitaly}
    jobs = rendered_scrape_configs(values)
    assert [j["job_name"] for j in jobs] == [j.name for j in scrape.jobs(cfg)]
    for job in jobs:
        (sd,) = job["ec2_sd_configs"]
        filters = [{"Name": f["name"], "Values": f["values"]} for f in sd["filters"]]
        found = {i["InstanceId"] for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]}
        role = job["job_name"].rsplit("-", 1)[0]
        assert found == expected[role] and found, job["job_name"]
    assert len(app) == 2 and len(gitaly) == 1
