"""E9006: no secret in plain text: passwords come from Secrets Manager dynamic references."""

import re

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.verify.lint_rules._helpers import is_dynamic_secret_reference

SECRET_NAME = re.compile(r"(password|passwd|secret|token|credential|private ?key)", re.I)
# Names that point at a secret or a key pair, and are no secret themselves.
NOT_SECRETS = re.compile(r"(Arn|Id|Name|KeyPairName)$")
SECRET_PROPERTIES = {
    "AWS::RDS::DBInstance": ["MasterUserPassword"],
    "AWS::RDS::DBCluster": ["MasterUserPassword"],
    "AWS::ElastiCache::ReplicationGroup": ["AuthToken"],
    "AWS::DocDB::DBCluster": ["MasterUserPassword"],
    "AWS::Redshift::Cluster": ["MasterUserPassword"],
}


NO_VALUE = {"Ref": "AWS::NoValue"}


def _branches(value):
    """The values a property may take: both branches of an Fn::If, recursively."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("Fn::If"), list) \
            and len(value["Fn::If"]) == 3:
        return _branches(value["Fn::If"][1]) + _branches(value["Fn::If"][2])
    return [value]


class NoPlaintextSecrets(CloudFormationLintRule):
    id = "E9006"
    shortdesc = "No plain-text secrets"
    description = ("Secret-like parameters are NoEcho; passwords and tokens of RDS and ElastiCache are "
                   "{{resolve:secretsmanager:...}} dynamic references; a secret's SecretString is never a "
                   "literal value (only the empty placeholder {})")
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references-secretsmanager.html"
    tags = ["gitlab-cfn", "secrets"]

    def match(self, cfn):
        matches = []
        for name, param in cfn.template.get("Parameters", {}).items():
            if SECRET_NAME.search(name) and not NOT_SECRETS.search(name):
                if str(param.get("NoEcho", "false")).lower() != "true":
                    matches.append(RuleMatch(["Parameters", name],
                                             f"parameter {name} looks like a secret: make it NoEcho, or better, "
                                             "generate it in Secrets Manager"))
        for name, resource in cfn.get_resources(list(SECRET_PROPERTIES)).items():
            props = resource.get("Properties", {})
            for prop in SECRET_PROPERTIES[resource["Type"]]:
                if prop in props and not all(v == NO_VALUE or is_dynamic_secret_reference(v)
                                             for v in _branches(props[prop])):
                    matches.append(RuleMatch(["Resources", name, "Properties", prop],
                                             f"{name}.{prop} must be a {{{{resolve:secretsmanager:...}}}} reference"))
        for name, resource in cfn.get_resources(["AWS::SecretsManager::Secret"]).items():
            value = resource.get("Properties", {}).get("SecretString")
            # A copy of another secret (a dynamic reference, gitlab-cfn restore) holds no value either.
            if value is not None and not all(v in ("{}", NO_VALUE) or is_dynamic_secret_reference(v)
                                             for v in _branches(value)):
                matches.append(RuleMatch(["Resources", name, "Properties", "SecretString"],
                                         f"{name}: SecretString holds a value in the template; use "
                                         "GenerateSecretString, or the empty placeholder {}"))
        return matches
