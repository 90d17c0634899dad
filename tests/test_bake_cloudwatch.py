"""The AMI builder installs the CloudWatch agent, and only a package signed by the key it
expects (the builder's program on the namespace machine of test_bake_install; the package,
its detached signature and the key are real, made by support/cloudwatch_agent.py)."""

from support import cloudwatch_agent
from test_bake_install import bake, builder, pytestmark, signing_key  # noqa: F401  (fixture and skip mark)
from support.processes import no_gpg_agent_outlives_the_test  # noqa: F401  (autouse)

DEFAULT_FINGERPRINT = "937616F3450B7D806CBD9725D58167303B789C72"


def agent_status(m) -> str:
    return m.shell("dpkg-query -W -f '${Status} ${Version}' amazon-cloudwatch-agent 2>/dev/null || true").stdout


def test_the_image_carries_the_signed_agent(tmp_path, signing_key):
    m = builder(tmp_path, signing_key)
    assert agent_status(m) == ""
    result = bake(m)
    assert result.returncode == 0, result.stderr
    assert agent_status(m) == "install ok installed 1.300064.0b1337-1"
    assert m.shell(f"test -x {cloudwatch_agent.CTL}").returncode == 0
    assert "installed the CloudWatch agent 1.300064.0b1337-1" in result.stderr


def test_a_package_that_does_not_match_its_signature_fails_the_bake(tmp_path, signing_key):
    m = builder(tmp_path, signing_key)
    with open(m.state / "amazon-cloudwatch-agent.deb", "ab") as f:
        f.write(b"\0")
    result = bake(m)
    assert result.returncode != 0
    assert "the CloudWatch agent package does not match its signature" in result.stderr
    assert agent_status(m) == ""
    assert (m.state / "tags.log").read_text() == "Key=gitlab-cfn:bake,Value=failed\n"


def test_a_key_that_is_not_aws_fails_the_bake(tmp_path, signing_key):
    m = builder(tmp_path, signing_key)
    # Without the test's override the builder expects AWS's own key, which this one is not.
    result = bake(m, GITLAB_CFN_CLOUDWATCH_AGENT_FINGERPRINT=DEFAULT_FINGERPRINT)
    assert result.returncode != 0
    assert f"not AWS's {DEFAULT_FINGERPRINT}" in result.stderr
    assert agent_status(m) == ""
