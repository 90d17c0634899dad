"""`gitlab-cfn check`: checkov, IAM analysis and the skip allowlist, passing and failing."""

import json
import subprocess
import time

import pytest
import yaml
from conftest import VARIANTS, templates_for
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.operate import bake
from gitlab_cfn.verify import checkov, iam
from gitlab_cfn.verify.gate import run_gate
from gitlab_cfn.verify.lint import lint_build
from test_cli import EXE


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


def mutated(built, tmp_path, tier, change):
    """A copy of the build whose <tier> template was changed by ``change(template)``."""
    import shutil

    out = tmp_path / "build"
    shutil.copytree(built, out)
    path = out / "templates" / f"{tier}.template.yaml"
    template = yaml.safe_load(path.read_text())
    change(template)
    path.write_text(yaml.safe_dump(template, sort_keys=True))
    return out


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_passes_the_whole_gate(tmp_path, name):
    compiler.write_build(config.from_dict(VARIANTS[name]), tmp_path)
    result = run_gate(tmp_path)
    assert [str(f) for f in result.findings] == []
    assert result.policies >= 20


def test_whole_gate_takes_under_a_minute(built):
    started = time.perf_counter()
    findings, _ = lint_build(built)
    result = run_gate(built)
    elapsed = time.perf_counter() - started
    print(f"lint + check: {elapsed:.1f}s ({result.timings})")
    assert findings == [] and result.findings == []
    assert elapsed < 60


def test_a_checkov_failure_fails_the_gate(built, tmp_path):
    def open_bucket(t):
        del t["Resources"]["UploadsBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    result = run_gate(mutated(built, tmp_path, "storage", open_bucket))
    failed = {(f.rule, f.message.split(":")[0]) for f in result.findings}
    assert ("CKV_AWS_53", "UploadsBucket") in failed
    assert all(f.path == "templates/storage.template.yaml" for f in result.findings)


def test_a_skip_off_the_allowlist_fails(built, tmp_path):
    def skip(t):
        t["Resources"]["UploadsBucket"]["Metadata"] = {"checkov": {"skip": [{"id": "CKV_AWS_21", "comment": "cheaper"}]}}
    out = mutated(built, tmp_path, "storage", skip)
    findings = checkov.audit_skips("storage", (out / "templates" / "storage.template.yaml").read_text())
    assert [(f.rule, f.message) for f in findings] == [
        ("GLC003", "UploadsBucket: checkov skip CKV_AWS_21 is not on the allowlist (checkov-allowlist.yaml)")]


def test_a_skip_without_reason_fails(built, tmp_path):
    def skip(t):
        t["Resources"]["LogsBucket"]["Metadata"]["checkov"]["skip"][0]["comment"] = " "
    result = run_gate(mutated(built, tmp_path, "storage", skip), with_checkov=False)
    assert [(f.rule, f.message) for f in result.findings] == [
        ("GLC002", "LogsBucket: checkov skip CKV_AWS_18 has no reason (comment)")]


def test_every_allowlisted_skip_is_used_and_explained(built):
    used = {}
    for path in (built / "templates").glob("*.yaml"):
        for name, res in _load(built, path.name.split(".")[0])["Resources"].items():
            for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert skip["comment"].strip()
                used.setdefault(skip["id"], set()).add(name)
    # and in the build of a Gitaly Cluster size (its internal load balancer)
    for template in templates_for(VARIANTS["cluster"]).values():
        for name, res in template["Resources"].items():
            for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert skip["comment"].strip()
                used.setdefault(skip["id"], set()).add(name)
    assert used == checkov.allowlist()


def test_iam_rules_catch_wildcards_foreign_buckets_and_typos(built, tmp_path):
    def widen(t):
        policy = t["Resources"]["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        policy["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
        policy["Statement"].append({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::corp-data/*"})
        policy["Statement"].append({"Effect": "Allow", "Action": ["s3:GetObjekt"],
                                    "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::gl-x/*"}})
        trust = t["Resources"]["InstanceRole"]["Properties"]["AssumeRolePolicyDocument"]
        trust["Statement"][0]["Principal"] = {"AWS": "*"}
    result = run_gate(mutated(built, tmp_path, "storage", widen), with_checkov=False)
    messages = [(f.rule, f.message) for f in result.findings]
    # The buckets are the stack's own or an old stack's (here or in another region): every branch is analysed.
    label = "InstanceRole policy gitlab-object-storage [RestoreBuckets=False] [RestoreBucketsElsewhere=False]"
    assert ("GLC010", f"{label}: allows the '*' action") in messages
    assert ("GLC010", f"{label}: S3 actions on 'arn:aws:s3:::corp-data/*', "
                      "which is not a gl- bucket (only s3:GetObject may read the published templates or Service Catalog's copy)") in messages
    assert any(rule == "PARLIAMENT:UNKNOWN_ACTION" and "s3:GetObjekt" in m for rule, m in messages)
    assert ("GLC011", "InstanceRole trust policy: only AWS services may assume the role (got {'AWS': '*'})") in messages


def test_conditional_documents_are_analysed_in_both_branches(built):
    docs = [label for label, _, _ in iam.resolved_documents(_load(built, "storage")) if label.startswith("LogsBucketPolicy")]
    assert docs == ["LogsBucketPolicy [ElbLogAccountRegion=True]", "LogsBucketPolicy [ElbLogAccountRegion=False]"]


def test_resolver_gives_real_looking_arns(built):
    storage = _load(built, "storage")
    resolver = iam.Resolver(storage, {})
    assert resolver.value({"Fn::GetAtt": ["UploadsBucket", "Arn"]}) == \
        "arn:aws:s3:::gl-uploads-123456789012-us-east-1-0a1b2c3d"
    assert resolver.value({"Fn::Sub": ["${B}/*", {"B": {"Fn::GetAtt": ["UploadsBucket", "Arn"]}}]}).endswith("-0a1b2c3d/*")


def test_the_ami_builder_policy_is_clean_too():
    from parliament import analyze_policy_string

    document = json.loads(bake.BuilderProfile(None).policy().to_json())
    assert analyze_policy_string(json.dumps(document), ignore_private_auditors=True).findings == []
    assert iam.project_rules("builder", document) == []


def test_check_command_exit_codes(built, tmp_path):
    ok = subprocess.run([EXE, "check", "--build", str(built)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout == "" and "0 findings" in ok.stderr

    def leak(t):
        t["Resources"]["Database"]["Properties"]["PubliclyAccessible"] = True
    bad = subprocess.run([EXE, "check", "--build", str(mutated(built, tmp_path, "database", leak))],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    every = len(json.loads((built / "manifest.json").read_text())["templates"])
    assert "CKV_AWS_17" in bad.stdout and bad.stderr.startswith(f"gitlab-cfn: error: checked {every} templates")

    missing = subprocess.run([EXE, "check", "--build", str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 2


def _load(build, tier):
    from cfnlint.decode import decode_str

    template, _ = decode_str((build / "templates" / f"{tier}.template.yaml").read_text())
    return template
