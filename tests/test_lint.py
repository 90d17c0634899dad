"""cfn-lint, informational checks included, over every build variant; and the gate failing."""

import json

import pytest
import yaml
from conftest import VARIANTS
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.compile.tier import suppress
from gitlab_cfn.verify import lint


@pytest.mark.parametrize("az_count", [2, 3])
def test_default_builds_lint_clean_in_every_tested_region(tmp_path, az_count):
    compiler.write_build(config.from_dict({"az_count": az_count}), tmp_path)
    findings, count = lint.lint_build(tmp_path)
    # Every template of the build (the manifest lists them).
    assert count == len(json.loads((tmp_path / "manifest.json").read_text())["templates"]) >= 11
    assert [str(f) for f in findings] == []


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"default", "three-az"}))
def test_other_variants_lint_clean(tmp_path, name):
    compiler.write_build(config.from_dict(VARIANTS[name]), tmp_path)
    findings, _ = lint.lint_build(tmp_path, regions=("us-east-1",))
    assert [str(f) for f in findings] == []


def _one_template(tmp_path, mutate):
    """A build folder whose network template was changed by ``mutate``."""
    compiler.write_build(config.BuildConfig(), tmp_path)
    path = tmp_path / "templates" / "network.template.yaml"
    template = yaml.safe_load(path.read_text())
    mutate(template)
    path.write_text(yaml.safe_dump(template, sort_keys=True))
    return tmp_path


def test_an_invalid_property_fails_the_gate(tmp_path):
    def bad(t):
        t["Resources"]["Vpc"]["Properties"]["EnableDnsSupport"] = "sometimes"
    findings, _ = lint.lint_build(_one_template(tmp_path, bad), regions=("us-east-1",))
    assert [(f.path, f.rule) for f in findings] == [("templates/network.template.yaml", "E3012")]


def test_an_informational_finding_fails_the_gate(tmp_path):
    def bad(t):
        t["Resources"]["Vpc"]["Properties"]["CidrBlock"] = {"Fn::Join": ["", [{"Ref": "VpcCidr"}]]}
    findings, _ = lint.lint_build(_one_template(tmp_path, bad), regions=("us-east-1",))
    assert {f.rule for f in findings} == {"I1022"}
    assert findings[0].level == "informational"


def test_a_suppression_needs_a_reason(tmp_path):
    def silenced_without_reason(t):
        t["Resources"]["Vpc"]["Properties"]["CidrBlock"] = {"Fn::Join": ["", [{"Ref": "VpcCidr"}]]}
        t["Resources"]["Vpc"]["Metadata"] = {"cfn-lint": {"config": {"ignore_checks": ["I1022"]}}}
    findings, _ = lint.lint_build(_one_template(tmp_path, silenced_without_reason), regions=("us-east-1",))
    assert [(f.rule, f.message) for f in findings] == [
        ("GLC001", "Vpc: I1022 is suppressed without a reason (Metadata.gitlab-cfn.suppressions.I1022)")]


def test_a_suppression_with_a_reason_is_honoured(tmp_path):
    from troposphere import ec2

    vpc = ec2.VPC("Vpc", CidrBlock="10.0.0.0/16")
    suppress(vpc, "I1022", "kept as a Join for the example")
    metadata = vpc.Metadata

    def silenced(t):
        t["Resources"]["Vpc"]["Properties"]["CidrBlock"] = {"Fn::Join": ["", [{"Ref": "VpcCidr"}]]}
        t["Resources"]["Vpc"]["Metadata"] = metadata
    findings, _ = lint.lint_build(_one_template(tmp_path, silenced), regions=("us-east-1",))
    assert findings == []
    with pytest.raises(ValueError):
        suppress(vpc, "I3011", "  ")


def test_lint_without_a_build_is_bad_input(tmp_path):
    from gitlab_cfn.errors import ConfigError

    with pytest.raises(ConfigError, match="no manifest.json in .*; run 'gitlab-cfn build' first"):
        lint.lint_build(tmp_path / "nothing")
    (tmp_path / "manifest.json").write_text(json.dumps({"templates": {}}))
    assert lint.lint_build(tmp_path) == ([], 0)


def test_a_changed_or_missing_boot_bundle_fails_the_gate(tmp_path):
    manifest = compiler.write_build(config.BuildConfig(), tmp_path)
    (entry,) = compiler.stack_files(manifest)
    path = tmp_path / entry["path"]
    path.write_bytes(path.read_bytes() + b"\0")
    findings, _ = lint.lint_build(tmp_path, regions=("us-east-1",))
    assert [(f.path, f.rule, f.message) for f in findings] == [
        (entry["path"], "GLC002", "changed since it was built: its sha256 differs from the manifest's")]
    path.unlink()
    findings, _ = lint.lint_build(tmp_path, regions=("us-east-1",))
    assert [(f.rule, f.message) for f in findings] == [("GLC002", "listed in the manifest but missing")]


def test_gitaly_on_the_shared_gitlab_image_fails_the_gate(monkeypatch):
    """The design that replaced the Gitaly server with its volume attached on an upgrade (its
    image from the SSM-typed GitLabAmiId, shared with the app) is caught in the real build."""
    from gitlab_cfn.compile.tier import Tier

    original = Tier.param

    def shared_image(self, name):
        return original(self, "GitLabAmiId" if (self.name, name) == ("gitaly", "GitalyAmiId") else name)

    monkeypatch.setattr(Tier, "param", shared_image)
    texts = compiler.compile_templates(config.BuildConfig())
    findings = [f for f in lint.lint_text("gitaly", texts["gitaly.template.yaml"], ("us-east-1",)) if f.rule == "E9010"]
    assert [f.message for f in findings] == [
        "GitalyInstance holds data and its ImageId hangs on parameter GitLabAmiId, shared in the parent stack "
        "(SSM-typed: AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>; also passed to app): a new value would "
        "replace the server with its data volume attached; give it a parameter of its own, pinned"]
