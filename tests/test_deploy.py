"""`gitlab-cfn deploy` and `destroy`: parameters checked first, then the whole flow on the stand-in."""

import json
import os
import re
import subprocess

import pytest
import yaml
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.deploy import (
    build_digest,
    check_params,
    first_failure,
    load_params,
)
from gitlab_cfn import __version__
from test_cli import EXE

ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


def parent(build):
    return yaml.safe_load((build / "templates" / "main.template.yaml").read_text())


GOOD = {
    "AvailabilityZones": "eu-west-1a,eu-west-1b", "DomainName": "gitlab.example.test",
    "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
    "GitSshCIDR": "203.0.113.0/24", "RemoteAccessCIDR": "198.51.100.0/24", "KeyPairName": "ops",
    "TemplateBucketName": "templates", "TemplateBucketRegion": "eu-west-1", "GitalyAmiId": "ami-0a11ab5e1c0de1851",
}


def test_good_parameters_pass(build):
    assert check_params(parent(build), GOOD, az_count=2) == []


def test_every_violation_is_reported_at_once(build):
    bad = {**GOOD, "DomainName": "GitLab.Example.com", "RemoteAccessCIDR": "0.0.0.0/0", "GitSshCIDR": "10.0.0.0/33",
           "DBInstanceClass": "db.t3.micro", "AvailabilityZones": "eu-west-1a", "PublicSubnet1Cidr": "10.0.1.0/24",
           "DBAllocatedStorage": "50", "Colour": "blue"}
    del bad["KeyPairName"]
    problems = check_params(parent(build), bad, az_count=2)
    fields = sorted(p.split(":")[0] for p in problems)
    assert fields == sorted(["Colour", "DomainName", "GitSshCIDR", "DBInstanceClass", "AvailabilityZones",
                             "DBAllocatedStorage", "KeyPairName", "BastionNotOpenToTheWorld", "SubnetCidrsDistinct"])
    assert "DBAllocatedStorage: must be at least 100 (got 50)" in problems
    assert "BastionNotOpenToTheWorld: RemoteAccessCIDR must not be 0.0.0.0/0: give the range administrators connect from." in problems
    assert "AvailabilityZones: exactly 2 Availability Zones are needed (got 1)" in problems


def test_parameter_files_in_both_forms(tmp_path):
    plain = tmp_path / "p.yaml"
    plain.write_text("DomainName: gitlab.example.test\nAvailabilityZones: [eu-west-1a, eu-west-1b]\nAppRootVolumeSize: 40\n")
    assert load_params(plain) == {"DomainName": "gitlab.example.test", "AvailabilityZones": "eu-west-1a,eu-west-1b",
                                  "AppRootVolumeSize": "40"}
    cfn_style = tmp_path / "p.json"
    cfn_style.write_text(json.dumps([{"ParameterKey": "DomainName", "ParameterValue": "gitlab.example.test"}]))
    assert load_params(cfn_style) == {"DomainName": "gitlab.example.test"}
    broken = tmp_path / "b.json"
    broken.write_text(json.dumps([{"Key": "x"}]))
    with pytest.raises(ConfigError, match="ParameterKey"):
        load_params(broken)


def test_parameter_file_shapes_and_inline_values(tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("DomainName: a.test\nAvailabilityZones: [eu-west-1a, eu-west-1b]\nDBIops: 3000\n")
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"Parameters": {"DomainName": "a.test", "AvailabilityZones": "eu-west-1a,eu-west-1b",
                                                  "DBIops": 3000}}))
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps([{"ParameterKey": "DomainName", "ParameterValue": "a.test"},
                                  {"ParameterKey": "AvailabilityZones", "ParameterValue": "eu-west-1a,eu-west-1b"},
                                  {"ParameterKey": "DBIops", "ParameterValue": "3000"}]))
    expected = {"DomainName": "a.test", "AvailabilityZones": "eu-west-1a,eu-west-1b", "DBIops": "3000"}
    assert load_params(mapping) == load_params(wrapped) == load_params(listed) == expected
    # Inline values win over the file's; an equals sign in a value stays in it.
    assert load_params(listed, ["DomainName=b.test", "KeyPairName=a=b"]) == {
        **expected, "DomainName": "b.test", "KeyPairName": "a=b"}
    assert load_params(None, ["HostedZoneId="]) == {"HostedZoneId": ""}
    twice = tmp_path / "t.yaml"
    twice.write_text("DomainName: a.test\nKeyPairName: ops\nDomainName: b.test\n")
    with pytest.raises(ConfigError, match=r"^--params: .*t.yaml: key 'DomainName' given twice \(lines 1 and 3\)"):
        load_params(twice)


