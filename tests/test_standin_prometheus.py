"""The monitoring server on the stand-in: its stand-in patch, and a whole stack deployed with it,
every server booted (tests/support/ec2.py), whose servers its Prometheus finds by the EC2
filters its boot wrote.

The patch test deploys a small template through the running server over HTTP, as
tests/test_standin.py does (``test_every_patch_has_a_test`` finds it here).
"""

from __future__ import annotations

import re

import pytest
import yaml
from gitlab_cfn.compile import compiler, config, scrape
from test_standin import REGION, deploy as deploy_template, failed_events
from test_standin_boots import deploy, waiting_standin  # noqa: F401  (fixture)
from test_standin_cluster import VPC

from support.boot_fixtures import boot_tools, postgres  # noqa: F401  (fixtures)
from support.disk import namespaces_available

IMAGE = "ami-0a11ab5e1c0de1851"
# The POC without bastions (they install packages from the internet), with the monitoring server;
# one application server is enough to show what its jobs find (a second one costs a boot).
BUILD = {"bastions": False, "app": {"min_size": 1}, "monitoring": {"node": True}}


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
    cfn, stack = deploy_template(local_aws, template)
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


def rendered_filters(prometheus_yml: str) -> dict[str, list[dict]]:
    """Each job's EC2 filters in Prometheus's configuration, as DescribeInstances takes them."""
    jobs = yaml.safe_load(prometheus_yml)["scrape_configs"]
    return {j["job_name"]: [{"Name": f["name"], "Values": f["values"]} for f in j["ec2_sd_configs"][0]["filters"]]
            for j in jobs if "ec2_sd_configs" in j}


@pytest.mark.skipif(namespaces_available() is not None, reason=f"{namespaces_available()}")
def test_a_stack_with_the_monitoring_server_boots_and_its_jobs_find_the_stacks_servers(
        waiting_standin, postgres, tmp_path, boot_tools):  # noqa: F811
    build_dir = tmp_path / "build"
    cfg = config.from_dict(BUILD)
    compiler.write_build(cfg, build_dir)
    aws, hypervisor, result = deploy(waiting_standin, build_dir, tmp_path, tmp_path / "servers", postgres)
    assert result.returncode == 0, result.stderr[-3000:] + "\n".join(hypervisor.errors) + "".join(
        f"\n--- {b.instance_id} ({b.role}):\n{b.result.stderr[-2000:]}" for b in hypervisor.booted.values() if b.result)
    assert result.stderr.splitlines()[-1] == "stack gl: CREATE_COMPLETE"
    assert hypervisor.errors == []

    # The monitoring server booted from the bundle the deploy uploaded and signalled its group.
    (monitoring,) = hypervisor.of_role("monitoring")
    assert "running monitoring.sh of bundle" in monitoring.result.stderr
    (sent,) = monitoring.server.signals()
    assert (sent["resource"], sent["exit_code"], sent["sent"]["status"]) == ("PrometheusAutoScalingGroup", 0, "SUCCESS")

    # Each job's EC2 filters, in the configuration its Prometheus was started with, select exactly
    # the stack's servers of the job's role: the instances the stand-in launched for them.
    ec2 = aws.client("ec2", REGION)
    apps, (gitaly,) = hypervisor.of_role("gitlab-app"), hypervisor.of_role("gitaly")
    expected = {"gitlab-app": {b.instance_id for b in apps}, "gitaly": {gitaly.instance_id}}
    filters = rendered_filters(monitoring.server.read("/var/opt/gitlab/prometheus/prometheus.yml"))
    assert sorted(filters) == sorted(j.name for j in scrape.jobs(cfg))
    for job, wanted in filters.items():
        found = {i["InstanceId"] for r in ec2.describe_instances(Filters=wanted)["Reservations"] for i in r["Instances"]}
        assert found == expected[job.rsplit("-", 1)[0]], job
    assert len(expected["gitlab-app"]) == 1 and len(hypervisor.booted) == 3

    # The servers it scrapes moved their exporters to their private address (their user data said so).
    for booted in apps + [gitaly]:
        rb = booted.server.read("/etc/gitlab/gitlab.rb")
        (address,) = set(re.findall(r"node_exporter\['listen_address'\] = '([0-9.]+):9100'", rb))
        assert not address.startswith("127.")
        port = "9236" if booted.role == "gitaly" else "9229"
        assert f"'{address}:{port}'" in rb, rb
