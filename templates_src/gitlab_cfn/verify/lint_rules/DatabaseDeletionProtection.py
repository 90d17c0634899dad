"""E9007: the database keeps deletion protection on."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.verify.lint_rules._helpers import literal_true


class DatabaseDeletionProtection(CloudFormationLintRule):
    id = "E9007"
    shortdesc = "Databases have deletion protection"
    description = "AWS::RDS::DBInstance and AWS::RDS::DBCluster set DeletionProtection: true"
    source_url = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_DeleteInstance.html"
    tags = ["gitlab-cfn", "rds"]

    def match(self, cfn):
        return [
            RuleMatch(["Resources", name, "Properties"], f"{name}: DeletionProtection must be true")
            for name, resource in cfn.get_resources(["AWS::RDS::DBInstance", "AWS::RDS::DBCluster"]).items()
            if not literal_true(resource.get("Properties", {}).get("DeletionProtection"))
        ]
