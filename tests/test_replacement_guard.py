"""`gitlab-cfn diff`: a corpus of before/after pairs, and real builds."""

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cfnlint.decode import decode_str
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.verify.replacement import diff_builds, diff_templates
from test_cli import EXE

BASE_TEXT = (Path(__file__).parent / "data" / "diff" / "base.yaml").read_text()


def base():
    template, _ = decode_str(BASE_TEXT)
    return copy.deepcopy(json.loads(json.dumps(template)))


def rename_bucket_id(t):
    t["Resources"]["UserUploadsBucket"] = t["Resources"].pop("UploadsBucket")


def flip_encryption(t):
    t["Resources"]["Database"]["Properties"]["StorageEncrypted"] = False


def rename_database(t):
    t["Resources"]["Database"]["Properties"]["DBName"] = "gitlab"


def redis_port(t):
    t["Resources"]["RedisReplicationGroup"]["Properties"]["Port"] = 6380


def name_subnet_group(t):
    t["Resources"]["DatabaseSubnetGroup"]["Properties"]["DBSubnetGroupName"] = "gitlab-db"


def rename_bucket(t):
    t["Resources"]["UploadsBucket"]["Properties"]["BucketName"] = "gl-uploads-renamed"


def mutable_changes(t):
    t["Resources"]["Database"]["Properties"]["DBInstanceClass"] = "db.m6i.xlarge"
    t["Resources"]["Database"]["Properties"]["Tags"] = [{"Key": "team", "Value": "gitlab"}]
    t["Resources"]["RedisReplicationGroup"]["Properties"]["CacheNodeType"] = "cache.m6g.large"


def unprotected_replace(t):
    t["Resources"]["Database"]["Properties"]["DBName"] = "gitlab"
    t["Resources"]["Database"]["UpdateReplacePolicy"] = "Delete"


def unprotected_delete(t):
    t["Resources"]["UploadsBucket"]["DeletionPolicy"] = "Delete"


