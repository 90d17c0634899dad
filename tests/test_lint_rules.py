"""The project's own cfn-lint rules: each fails its bad fixture and passes its good one."""

from pathlib import Path

import pytest
from gitlab_cfn.verify import lint

FIXTURES = Path(__file__).parent / "data" / "lint_rules"
RULES = sorted(p.name for p in FIXTURES.iterdir())
# What each bad fixture must be told, at least.
EXPECTED = {
    "E9001": ["Data (AWS::EC2::Volume) holds data: DeletionPolicy must be Snapshot or Retain (got Delete)",
              "Token (AWS::SecretsManager::Secret) holds data: DeletionPolicy must be Retain (got nothing, which deletes it)"],
    "E9002": ["Template: MetadataOptions.HttpTokens must be required (got 'optional')",
              "Server: must launch from a launch template of this template that requires IMDSv2"],
    "E9003": ["Data: Encrypted must be true", "Template: block device /dev/sda1 must set Encrypted: true"],
    "E9004": ["AppSecurityGroup: ingress from 0.0.0.0/0 is only allowed on ports 80 and 443 of LoadBalancerSecurityGroup",
              "AppFromAnywhereHttp: every security group rule needs a Description"],
    "E9005": ["Uploads: BucketName must start with gl- (got 'gitlab-uploads-')",
              "Unnamed: BucketName must start with gl- (got None)"],
    "E9006": ["parameter DatabasePassword looks like a secret",
              "Database.MasterUserPassword must be a {{resolve:secretsmanager:...}} reference",
              "Secret: SecretString holds a value in the template",
              "Hidden: SecretString holds a value in the template",
              "Restored.MasterUserPassword must be a {{resolve:secretsmanager:...}} reference"],
    "E9007": ["Database: DeletionProtection must be true"],
    "E9008": ["AppTemplate: root volume /dev/sda1 must be at least the GitLab image's 30 GiB (got parameter "
              "AppRootVolumeSize with MinValue 20)",
              "GitalyTemplate: root volume /dev/sda1 must be at least the GitLab image's 30 GiB (got 20 GiB)"],
    "E9009": ["Group: HealthCheckGracePeriod 300 s is shorter than its CreationPolicy signal timeout PT60M (3600 s)",
              "Group: HealthCheckGracePeriod 300 s is shorter than its rolling update PauseTime PT1H30M (5400 s)",
              "NoGrace: HealthCheckGracePeriod 0 s is shorter than its CreationPolicy signal timeout PT15M"],
    "E9010": ["Gitaly holds data and its LaunchTemplate (version of Template) hangs on parameter GitLabAmiId, "
              "an SSM-typed parameter, resolved again on every update",
              "Gitaly holds data and its KeyName hangs on parameter KeyPairName, shared in the parent stack "
              "(also passed to app, bastion)",
              "Gitaly holds data and its SubnetId hangs on parameter SubnetId, also used by Neighbour",
              # A blank reason under shared-by-design explains nothing.
              "Unexplained holds data and its SubnetId hangs on parameter SubnetId, also used by Gitaly, Neighbour"],
}


def test_every_rule_has_fixtures_and_every_loaded_rule_is_tested():
    loaded = sorted(r.id for r in lint.rules() if r.id.startswith("E9"))
    assert loaded == RULES == sorted(EXPECTED)
    for rule in RULES:
        assert {p.name for p in (FIXTURES / rule).iterdir()} == {"good.yaml", "bad.yaml"}


def _findings(rule, kind):
    path = FIXTURES / rule / f"{kind}.yaml"
    return [f for f in lint.lint_text(f"{rule}/{kind}.yaml", path.read_text(), ("us-east-1",)) if f.rule == rule]


@pytest.mark.parametrize("rule", RULES)
def test_good_fixture_passes(rule):
    assert _findings(rule, "good") == []


@pytest.mark.parametrize("rule", RULES)
def test_bad_fixture_fails_with_a_clear_message(rule):
    messages = [f.message for f in _findings(rule, "bad")]
    assert messages
    for expected in EXPECTED[rule]:
        assert any(m.startswith(expected) for m in messages), (expected, messages)
