"""E9005: every S3 bucket is named, and its name starts with gl- (the instance policy's scope)."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.verify.lint_rules._helpers import leading_text

PREFIX = "gl-"


class BucketNamePrefix(CloudFormationLintRule):
    id = "E9005"
    shortdesc = "Bucket names start with gl-"
    description = "Every AWS::S3::Bucket sets a BucketName that starts with gl-, as GitLab's guide assumes"
    source_url = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"
    tags = ["gitlab-cfn", "s3"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.get_resources(["AWS::S3::Bucket"]).items():
            value = resource.get("Properties", {}).get("BucketName")
            lead = leading_text(value)
            if lead is None or not lead.startswith(PREFIX):
                matches.append(RuleMatch(["Resources", name, "Properties"],
                                         f"{name}: BucketName must start with {PREFIX} (got {lead!r})"))
        return matches
