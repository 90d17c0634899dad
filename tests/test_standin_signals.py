"""The stand-in's resource signals (gitlab_cfn/standin/signals.py), one test per patch.

``SignalResource`` is always there; ``CreationPolicy`` is honoured only by a
stand-in started with ``GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT`` (started here, apart
from the session's one, which keeps creating stacks at once).
"""

import json
import os
import time

import botocore.exceptions
import pytest
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.standin import StandIn

REGION = "eu-west-1"
IMAGE = "ami-0a11ab5e1c0de1851"


@pytest.fixture(scope="module")
def waiting_standin():
    """A stand-in that holds resources with a CreationPolicy until they are signalled."""
    os.environ["GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT"] = "30"
    try:
        server = StandIn().start()
    finally:
        del os.environ["GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT"]
    yield server
    server.stop()


@pytest.fixture
def waiting_aws(waiting_standin):
    waiting_standin.reset()
    return Aws(endpoint_url=waiting_standin.endpoint)


def instance_template(timeout: str = "PT10M") -> dict:
    return {"Resources": {
        "Server": {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": IMAGE, "InstanceType": "t3.micro"},
                   "CreationPolicy": {"ResourceSignal": {"Count": 1, "Timeout": timeout}}},
        # Created only once the server is: it depends on it.
        "After": {"Type": "AWS::SNS::Topic", "DependsOn": "Server"}},
        "Outputs": {"Topic": {"Value": {"Ref": "After"}}}}


def group_template(count: int) -> dict:
    return {"Resources": {
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": IMAGE, "InstanceType": "t3.micro"}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
            "MinSize": str(count), "MaxSize": str(count), "AvailabilityZones": [f"{REGION}a"],
            "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"},
                               "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}},
                  "CreationPolicy": {"ResourceSignal": {"Count": count, "Timeout": "PT10M"},
                                     "AutoScalingCreationPolicy": {"MinSuccessfulInstancesPercent": 100}}}}}


def create(aws, template: dict, name: str = "probe"):
    cfn = aws.client("cloudformation", REGION)
    return cfn, cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))["StackId"]


def status(cfn, stack_id) -> str:
    return cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]


def settle(cfn, stack_id, seconds: float = 40) -> str:
    deadline = time.monotonic() + seconds
    while (now := status(cfn, stack_id)).endswith("_IN_PROGRESS") and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def instances(aws, state: str = "running") -> list[str]:
    reservations = aws.client("ec2", REGION).describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": [state]}])["Reservations"]
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def wait_for_instances(aws, count: int) -> list[str]:
    deadline = time.monotonic() + 20
    while len(found := instances(aws)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(found) == count
    return found


def failure_reason(cfn, stack_id, logical_id: str) -> str:
    return [e.get("ResourceStatusReason", "") for e in cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
            if e["LogicalResourceId"] == logical_id and e["ResourceStatus"] == "CREATE_FAILED"][0]


def signal(cfn, stack, logical_id, unique_id, status_="SUCCESS"):
    cfn.signal_resource(StackName=stack, LogicalResourceId=logical_id, UniqueId=unique_id, Status=status_)


def test_patch_creation_policy_waits_for_signals(waiting_aws):
    cfn, stack_id = create(waiting_aws, instance_template())
    (instance,) = wait_for_instances(waiting_aws, 1)
    time.sleep(1)
    # Waiting: the stack is in progress, without outputs, and what depends on the server is not
    # created yet, even when asked for (moto's lazy map would create it for the asking request).
    assert status(cfn, stack_id) == "CREATE_IN_PROGRESS"
    assert "Outputs" not in cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    listed = cfn.describe_stack_resources(StackName=stack_id)["StackResources"]
    assert "After" not in [r.get("LogicalResourceId") for r in listed]
    assert waiting_aws.client("sns", REGION).list_topics()["Topics"] == []
    signal(cfn, "probe", "Server", instance)
    assert settle(cfn, stack_id) == "CREATE_COMPLETE"
    assert len(waiting_aws.client("sns", REGION).list_topics()["Topics"]) == 1
    # Created: it awaits no more signals.
    with pytest.raises(botocore.exceptions.ClientError, match="not awaiting signals"):
        signal(cfn, "probe", "Server", instance)


def test_a_failure_signal_fails_the_resource_and_rolls_the_stack_back(waiting_aws):
    cfn, stack_id = create(waiting_aws, instance_template())
    (instance,) = wait_for_instances(waiting_aws, 1)
    signal(cfn, stack_id, "Server", instance, "FAILURE")
    assert settle(cfn, stack_id) == "ROLLBACK_COMPLETE"
    assert failure_reason(cfn, stack_id, "Server") == f"Received FAILURE signal with UniqueId {instance}"
    assert waiting_aws.client("sns", REGION).list_topics()["Topics"] == []
    assert instances(waiting_aws) == []


def test_no_signal_within_the_timeout_fails_the_resource(waiting_aws):
    cfn, stack_id = create(waiting_aws, instance_template(timeout="PT2S"))
    assert settle(cfn, stack_id) == "ROLLBACK_COMPLETE"
    assert failure_reason(cfn, stack_id, "Server") == \
        "Failed to receive 1 resource signal(s) within the specified duration"


def test_a_group_needs_count_signals_from_distinct_instances(waiting_aws):
    cfn, stack_id = create(waiting_aws, group_template(2))
    first, second = wait_for_instances(waiting_aws, 2)
    signal(cfn, "probe", "Group", first)
    signal(cfn, "probe", "Group", first)  # the same instance again counts once
    time.sleep(1)
    assert status(cfn, stack_id) == "CREATE_IN_PROGRESS"
    signal(cfn, "probe", "Group", second)
    assert settle(cfn, stack_id) == "CREATE_COMPLETE"


def test_one_failed_member_fails_a_group_that_needs_them_all(waiting_aws):
    cfn, stack_id = create(waiting_aws, group_template(2))
    first, second = wait_for_instances(waiting_aws, 2)
    signal(cfn, "probe", "Group", first)
    signal(cfn, "probe", "Group", second, "FAILURE")
    assert settle(cfn, stack_id) == "ROLLBACK_COMPLETE"
    assert failure_reason(cfn, stack_id, "Group") == \
        "Received 1 FAILURE signal(s) out of 2. Unable to satisfy 100% MinSuccessfulInstancesPercent requirement"


def test_patch_signal_resource(local_aws):
    """The session's stand-in (no waiting): the call exists and refuses what CloudFormation refuses."""
    cfn = local_aws.client("cloudformation", REGION)
    stack_id = cfn.create_stack(StackName="probe", TemplateBody=json.dumps(instance_template()))["StackId"]
    # Created at once: nothing awaits a signal.
    assert status(cfn, stack_id) == "CREATE_COMPLETE"
    with pytest.raises(botocore.exceptions.ClientError, match="Server of stack probe is not awaiting signals"):
        signal(cfn, "probe", "Server", "i-0123456789abcdef0")
    with pytest.raises(botocore.exceptions.ClientError, match="Resource Nothing does not exist for stack probe"):
        signal(cfn, "probe", "Nothing", "i-0123456789abcdef0")
    with pytest.raises(botocore.exceptions.ClientError, match="Stack with id nothing does not exist"):
        signal(cfn, "nothing", "Server", "i-0123456789abcdef0")
    with pytest.raises(botocore.exceptions.ClientError, match=r"enum value set: \[SUCCESS, FAILURE\]"):
        signal(cfn, "probe", "Server", "i-0123456789abcdef0", "DONE")
