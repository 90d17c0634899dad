"""E9001: resources that hold data are kept on delete and on replacement."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

# Types whose data a stack update or deletion must never take, and the policies
# each accepts (Snapshot only where CloudFormation supports it for the type).
STATEFUL = {
    "AWS::RDS::DBInstance": ("Snapshot", "Retain"),
    "AWS::RDS::DBCluster": ("Snapshot", "Retain"),
    "AWS::ElastiCache::ReplicationGroup": ("Snapshot", "Retain"),
    "AWS::ElastiCache::CacheCluster": ("Snapshot", "Retain"),
    "AWS::EC2::Volume": ("Snapshot", "Retain"),
    "AWS::S3::Bucket": ("Retain",),
    "AWS::KMS::Key": ("Retain",),
    "AWS::SecretsManager::Secret": ("Retain",),
    "AWS::Logs::LogGroup": ("Retain",),
}


class StatefulResourcesKept(CloudFormationLintRule):
    id = "E9001"
    shortdesc = "Stateful resources are retained or snapshotted"
    description = ("RDS, ElastiCache, EBS volumes, S3 buckets, KMS keys, secrets and log groups carry "
                   "DeletionPolicy and UpdateReplacePolicy of Retain or Snapshot")
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html"
    tags = ["gitlab-cfn", "resources", "deletionpolicy"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.get_resources(list(STATEFUL)).items():
            allowed = STATEFUL[resource["Type"]]
            for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
                value = resource.get(attribute)
                if value not in allowed:
                    matches.append(RuleMatch(
                        ["Resources", name, attribute] if value is not None else ["Resources", name],
                        f"{name} ({resource['Type']}) holds data: {attribute} must be "
                        f"{' or '.join(allowed)} (got {value or 'nothing, which deletes it'})"))
        return matches