CORPUS = {
    # case: (change to the template, expected [(logical id, action, reason, holds data, data loss)])
    "renamed logical id": (rename_bucket_id, [("UploadsBucket", "delete", "logical id gone", True, False)]),
    "StorageEncrypted flipped": (flip_encryption, [
        ("Database", "replace", "StorageEncrypted changed (create-only)", True, False)]),
    "DBName changed": (rename_database, [("Database", "replace", "DBName changed (create-only)", True, False)]),
    "Redis Port changed": (redis_port, [
        ("RedisReplicationGroup", "replace", "Port changed (create-only)", True, False)]),
    "subnet group replaced, database in cascade": (name_subnet_group, [
        ("Database", "replace", "DBSubnetGroupName refers to DatabaseSubnetGroup, which is replaced", True, False),
        ("DatabaseSubnetGroup", "replace", "DBSubnetGroupName changed (create-only)", False, False)]),
    "bucket renamed": (rename_bucket, [("UploadsBucket", "replace", "BucketName changed (create-only)", True, False)]),
    "mutable changes": (mutable_changes, []),
    "replaced without a snapshot": (unprotected_replace, [
        ("Database", "replace", "DBName changed (create-only)", True, True)]),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus(case):
    change, expected = CORPUS[case]
    old, new = base(), base()
    change(new)
    changes, _ = diff_templates("database", old, new)
    assert [(c.logical_id, c.action, c.reasons[0], c.holds_data, c.data_loss) for c in changes] == expected


def test_deleting_an_unprotected_bucket_is_data_loss():
    old = base()
    unprotected_delete(old)
    new = base()
    del new["Resources"]["UploadsBucket"]
    (change,), _ = diff_templates("storage", old, new)
    assert (change.action, change.data_loss) == ("delete", True)


def test_conditional_create_only_may_replace():
    old, new = base(), base()
    new["Resources"]["Database"]["Properties"]["MultiAZ"] = True
    (change,), _ = diff_templates("database", old, new)
    assert (change.logical_id, change.action) == ("Database", "may replace")
    assert change.reasons == ["MultiAZ changed (create-only for some values)"]


def test_replacement_reaches_other_stacks_through_outputs():
    old, new = base(), base()
    rename_database(new)
    _, outputs = diff_templates("database", old, new)
    assert outputs == {"DatabaseEndpoint"}
    consumer = {"Parameters": {"DatabaseEndpoint": {"Type": "String"}}, "Resources": {"AuditBucket": {
        "Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
        "Properties": {"BucketName": {"Fn::Sub": "gl-audit-${DatabaseEndpoint}"}}}}}
    changes, _ = diff_templates("audit", consumer, copy.deepcopy(consumer), {"DatabaseEndpoint"})
    assert [(c.logical_id, c.action) for c in changes] == [("AuditBucket", "replace")]
    assert changes[0].reasons == ["BucketName refers to parameter DatabaseEndpoint, whose source is replaced"]


def _builds(tmp_path, old_cfg, new_cfg):
    old, new = tmp_path / "old", tmp_path / "new"
    compiler.write_build(config.from_dict(old_cfg), old)
    compiler.write_build(config.from_dict(new_cfg), new)
    return old, new


def test_identical_builds_change_nothing(tmp_path):
    old, new = _builds(tmp_path, {}, {})
    assert diff_builds(old, new) == []


def test_growing_to_three_zones_replaces_nothing(tmp_path):
    old, new = _builds(tmp_path, {}, {"az_count": 3})
    assert [c for c in diff_builds(old, new) if c.action != "delete"] == []
    assert diff_builds(old, new) == []


def test_a_launch_template_change_replaces_the_gitaly_server_in_cascade(tmp_path):
    old, new = _builds(tmp_path, {}, {})
    path = new / "templates" / "gitaly.template.yaml"
    template = yaml.safe_load(path.read_text())
    template["Resources"]["GitalyLaunchTemplate"]["Properties"]["LaunchTemplateData"]["Monitoring"]["Enabled"] = True
    path.write_text(yaml.safe_dump(template))
    gitaly = [c for c in diff_builds(old, new) if c.logical_id == "GitalyInstance"]
    assert gitaly and gitaly[0].holds_data
    assert "LaunchTemplate refers to GitalyLaunchTemplate.LatestVersionNumber, which changes" in gitaly[0].reasons


def test_a_key_pair_change_never_replaces_the_gitaly_server(tmp_path):
    """The key pair is shared with the other servers; the Gitaly server does not take it."""
    old, new = _builds(tmp_path, {}, {"ssh_key_pair": False})
    changes = diff_builds(old, new)
    assert changes and not [c for c in changes if c.logical_id == "GitalyInstance"]


def test_diff_command_fails_on_data_and_passes_when_allowed(tmp_path):
    old, new = _builds(tmp_path, {}, {})
    path = new / "templates" / "database.template.yaml"
    template = yaml.safe_load(path.read_text())
    template["Resources"]["Database"]["Properties"]["DBName"] = "gitlab"
    path.write_text(yaml.safe_dump(template))

    result = subprocess.run([EXE, "diff", str(old), str(new)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "REPLACE      Database (AWS::RDS::DBInstance) [holds data]: DBName changed (create-only)" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("gitlab-cfn: error: database:Database would be replaced (DBName changed (create-only)): "
                           "it holds data; allow it with --allow TIER:LOGICAL_ID")

    allowed = subprocess.run([EXE, "diff", str(old), str(new), "--allow", "database:Database"],
                             capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
    assert "[holds data, allowed]" in allowed.stdout

    quiet = subprocess.run([EXE, "diff", str(old), str(old)], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_diff_against_a_git_revision(tmp_path):
    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("not in a git work tree with commits (for example an unpacked release)")
    # NEW is built from HEAD's own sources, so the two builds are the same whatever the
    # working tree holds: nothing replaced, exit 0.
    source = tmp_path / "head"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "HEAD"], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    build = tmp_path / "build"
    env = {**os.environ, "PYTHONPATH": str(source / "templates_src")}
    assert subprocess.run([EXE, "build", "-q", "--out", str(build)], cwd=source, env=env).returncode == 0
    same = subprocess.run([EXE, "diff", "--against", "HEAD", "--build", str(build)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    assert same.stderr.startswith("0 replaced, 0 may be replaced, 0 deleted")
    # A NEW that renames the database: replaced, and refused.
    path = build / "templates" / "database.template.yaml"
    path.write_text(path.read_text().replace("- gitlabhq_production\n", "- gitlab\n"))
    changed = subprocess.run([EXE, "diff", "--against", "HEAD", "--build", str(build)], cwd=root,
                             capture_output=True, text=True, timeout=300)
    assert changed.returncode == 1
    assert changed.stderr.splitlines()[-1].startswith("gitlab-cfn: error: database:Database would be replaced")
    bad = subprocess.run([EXE, "diff", "--against", "no-such-ref", "--build", str(build)], cwd=root,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr == "gitlab-cfn: error: --against: 'no-such-ref' is not a commit of this repository\n"
    both = subprocess.run([EXE, "diff", "a", "b", "--against", "HEAD"], cwd=root, capture_output=True, text=True)
    assert both.returncode == 2


def test_a_replaced_instance_profile_reaches_the_instance_through_its_launch_template():
    """The launch template's text does not change, but the profile it names is replaced:
    a new launch template version, so an instance pinned to the latest version is replaced."""
    def template(path):
        return {"Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"Path": path, "AssumeRolePolicyDocument": {}}},
            "Profile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {"Path": path, "Roles": [{"Ref": "Role"}]}},
            "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
                "IamInstanceProfile": {"Arn": {"Fn::GetAtt": ["Profile", "Arn"]}}}}},
            "GitalyInstance": {"Type": "AWS::EC2::Instance", "Properties": {"LaunchTemplate": {
                "LaunchTemplateId": {"Ref": "Template"},
                "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}}}}}
    changes, _ = diff_templates("gitaly", template("/"), template("/gitlab-cfn/"))
    found = {c.logical_id: (c.action, c.reasons[0]) for c in changes}
    assert found["GitalyInstance"] == (
        "replace", "LaunchTemplate refers to Template.LatestVersionNumber, which changes")
    assert "Template" not in found  # updated in place, not replaced
    assert [c.logical_id for c in changes if c.blocking] == ["GitalyInstance"]


def test_moving_the_praefect_database_is_refused_with_what_to_do(tmp_path):
    """Praefect routes by the records in its database: pointing a running cluster at its own,
    empty, instance loses every repository, though no resource holding data is replaced."""
    old, new = _builds(tmp_path, {"size": "3k"}, {"size": "3k", "praefect": {"database": "own"}})
    (moved,) = [c for c in diff_builds(old, new) if c.blocking]
    assert moved.name == "praefect:PraefectLaunchTemplate" and not moved.data_loss
    assert moved.reasons == [
        "its database moves (DB_HOST, DB_PORT changed): the Praefect servers would start on an empty database "
        "and find no repository; stop Praefect, copy praefect_production with pg_dump and psql as "
        "https://docs.gitlab.com/administration/postgresql/moving/ describes, then allow it"]
    result = subprocess.run([EXE, "diff", str(old), str(new)], capture_output=True, text=True)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "praefect:PraefectLaunchTemplate would be replaced (its database moves" in line and "pg_dump" in line
    assert subprocess.run([EXE, "diff", str(old), str(new), "--allow", "praefect:PraefectLaunchTemplate"],
                          capture_output=True, text=True).returncode == 0
    # Anything else about the Praefect servers may change freely.
    _, bigger = _builds(tmp_path / "b", {}, {"size": "3k", "praefect": {"instance_type": "c5.xlarge"}})
    assert [c for c in diff_builds(old, bigger) if c.blocking] == []
