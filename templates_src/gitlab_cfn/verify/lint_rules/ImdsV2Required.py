"""E9002: every launch template requires IMDSv2, and every instance launches from one."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch


class ImdsV2Required(CloudFormationLintRule):
    id = "E9002"
    shortdesc = "Instances require IMDSv2"
    description = ("Launch templates set MetadataOptions.HttpTokens to required; instances launch from a "
                   "launch template of the same template (AWS::EC2::Instance has no metadata options)")
    source_url = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-IMDS-new-instances.html"
    tags = ["gitlab-cfn", "ec2", "imds"]

    def match(self, cfn):
        matches = []
        templates = cfn.get_resources(["AWS::EC2::LaunchTemplate"])
        for name, resource in templates.items():
            data = resource.get("Properties", {}).get("LaunchTemplateData", {})
            tokens = data.get("MetadataOptions", {}).get("HttpTokens")
            if tokens != "required":
                matches.append(RuleMatch(["Resources", name, "Properties", "LaunchTemplateData"],
                                         f"{name}: MetadataOptions.HttpTokens must be required (got {tokens!r})"))
        for name, resource in cfn.get_resources(["AWS::EC2::Instance"]).items():
            spec = resource.get("Properties", {}).get("LaunchTemplate", {})
            target = spec.get("LaunchTemplateId", {}) if isinstance(spec, dict) else {}
            ref = target.get("Ref") if isinstance(target, dict) else None
            if ref not in templates:
                matches.append(RuleMatch(["Resources", name, "Properties"],
                                         f"{name}: must launch from a launch template of this template "
                                         "that requires IMDSv2"))
        return matches
