"""Stand-in patch for the tags CloudFormation gives an Auto Scaling group's instances.

Registered with ``patches.patch`` (imported by ``patches``), tested in
``tests/test_standin_prometheus.py``:

- ``auto_scaling_group_cloudformation_tags``: "CloudFormation adds the following tags to
  all Auto Scaling groups and associated instances: aws:cloudformation:stack-name,
  aws:cloudformation:stack-id, aws:cloudformation:logical-id"
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-autoscaling-autoscalinggroup-tagproperty.html).
  Stock moto tags the EC2 resources a stack creates itself, but neither the groups nor the
  instances they launch, so EC2 service discovery by logical id (the monitoring server's
  Prometheus) would find no group's servers.
"""

from __future__ import annotations

import copy

from gitlab_cfn.standin.patches import patch

CFN_TAGS = ("aws:cloudformation:stack-name", "aws:cloudformation:stack-id", "aws:cloudformation:logical-id")


@patch
def auto_scaling_group_cloudformation_tags() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    original = FakeAutoScalingGroup.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        stack_id, logical_id = kwargs.get("StackId"), kwargs.get("LogicalId")
        if stack_id and logical_id:
            # arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>
            stack_name = stack_id.split(":stack/", 1)[-1].split("/", 1)[0]
            cloudformation_json = copy.deepcopy(cloudformation_json)
            properties = cloudformation_json.setdefault("Properties", {})
            own = [t for t in properties.get("Tags") or [] if t.get("Key") not in CFN_TAGS]
            properties["Tags"] = own + [
                {"Key": key, "Value": value, "PropagateAtLaunch": True}
                for key, value in zip(CFN_TAGS, (stack_name, stack_id, logical_id))]
        return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    FakeAutoScalingGroup.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
