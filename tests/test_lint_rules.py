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
              "Secret: SecretString holds a value in the template"],
    "E9007": ["Database: DeletionProtection must be true"],
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