def test_bad_parameters_exit_2_before_anything_is_sent(build, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("DomainName: GitLab.Example.com\nRemoteAccessCIDR: 0.0.0.0/0\n")
    # An endpoint nothing listens on: any AWS call would fail with exit 1, not 2.
    result = subprocess.run([EXE, "deploy", "--build", str(build), "--stack-name", "x", "--region", "eu-west-1",
                             "--params", str(params), "--endpoint-url", "http://127.0.0.1:9"],
                            capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 2
    first, *rest = result.stderr.splitlines()
    assert first.startswith("gitlab-cfn: error: ") and first.endswith("parameter problems:")
    assert any("DomainName: must be a lower-case" in line for line in rest)
    assert any("BastionNotOpenToTheWorld" in line for line in rest)


def test_the_digest_changes_with_the_build(build, tmp_path):
    other = tmp_path / "b"
    compiler.write_build(config.from_dict({"az_count": 3}), other)
    from gitlab_cfn.compile.compiler import read_manifest

    assert build_digest(read_manifest(build)) != build_digest(read_manifest(other))
    assert build_digest(read_manifest(build)) == build_digest(read_manifest(build))


def deploy_cmd(*args, build, timeout=180):
    return subprocess.run([EXE, "deploy", "--build", str(build), "--poll-seconds", "0.2", *args],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def test_deploy_local_end_to_end(build):
    result = deploy_cmd("--local", "--stack-name", "newcomer", "--region", "eu-west-1", build=build)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any("local AWS stand-in at http://127.0.0.1:" in line for line in lines)
    assert any("local value AvailabilityZones = eu-west-1a,eu-west-1b" in line for line in lines)
    product = compiler.product_entries(json.loads((build / "manifest.json").read_text()))
    assert any(f"uploaded {len(product)} templates to s3://gitlab-cfn-eu-west-1-123456789012/gitlab-cfn/newcomer/"
               in line for line in lines)
    progress = [line for line in lines if "CREATE_COMPLETE" in line and "resources" in line]
    # The parent and every nested stack but DNS (no hosted zone).
    assert len(progress) == len(product) - 1 and not any("DnsStack" in line for line in progress)
    assert all(line.split()[-2].split("/")[0] == line.split()[-2].split("/")[1] for line in progress)
    outputs = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert outputs["GitLabUrl"] == "https://gitlab.example.test"
    assert outputs["DatabaseSecretArn"].startswith("arn:aws:secretsmanager:eu-west-1:")
    assert lines[-1] == "stack newcomer: CREATE_COMPLETE"


def test_deploy_json_output(build):
    result = deploy_cmd("--local", "--stack-name", "js", "--region", "us-east-1", "--json", "-q", build=build)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert document["status"] == "CREATE_COMPLETE" and "RedisEndpoint" in document["outputs"]


def test_a_failing_child_is_reported_by_name(build, tmp_path):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/"
                                                    "00000000-1111-2222-3333-444444444444"}))
    result = deploy_cmd("--local", "--stack-name", "broken", "--region", "us-east-1", "--params", str(params), build=build)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    # The database (deletion protection on) cannot be rolled back: ROLLBACK_FAILED, and the way out.
    assert last.startswith("gitlab-cfn: error: stack broken is ROLLBACK_FAILED: LoadBalancer "
                           "(AWS::ElasticLoadBalancing::LoadBalancer) in stack broken-AppStack-")
    assert last.endswith(": Supplied certificate was not found; what could not be deleted is kept; clean up with: "
                         "gitlab-cfn destroy --stack-name broken --region us-east-1 --confirm broken")


