"""E9003: every EBS volume and block device is encrypted."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.verify.lint_rules._helpers import literal_true


class VolumesEncrypted(CloudFormationLintRule):
    id = "E9003"
    shortdesc = "Volumes and block devices are encrypted"
    description = "AWS::EC2::Volume, and the EBS block devices of launch templates and instances, set Encrypted"
    source_url = "https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption.html"
    tags = ["gitlab-cfn", "ec2", "encryption"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.get_resources(["AWS::EC2::Volume"]).items():
            if not literal_true(resource.get("Properties", {}).get("Encrypted")):
                matches.append(RuleMatch(["Resources", name, "Properties"], f"{name}: Encrypted must be true"))
        for name, resource in cfn.get_resources(["AWS::EC2::LaunchTemplate", "AWS::EC2::Instance"]).items():
            props = resource.get("Properties", {})
            path = ["Resources", name, "Properties"]
            if resource["Type"] == "AWS::EC2::LaunchTemplate":
                props = props.get("LaunchTemplateData", {})
                path.append("LaunchTemplateData")
            for i, device in enumerate(props.get("BlockDeviceMappings", []) or []):
                ebs = device.get("Ebs") if isinstance(device, dict) else None
                if ebs is not None and not literal_true(ebs.get("Encrypted")):
                    matches.append(RuleMatch(path + ["BlockDeviceMappings", i, "Ebs"],
                                             f"{name}: block device {device.get('DeviceName')} must set Encrypted: true"))
        return matches