def _seed(local_aws, region="eu-west-1"):
    local_aws.client("ec2", region).create_key_pair(KeyName="ops")
    arn = local_aws.client("acm", region).request_certificate(DomainName="gitlab.example.test")["CertificateArn"]
    local_aws.client("ssm", region).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value="ami-0a11ab5e1c0de1851", Type="String")
    params = {k: v for k, v in GOOD.items() if not k.startswith("Template")}
    return {**params, "CertificateArn": arn}


def test_update_guard_destroy_flow(build, local_aws, standin, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(_seed(local_aws)))
    common = ["--endpoint-url", standin.endpoint, "--stack-name", "gl", "--region", "eu-west-1", "--params", str(params)]
    role = "arn:aws:iam::123456789012:role/gitlab-cfn-deployer"
    assert deploy_cmd(*common, "--tags", "team=platform", "cost-centre=42", "--role-arn", role,
                      build=build).returncode == 0
    created = local_aws.client("cloudformation", "eu-west-1").describe_stacks(StackName="gl")["Stacks"][0]
    assert {t["Key"]: t["Value"] for t in created["Tags"]} == {
        "team": "platform", "cost-centre": "42", "gitlab-cfn:version": __version__, "gitlab-cfn:size": "poc"}
    assert created["RoleARN"] == role and created["EnableTerminationProtection"] is True

    # Same build again: the guard finds nothing, the change set holds no changes.
    again = deploy_cmd(*common, "--json", build=build)
    assert again.returncode == 0, again.stderr
    assert any(line.endswith("stack gl: no changes") for line in again.stderr.splitlines())
    document = json.loads(again.stdout)
    assert document["changes"] == [] and document["reused"]["AppInstanceType"] == "c5.xlarge"
    assert "DomainName" not in document["reused"]   # given in the file, not reused

    # Other zones: only a parameter changes; the nested change sets show the cache's
    # replication group replaced (its zones are create-only), and the update is refused.
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps({**json.loads(params.read_text()), "AvailabilityZones": "eu-west-1b,eu-west-1c"}))
    zones = deploy_cmd(*common[:-1], str(moved), "--yes", build=build)
    assert zones.returncode == 1
    changes = [line.split("change: ", 1)[1] for line in zones.stderr.splitlines() if "change: " in line]
    assert ("cache: Modify  RedisReplicationGroup (AWS::ElastiCache::ReplicationGroup) [REPLACED, holds data]: "
            "PreferredCacheClusterAZs (create-only, parameter AvailabilityZones)") in changes
    assert "cache:RedisReplicationGroup would be replaced" in zones.stderr.splitlines()[-1]
    stack = local_aws.client("cloudformation", "eu-west-1").describe_stacks(StackName="gl")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"

    # A build that would replace the database is refused before anything is uploaded.
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(build, changed)
    path = changed / "templates" / "database.template.yaml"
    path.write_text(path.read_text().replace("- gitlabhq_production\n", "- gitlab\n"))
    refused = deploy_cmd(*common, build=changed)
    assert refused.returncode == 1
    assert "database: REPLACE      Database (AWS::RDS::DBInstance) [holds data]: DBName changed (create-only)" in refused.stderr
    assert refused.stderr.splitlines()[-1].startswith(
        "gitlab-cfn: error: the update would lose data: database:Database would be replaced")
    assert not any("uploaded" in line for line in refused.stderr.splitlines())
    allowed = deploy_cmd(*common, "--allow-replace", "database:Database", "--yes", build=changed)
    assert allowed.returncode == 0, allowed.stderr
    # The old database keeps its deletion protection: CloudFormation cannot delete it, and says so;
    # it stays running outside the stack until it is deleted by hand.
    (left,) = [line.split("left behind: ", 1)[1] for line in allowed.stderr.splitlines() if "left behind: " in line]
    old_db = left.split()[2]
    assert left.startswith(f"Database (AWS::RDS::DBInstance) {old_db} in stack gl-DatabaseStack-")
    assert left.endswith("Cannot delete protected DB Instance, please disable deletion protection and try again.")
    rds = local_aws.client("rds", "eu-west-1")
    assert rds.describe_db_instances(DBInstanceIdentifier=old_db)["DBInstances"][0]["DeletionProtection"] is True
    rds.modify_db_instance(DBInstanceIdentifier=old_db, DeletionProtection=False, ApplyImmediately=True)
    rds.delete_db_instance(DBInstanceIdentifier=old_db, FinalDBSnapshotIdentifier=f"{old_db}-replaced")

    # destroy: confirmation, then a report of what the data became.
    base = [EXE, "destroy", "--endpoint-url", standin.endpoint, "--stack-name", "gl", "--region", "eu-west-1",
            "--poll-seconds", "0.2"]
    unconfirmed = subprocess.run(base, capture_output=True, text=True, env=ENV)
    assert unconfirmed.returncode == 2 and "--confirm gl" in unconfirmed.stderr
    done = subprocess.run(base + ["--confirm", "gl", "--json"], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = {item["logical_id"]: item for item in json.loads(done.stdout)}
    assert kept["Database"]["found"].endswith("-final-snapshot")
    assert kept["RedisReplicationGroup"]["found"].endswith("-final-snapshot")
    assert kept["GitalyDataVolume"]["found"].startswith("snapshot snap-")
    assert kept["BackupsBucket"]["found"].startswith("bucket gl-backups-")
    assert kept["DatabaseSecret"]["found"].startswith("secret arn:aws:secretsmanager:")
    assert kept["DataKey"]["found"].startswith("key ")
    assert "turned off deletion protection" in done.stderr
    cfn = local_aws.client("cloudformation", "eu-west-1")
    assert [s for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"] == []
    ec2 = local_aws.client("ec2", "eu-west-1")
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")] == []
    assert [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"] == []


def test_first_failure_follows_nested_stacks(local_aws):
    s3 = local_aws.client("s3", "us-east-1")
    s3.create_bucket(Bucket="nested")
    s3.put_object(Bucket="nested", Key="child.json", Body=json.dumps({"Resources": {
        "Fine": {"Type": "AWS::SNS::Topic"}, "Broken": {"Type": "AWS::Foo::Bar"}}}))
    cfn = local_aws.client("cloudformation", "us-east-1")
    stack_id = cfn.create_stack(StackName="top", TemplateBody=json.dumps({"Resources": {"Child": {
        "Type": "AWS::CloudFormation::Stack",
        "Properties": {"TemplateURL": "https://nested.s3.us-east-1.amazonaws.com/child.json"}}}}))["StackId"]
    failure = first_failure(cfn, stack_id)
    assert (failure.logical_id, failure.resource_type) == ("Broken", "AWS::Foo::Bar")
    assert failure.stack.startswith("top-Child-")
    assert failure.reason == "the stand-in cannot create AWS::Foo::Bar"


def test_status_and_events_put_the_failing_nested_resource_first(local_aws, standin):
    s3 = local_aws.client("s3", "us-east-1")
    s3.create_bucket(Bucket="nested")
    s3.put_object(Bucket="nested", Key="child.json", Body=json.dumps({"Resources": {
        "Fine": {"Type": "AWS::SNS::Topic"}, "Broken": {"Type": "AWS::Foo::Bar", "DependsOn": "Fine"}}}))
    cfn = local_aws.client("cloudformation", "us-east-1")
    cfn.create_stack(StackName="top", TemplateBody=json.dumps({"Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"},
        "Child": {"Type": "AWS::CloudFormation::Stack", "DependsOn": "Topic",
                  "Properties": {"TemplateURL": "https://nested.s3.us-east-1.amazonaws.com/child.json"}}},
        "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}}}))
    where = ["--stack-name", "top", "--region", "us-east-1", "--endpoint-url", standin.endpoint]

    def cli(*args):
        result = subprocess.run([EXE, *args, *where], capture_output=True, text=True, env=ENV, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    status = cli("status")
    assert re.match(r"FAILED: Broken \(AWS::Foo::Bar\) in stack top-Child-\w+: the stand-in cannot create "
                    r"AWS::Foo::Bar\n", status), status
    assert status.splitlines()[1].split()[:2] == ["top", "ROLLBACK_COMPLETE"]
    document = json.loads(cli("status", "--json"))
    assert document["status"] == "ROLLBACK_COMPLETE" and document["failure"]["logical_id"] == "Broken"
    events = cli("events").splitlines()
    assert events[0].startswith("FAILING ") and " Broken (AWS::Foo::Bar)  CREATE_FAILED  the stand-in cannot" in events[0]
    assert sum(line.startswith("FAILING") for line in events) == 1
    listed = json.loads(cli("events", "--json", "--limit", "3"))
    assert len(listed) == 3 and listed[0]["failing"] is True and listed[0]["logical_id"] == "Broken"
    # Newest first after the failing one, like DescribeStackEvents.
    times = [e["time"] for e in json.loads(cli("events", "--json"))[1:]]
    assert times == sorted(times, reverse=True)
    missing = subprocess.run([EXE, "outputs", "--stack-name", "nope", "--region", "us-east-1", "--endpoint-url",
                              standin.endpoint], capture_output=True, text=True, env=ENV, timeout=60)
    assert missing.returncode == 2 and missing.stderr == "gitlab-cfn: error: --stack-name: no stack nope in us-east-1\n"


def test_a_failed_create_is_explained_and_destroy_cleans_it_up(build, local_aws, standin, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**_seed(local_aws, "us-east-1"), "AvailabilityZones": "us-east-1a,us-east-1b",
                                  "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/"
                                                    "00000000-1111-2222-3333-444444444444"}))
    common = ["--endpoint-url", standin.endpoint, "--stack-name", "half", "--region", "us-east-1"]
    cleanup = "clean up with: gitlab-cfn destroy --stack-name half --region us-east-1 --confirm half"
    failed = deploy_cmd(*common, "--params", str(params), build=build)
    assert failed.returncode == 1
    assert " is ROLLBACK_FAILED: " in failed.stderr.splitlines()[-1]
    assert failed.stderr.splitlines()[-1].endswith(cleanup)
    # A re-run changes nothing and says what to do.
    again = deploy_cmd(*common, "--params", str(params), build=build)
    assert again.returncode == 2
    assert again.stderr.splitlines()[-1] == (
        f"gitlab-cfn: error: --stack-name: half is ROLLBACK_FAILED (a failed create or delete); nothing was changed; "
        f"{cleanup}")
    done = subprocess.run([EXE, "destroy", *common, "--confirm", "half", "--poll-seconds", "0.2", "--json"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = {item["logical_id"]: item for item in json.loads(done.stdout)}
    assert kept["Database"]["found"].endswith("-final-snapshot")
    cfn = local_aws.client("cloudformation", "us-east-1")
    assert [s["StackName"] for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"] == []
    assert local_aws.client("rds", "us-east-1").describe_db_instances()["DBInstances"] == []


PROTECTED_DB = {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "Properties": {
    "Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100", "MasterUsername": "gitlab",
    "MasterUserPassword": "not-a-real-password-1", "DeletionProtection": True}}


@pytest.mark.parametrize(("resources", "delete_first", "status", "kept"), [
    ({"Topic": {"Type": "AWS::SNS::Topic"}, "Broken": {"Type": "AWS::Foo::Bar", "DependsOn": "Topic"}},
     False, "ROLLBACK_COMPLETE", 0),
    ({"Database": PROTECTED_DB, "Broken": {"Type": "AWS::Foo::Bar", "DependsOn": "Database"}},
     False, "ROLLBACK_FAILED", 1),
    ({"Database": PROTECTED_DB, "Topic": {"Type": "AWS::SNS::Topic"}}, True, "DELETE_FAILED", 1),
], ids=["rolled-back", "rollback-failed", "delete-failed"])
def test_destroy_recovers_a_failed_stack(local_aws, standin, resources, delete_first, status, kept):
    cfn = local_aws.client("cloudformation", "eu-west-1")
    cfn.create_stack(StackName="stuck", TemplateBody=json.dumps({"Resources": resources}))
    if delete_first:  # a plain delete fails on the protected database
        cfn.delete_stack(StackName="stuck")
    assert cfn.describe_stacks(StackName="stuck")["Stacks"][0]["StackStatus"] == status
    done = subprocess.run([EXE, "destroy", "--endpoint-url", standin.endpoint, "--stack-name", "stuck", "--region",
                           "eu-west-1", "--confirm", "stuck", "--poll-seconds", "0.2"],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == f"stack stuck: DELETE_COMPLETE; {kept} data resources kept"
    if kept:
        assert "turned off deletion protection" in done.stderr
        assert done.stdout.split()[:3] == ["Snapshot", "AWS::RDS::DBInstance", "Database"]
        assert done.stdout.split()[-1].endswith("-final-snapshot")
    assert local_aws.client("rds", "eu-west-1").describe_db_instances()["DBInstances"] == []


class _Rds:
    """RDS answering a scripted sequence: an error code, or the instance's state."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def _next(self, call):
        from botocore.exceptions import ClientError

        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            raise ClientError({"Error": {"Code": answer, "Message": answer}}, call)
        return answer

    def modify_db_instance(self, **kwargs):
        assert kwargs == {"DBInstanceIdentifier": "db", "DeletionProtection": False, "ApplyImmediately": True}
        return self._next("ModifyDBInstance")

    def describe_db_instances(self, **kwargs):
        return {"DBInstances": [self._next("DescribeDBInstances")]}


def test_deletion_protection_is_turned_off_once_the_database_can_be_changed():
    from gitlab_cfn.operate.destroy import unprotect
    from gitlab_cfn.operate.progress import Progress

    rds = _Rds("InvalidDBInstanceState", {}, {"DBInstanceStatus": "modifying", "DeletionProtection": True},
               {"DBInstanceStatus": "available", "DeletionProtection": False})
    unprotect(rds, "db", Progress(quiet=True), poll=0)
    assert rds.calls == ["ModifyDBInstance", "ModifyDBInstance", "DescribeDBInstances", "DescribeDBInstances"]
    gone = _Rds("DBInstanceNotFound")
    unprotect(gone, "db", Progress(quiet=True), poll=0)
    assert gone.calls == ["ModifyDBInstance"]
    with pytest.raises(Exception, match="AccessDenied"):
        unprotect(_Rds("AccessDenied"), "db", Progress(quiet=True), poll=0)


def test_a_build_that_changes_no_boot_script_updates_no_server(build, local_aws, standin, tmp_path):
    """Another build (another CPU threshold) is uploaded under a new key prefix: the boot bundle
    parameters take the new location, and no server's launch template or user data changes, so
    the app servers do not roll and the bastions are not stopped and started."""
    params = tmp_path / "params.json"
    params.write_text(json.dumps(_seed(local_aws)))
    common = ["--endpoint-url", standin.endpoint, "--stack-name", "gl", "--region", "eu-west-1", "--params", str(params)]
    role = "arn:aws:iam::123456789012:role/gitlab-cfn-deployer"
    assert deploy_cmd(*common, "--tags", "team=platform", "cost-centre=42", "--role-arn", role,
                      build=build).returncode == 0
    created = local_aws.client("cloudformation", "eu-west-1").describe_stacks(StackName="gl")["Stacks"][0]
    assert {t["Key"]: t["Value"] for t in created["Tags"]} == {
        "team": "platform", "cost-centre": "42", "gitlab-cfn:version": __version__, "gitlab-cfn:size": "poc"}
    assert created["RoleARN"] == role and created["EnableTerminationProtection"] is True
    cfn, ssm = local_aws.client("cloudformation", "eu-west-1"), local_aws.client("ssm", "eu-west-1")

    def physical(tier: str, logical_id: str) -> str:
        def of(stack: str) -> dict[str, str]:
            return {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}
        return of(of("gl")[f"{tier}Stack"])[logical_id]

    before = {logical: physical(tier, logical) for tier, logical in (
        ("App", "AppLaunchTemplate"), ("Bastion", "BastionA"), ("Bastion", "BastionB"), ("Gitaly", "GitalyInstance"))}
    location = json.loads(ssm.get_parameter(Name="/gitlab-cfn/gl/gitaly/boot-bundle")["Parameter"]["Value"])

    other = tmp_path / "other"
    compiler.write_build(config.from_dict({"app": {"scale_out_cpu": 70}}), other)
    updated = deploy_cmd(*common, "--yes", build=other)
    assert updated.returncode == 0, updated.stderr
    changes = [line.split("change: ", 1)[1] for line in updated.stderr.splitlines() if "change: " in line]
    assert any(c.startswith("app: Modify  CpuHighAlarm ") for c in changes), changes
    servers = ("app: Modify  AppLaunchTemplate ", "app: Modify  AppAutoScalingGroup ", "bastion: Modify  BastionA ",
               "bastion: Modify  BastionB ", "gitaly: Modify  GitalyInstance ")
    assert [c for c in changes if c.startswith(servers)] == [], changes
    assert {logical: physical(tier, logical) for tier, logical in (
        ("App", "AppLaunchTemplate"), ("Bastion", "BastionA"), ("Bastion", "BastionB"),
        ("Gitaly", "GitalyInstance"))} == before
    ec2 = local_aws.client("ec2", "eu-west-1")
    (template,) = ec2.describe_launch_templates(LaunchTemplateIds=[before["AppLaunchTemplate"]])["LaunchTemplates"]
    assert template["LatestVersionNumber"] == 1
    # What moved: every role's parameter names the same bundle under the new build's prefix.
    prefix = f"gitlab-cfn/gl/{build_digest(json.loads((other / 'manifest.json').read_text()))}/"
    for role in ("gitaly", "gitlab-app", "bastion"):
        moved = json.loads(ssm.get_parameter(Name=f"/gitlab-cfn/gl/{role}/boot-bundle")["Parameter"]["Value"])
        assert moved["sha256"] == location["sha256"] and moved["key"] != location["key"]
        assert moved["key"] == prefix + location["key"].split("/", 3)[3]


# -- moving a stack to another size -------------------------------------------------------------

def _main_parameters(cfg: dict) -> dict:
    from gitlab_cfn.compile import compiler, config

    return compiler.compile_data(config.from_dict(cfg))["main.template.yaml"]["Parameters"]


def _stack(values: dict, size: str | None = None) -> dict:
    tags = [{"Key": "gitlab-cfn:size", "Value": size}] if size else []
    return {"Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()], "Tags": tags}


def test_a_move_to_another_size_takes_the_sizes_types_unless_the_operator_chose_others():
    from gitlab_cfn.operate.deploy import size_defaults

    poc, big = _main_parameters({}), _main_parameters({"size": "3k"})
    previous = {name: str(d["Default"]) for name, d in poc.items() if "Default" in d and name in big}
    previous["DBInstanceClass"] = "db.r6i.xlarge"          # the operator's own choice
    reused = sorted(previous)
    # A stack without the size tag predates the sizes: it is a poc.
    changed = size_defaults(_stack(previous), big, reused, "3k", 2)
    assert changed["AppInstanceType"] == str(big["AppInstanceType"]["Default"]) != previous["AppInstanceType"]
    assert changed["CacheNodeType"] == str(big["CacheNodeType"]["Default"])
    assert not changed["CacheNodeType"].startswith("cache.t")
    assert "DBInstanceClass" not in changed
    # Parameters no size sets keep their previous values.
    assert not {"VpcCidr", "DomainName", "AvailabilityZones"} & set(changed)
    # The same size again: nothing is changed.
    assert size_defaults(_stack(previous, "3k"), big, reused, "3k", 2) == {}


def test_a_previous_value_the_new_template_refuses_is_named_before_anything_is_sent():
    from gitlab_cfn.operate.deploy import reused_problems

    definitions = {"GitalyVolumeIops": {"Type": "Number", "MinValue": 3000, "MaxValue": 16000, "Default": 8000},
                   "DomainName": {"Type": "String"}}
    problems = reused_problems(_stack({"GitalyVolumeIops": "1000", "DomainName": "gitlab.example.com"}),
                               definitions, ["GitalyVolumeIops", "DomainName"])
    assert problems == ["GitalyVolumeIops: must be at least 3000 (got 1000) (the stack's previous value, "
                        "which this update would keep; give --param GitalyVolumeIops=VALUE)"]
    assert reused_problems(_stack({"GitalyVolumeIops": "3000"}), definitions, ["GitalyVolumeIops"]) == []
