"""``gitlab-cfn restore`` on the stand-in: data written into a stack, the stack destroyed with
everything kept, a new stack restored from what it left, and the same data found there;
and the bad inputs, each refused with one line before anything is created."""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.operate.deploy import nested_resources
from test_cli import EXE
from test_deploy import ENV, _seed

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("restore") / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


def run(*argv, timeout=300):
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=ENV, timeout=timeout)


def physical(cfn, stack: str, logical: str) -> str:
    stack_id = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackId"]
    (found,) = [r["PhysicalResourceId"] for _, r in nested_resources(cfn, stack_id) if r["LogicalResourceId"] == logical]
    return found


def secret_of(cfn, sm, stack: str, logical: str) -> tuple[str, dict]:
    arn = physical(cfn, stack, logical)
    return arn, json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])


@contextlib.contextmanager
def plain_http(s3, bucket: str):
    """The stand-in speaks plain HTTP, which the buckets' TLS-only policy refuses, as AWS would:
    the policy is lifted for the test's own reads and writes, and put back."""
    policy = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    assert "aws:SecureTransport" in policy
    s3.delete_bucket_policy(Bucket=bucket)
    try:
        yield
    finally:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy)


def stack_outputs(cfn, stack: str) -> dict:
    return {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]}


def test_a_destroyed_stacks_data_comes_back_in_a_new_stack(build, local_aws, standin, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(_seed(local_aws)))
    endpoint = ["--endpoint-url", standin.endpoint, "--region", REGION, "--poll-seconds", "0.2"]
    # The old stack runs PostgreSQL 16 (the build's default is 17): the restored ones must too.
    created = run("deploy", "--build", str(build), "--stack-name", "old", "--params", str(params),
                  "--param", "DBEngineVersion=16", *endpoint)
    assert created.returncode == 0, created.stderr
    cfn, s3, sm = (local_aws.client(s, REGION) for s in ("cloudformation", "s3", "secretsmanager"))
    rds, ec2 = local_aws.client("rds", REGION), local_aws.client("ec2", REGION)

    # Data written while the old stack ran: an object, gitlab-secrets.json and the host keys
    # as the first server publishes them, and what RDS and EBS keep of the database and volume.
    old = stack_outputs(cfn, "old")
    with plain_http(s3, old["UploadsBucketName"]):
        s3.put_object(Bucket=old["UploadsBucketName"], Key="uploads/probe.txt", Body=b"written before the disaster")
    rails_arn, _ = secret_of(cfn, sm, "old", "RailsSecretsSecret")
    rails = {"gitlab-secrets.json": json.dumps({"gitlab_rails": {"db_key_base": "0ld-db-key-base"},
                                                "gitlab_shell": {"secret_token": "0ld-shell"}})}
    sm.put_secret_value(SecretId=rails_arn, SecretString=json.dumps(rails))
    keys_arn, _ = secret_of(cfn, sm, "old", "SshHostKeysSecret")
    sm.put_secret_value(SecretId=keys_arn, SecretString=json.dumps({"ssh_host_ed25519_key": "0ld-host-key"}))
    _, old_db_secret = secret_of(cfn, sm, "old", "DatabaseSecret")
    old_key = local_aws.client("kms", REGION).describe_key(KeyId=physical(cfn, "old", "DataKey"))["KeyMetadata"]["Arn"]
    old_volume = physical(cfn, "old", "GitalyDataVolume")

    destroyed = run("destroy", "--stack-name", "old", "--confirm", "old", "--json", *endpoint)
    assert destroyed.returncode == 0, destroyed.stderr
    report = {item["logical_id"]: item["found"] for item in json.loads(destroyed.stdout)}
    db_snapshot = report["Database"].split()[-1]
    volume_snapshot = report["GitalyDataVolume"].split()[-1]

    # The plan: every piece found and named, nothing created.
    restore = ["restore", "--from", "old", "--stack-name", "new", "--build", str(build), "--params", str(params),
               *endpoint]
    plan = run(*restore, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"database    from snapshot {db_snapshot}" in plan.stderr
    assert f"Gitaly      from snapshot {volume_snapshot}" in plan.stderr
    assert "secret      RailsSecretsSecret seeded from " + rails_arn in plan.stderr
    assert plan.stderr.splitlines()[-1].endswith("dry run: nothing was created")
    assert [s for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"] == []

    done = run(*restore)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "stack new: CREATE_COMPLETE (restored from old)"

    # The same data, through the new stack's own outputs and resources.
    new = stack_outputs(cfn, "new")
    assert new["UploadsBucketName"] == old["UploadsBucketName"]
    # The old stack's TLS-only policy went with it; the new stack puts it back on the old bucket.
    with plain_http(s3, new["UploadsBucketName"]):
        body = s3.get_object(Bucket=new["UploadsBucketName"], Key="uploads/probe.txt")["Body"].read()
    assert body == b"written before the disaster"
    assert len([b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("gl-uploads-")]) == 1
    # The database: restored from the old final snapshot (its name, user and key come from it,
    # the new template gives none), with the old password in the new stack's secret.
    (db,) = rds.describe_db_instances(DBInstanceIdentifier=physical(cfn, "new", "Database"))["DBInstances"]
    assert (db["DBName"], db["MasterUsername"], db["KmsKeyId"]) == ("gitlabhq_production", "gitlab", old_key)
    assert db["EngineVersion"].split(".")[0] == "16"
    _, new_db_secret = secret_of(cfn, sm, "new", "DatabaseSecret")
    assert new_db_secret["password"] == old_db_secret["password"]
    assert new_db_secret["host"] == db["Endpoint"]["Address"]
    # gitlab-secrets.json and the host keys, seeded into the new stack's own secrets.
    new_rails_arn, new_rails = secret_of(cfn, sm, "new", "RailsSecretsSecret")
    assert new_rails_arn != rails_arn and new_rails == rails
    assert secret_of(cfn, sm, "new", "SshHostKeysSecret")[1] == {"ssh_host_ed25519_key": "0ld-host-key"}
    # The Gitaly volume, from the old volume's final snapshot.
    (volume,) = ec2.describe_volumes(VolumeIds=[physical(cfn, "new", "GitalyDataVolume")])["Volumes"]
    assert volume["SnapshotId"] == volume_snapshot and volume["VolumeId"] != old_volume
    # The servers may use the old key through S3 (the old buckets are encrypted with it).
    iam = local_aws.client("iam", REGION)
    policy = iam.get_role_policy(RoleName=physical(cfn, "new", "InstanceRole"), PolicyName="RestoredDataKeyUse")
    assert policy["PolicyDocument"]["Statement"][0]["Resource"] == [old_key]
    # The old buckets' access logs go to the new stack's log bucket, under the template's prefixes.
    logging = s3.get_bucket_logging(Bucket=new["UploadsBucketName"])["LoggingEnabled"]
    assert logging == {"TargetBucket": new["LogsBucketName"], "TargetPrefix": "s3/uploads/"}
    assert new["LogsBucketName"] != old["LogsBucketName"]

    # A restored stack is itself restorable: it made no buckets (its NewBuckets is false), and
    # its buckets and database are encrypted with the FIRST stack's key; both are carried
    # forward from its parameters, which CloudFormation keeps with the deleted stack.
    destroyed = run("destroy", "--stack-name", "new", "--confirm", "new", "--json", *endpoint)
    assert destroyed.returncode == 0, destroyed.stderr
    report = {item["logical_id"]: item["found"] for item in json.loads(destroyed.stdout)}
    again = run("restore", "--from", "new", "--stack-name", "third", "--build", str(build), "--params", str(params),
                *endpoint)
    assert again.returncode == 0, again.stderr
    assert f"database    from snapshot {report['Database'].split()[-1]}" in again.stderr
    assert f"key         {old_key} (carried from new's RestoreKmsKeyArn" in again.stderr
    third = stack_outputs(cfn, "third")
    assert third["UploadsBucketName"] == old["UploadsBucketName"]
    with plain_http(s3, third["UploadsBucketName"]):
        body = s3.get_object(Bucket=third["UploadsBucketName"], Key="uploads/probe.txt")["Body"].read()
    assert body == b"written before the disaster"
    policy = iam.get_role_policy(RoleName=physical(cfn, "third", "InstanceRole"), PolicyName="RestoredDataKeyUse")
    assert policy["PolicyDocument"]["Statement"][0]["Resource"] == [old_key]
    (db,) = rds.describe_db_instances(DBInstanceIdentifier=physical(cfn, "third", "Database"))["DBInstances"]
    assert (db["DBName"], db["KmsKeyId"], db["EngineVersion"].split(".")[0]) == ("gitlabhq_production", old_key, "16")
    assert secret_of(cfn, sm, "third", "RailsSecretsSecret")[1] == rails
    assert s3.get_bucket_logging(Bucket=third["UploadsBucketName"])["LoggingEnabled"]["TargetBucket"] \
        == third["LogsBucketName"]


def _deleted(local_aws, resources: dict, name: str = "old") -> dict:
    """A deleted stack holding ``resources``: {logical id: physical id}."""
    cfn = local_aws.client("cloudformation", REGION)
    stack_id = cfn.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": resources,
                                "Outputs": {k: {"Value": {"Ref": k}} for k in resources}}))["StackId"]
    held = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["Outputs"]}
    cfn.delete_stack(StackName=stack_id)
    return held


DATABASE = {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "Properties": {
    "Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100",
    "MasterUsername": "gitlab", "MasterUserPassword": "old-password-1"}}
VOLUME = {"Type": "AWS::EC2::Volume", "DeletionPolicy": "Snapshot",
          "Properties": {"AvailabilityZone": f"{REGION}a", "Size": 100, "Encrypted": True}}


def _refused(build, standin, local_aws, live: bool = False):
    result = run("restore", "--from", "old", "--stack-name", "new", "--build", str(build), "--endpoint-url",
                 standin.endpoint, "--region", REGION)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gitlab-cfn: error: ")]
    assert len(errors) == 1 and errors[0] == result.stderr.splitlines()[-1], result.stderr
    # Nothing created: no new stack, no template bucket.
    cfn = local_aws.client("cloudformation", REGION)
    assert [s["StackName"] for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"] \
        == (["old"] if live else [])
    assert not [b for b in local_aws.client("s3", REGION).list_buckets()["Buckets"] if b["Name"].startswith("gitlab-cfn-")]
    return errors[0]


def test_a_deleted_database_snapshot_is_named_and_nothing_is_created(build, local_aws, standin):
    held = _deleted(local_aws, {"Database": DATABASE})
    rds = local_aws.client("rds", REGION)
    (snapshot,) = rds.describe_db_snapshots(DBInstanceIdentifier=held["Database"])["DBSnapshots"]
    rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])
    assert _refused(build, standin, local_aws) == (
        f"gitlab-cfn: error: --from: no available snapshot of the old database {held['Database']} (Database); "
        "nothing was created")


def test_a_deleted_volume_snapshot_is_named_and_nothing_is_created(build, local_aws, standin):
    held = _deleted(local_aws, {"Database": DATABASE, "GitalyDataVolume": VOLUME})
    ec2 = local_aws.client("ec2", REGION)
    for snap in ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [held["GitalyDataVolume"]]}])["Snapshots"]:
        ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
    assert _refused(build, standin, local_aws) == (
        f"gitlab-cfn: error: --from: no completed snapshot of the old Gitaly volume {held['GitalyDataVolume']} "
        "(GitalyDataVolume); nothing was created")


def test_a_stack_that_was_never_deleted_or_never_existed_is_named(build, local_aws, standin):
    assert _refused(build, standin, local_aws) == (
        f"gitlab-cfn: error: --from: no deleted stack old in {REGION} (CloudFormation keeps a deleted stack's "
        "record for 90 days; past that, give the restore parameters to gitlab-cfn deploy)")
    local_aws.client("cloudformation", REGION).create_stack(
        StackName="old", TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}))
    assert _refused(build, standin, local_aws, live=True).startswith(
        f"gitlab-cfn: error: --from: stack old still exists in {REGION} (CREATE_COMPLETE)")


def test_an_unpublished_gitlab_secrets_json_is_named(build, local_aws, standin):
    held = _deleted(local_aws, {"Database": DATABASE, "RailsSecretsSecret": {
        "Type": "AWS::SecretsManager::Secret", "DeletionPolicy": "Retain", "Properties": {"SecretString": "{}"}}})
    assert _refused(build, standin, local_aws) == (
        f"gitlab-cfn: error: --from: the old secret {held['RailsSecretsSecret']} (RailsSecretsSecret) holds no "
        "gitlab-secrets.json (no server of the old stack ever published it); nothing was created")


def test_a_partial_restore_is_refused_by_the_templates_rules(build):
    """A restored database without its password or gitlab-secrets.json, or old buckets without
    their key, is useless: the parent template's rules refuse them (deploy checks them before
    anything is sent); with no restore parameter, the rules do not apply."""
    import yaml
    from gitlab_cfn.operate.deploy import check_params
    from test_deploy import GOOD

    parent = yaml.safe_load((build / "templates" / "main.template.yaml").read_text())
    assert check_params(parent, GOOD, az_count=2) == []
    problems = check_params(parent, {**GOOD, "RestoreDBSnapshot": "old-database-final-snapshot",
                                     "RestoreBucketsFrom": "0a1b2c3d"}, az_count=2)
    assert sorted(problems) == [
        "RestoredBucketsHaveTheirKey: RestoreKmsKeyArn must be given with RestoreBucketsFrom.",
        "RestoredDatabaseHasItsSecrets: RestoreDBSecretArn must be given with RestoreDBSnapshot.",
        "RestoredDatabaseHasItsSecrets: RestoreRailsSecretArn must be given with RestoreDBSnapshot."]
    assert check_params(parent, {**GOOD, "RestoreGitalySnapshot": "vol-1"}, az_count=2)[0].startswith(
        "RestoreGitalySnapshot: ")


def test_a_normal_build_restores_nothing(build):
    """Every restore property is behind a condition on an empty-by-default parameter: a deploy
    without them creates what it created before (the DB instance keeps its master user, name
    and key; the buckets are the stack's own)."""
    import yaml

    def template(tier):
        return yaml.safe_load((build / "templates" / f"{tier}.template.yaml").read_text())

    parent = template("main")
    assert all(parent["Parameters"][name]["Default"] == "" for name in parent["Parameters"]
               if name.startswith("Restore"))
    db = template("database")
    props = db["Resources"]["Database"]["Properties"]
    for name in ("DBName", "KmsKeyId", "MasterUsername", "MasterUserPassword"):
        assert props[name]["Fn::If"][0] == "RestoreDatabase" and props[name]["Fn::If"][1] == {"Ref": "AWS::NoValue"}
    assert db["Conditions"]["RestoreDatabase"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RestoreDBSnapshot"}, ""]}]}
    storage = template("storage")
    assert storage["Resources"]["UploadsBucket"]["Condition"] == "NewBuckets"
    assert storage["Conditions"]["NewBuckets"] == {"Fn::Equals": [{"Ref": "RestoreBucketsFrom"}, ""]}


def test_sizes_are_raised_to_the_snapshots_and_a_smaller_given_size_is_refused(build):
    """AWS refuses a database or volume smaller than its snapshot: restore raises a default
    that is smaller, and names a size the person gave that is smaller."""
    import yaml
    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.operate.restore import RestoreSource, restore_params

    parent = yaml.safe_load((build / "templates" / "main.template.yaml").read_text())
    source = RestoreSource("old", "id", params={"RestoreDBSnapshot": "s", "RestoreGitalySnapshot": "snap-0123456789abcdef0"},
                           sizes={"DBAllocatedStorage": 500, "GitalyVolumeSize": 20})
    params = restore_params(parent, source, {"DomainName": "gitlab.example.test"})
    # The database default (100 GiB) is raised; the io1 volume's default (20 GiB) is large enough.
    assert parent["Parameters"]["DBAllocatedStorage"]["Default"] == 100
    assert parent["Parameters"]["GitalyVolumeSize"]["Default"] == 20
    assert params["DBAllocatedStorage"] == "500" and "GitalyVolumeSize" not in params
    assert params["RestoreGitalySnapshot"] == "snap-0123456789abcdef0" and params["DomainName"] == "gitlab.example.test"
    with pytest.raises(ConfigError, match=r"--param DBAllocatedStorage=200: smaller than the old stack's snapshot \(500 GiB\)"):
        restore_params(parent, source, {"DBAllocatedStorage": "200"})
    with pytest.raises(ConfigError, match=r"--param RestoreDBSnapshot=other: restore sets it from the old stack \(s\)"):
        restore_params(parent, source, {"RestoreDBSnapshot": "other"})
    cluster_only = RestoreSource("old", "id", params={"RestoreGitaly1Snapshot": "snap-0123456789abcdef0"})
    with pytest.raises(ConfigError, match="this build has no parameter RestoreGitaly1Snapshot"):
        restore_params(parent, cluster_only, {})


def test_the_database_major_is_the_snapshots_and_a_clashing_one_is_refused(build):
    """RDS restores a snapshot at its own major, and the parameter group's family follows
    DBEngineVersion (postgres${DBEngineVersion}): a PostgreSQL 16 snapshot gets 16, not the
    default 17; a --param asking for another major is one line, exit 2."""
    import yaml
    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.operate.restore import RestoreSource, restore_params

    parent = yaml.safe_load((build / "templates" / "main.template.yaml").read_text())
    assert str(parent["Parameters"]["DBEngineVersion"]["Default"]) == "17"
    source = RestoreSource("old", "id", params={"RestoreDBSnapshot": "s", "DBEngineVersion": "16"},
                           sizes={"DBAllocatedStorage": 100})
    assert restore_params(parent, source, {})["DBEngineVersion"] == "16"
    with pytest.raises(ConfigError, match=r"^--param DBEngineVersion=17: restore sets it from the old stack \(16\) "
                                          r"\(the database snapshot's PostgreSQL major"):
        restore_params(parent, source, {"DBEngineVersion": "17"})
    with pytest.raises(ConfigError, match=r"old database snapshot is PostgreSQL 13; this build's DBEngineVersion takes"):
        restore_params(parent, RestoreSource("old", "id", params={"DBEngineVersion": "13"}), {})


def test_iops_that_no_longer_fit_the_raised_size_are_refused(build):
    """RDS io1 takes 0.5 to 50 IOPS per GiB: a database raised to a 3,000 GiB snapshot with the
    default 1,000 IOPS would fail the create after minutes; restore names the IOPS to give.
    EBS io1 takes at most 50 per GiB, gp3 at most 500 (a given IOPS too high for the size)."""
    import yaml
    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.operate.restore import RestoreSource, restore_params

    parent = yaml.safe_load((build / "templates" / "main.template.yaml").read_text())
    big = RestoreSource("old", "id", params={"RestoreDBSnapshot": "s"}, sizes={"DBAllocatedStorage": 3000})
    with pytest.raises(ConfigError, match=r"^--param DBIops=1000: rds io1 takes 0.5 to 50 IOPS per GiB and "
                                          r"DBAllocatedStorage is 3000 GiB \(raised to the old snapshot's\): "
                                          r"give DBIops 1500 to 150000$"):
        restore_params(parent, big, {})
    assert restore_params(parent, big, {"DBIops": "1500"})["DBAllocatedStorage"] == "3000"
    small = RestoreSource("old", "id", params={"RestoreDBSnapshot": "s"}, sizes={"GitalyVolumeSize": 20})
    with pytest.raises(ConfigError, match=r"^--param GitalyVolumeIops=2000: ebs io1 takes 0 to 50 IOPS per GiB and "
                                          r"GitalyVolumeSize is 20 GiB: give GitalyVolumeIops 100 to 1000$"):
        restore_params(parent, small, {"GitalyVolumeIops": "2000"})
    gp3 = {"database": {"storage_type": "gp3"}, "gitaly": {"volume_type": "gp3"}}
    with pytest.raises(ConfigError, match=r"GitalyVolumeIops=16000: ebs gp3 takes 0 to 500 IOPS per GiB"):
        restore_params(parent, small, {"GitalyVolumeIops": "16000"}, gp3)


def test_a_bucket_whose_logging_cannot_be_moved_is_named_with_the_command(capsys):
    """The stack is created by then: a refused PutBucketLogging (a missing permission, say)
    leaves the create successful and prints what is left to do, with the command."""
    from botocore.exceptions import ClientError
    from gitlab_cfn.operate.progress import Progress
    from gitlab_cfn.operate.restore import RestoreSource, log_to_new_bucket

    class S3:
        calls = []

        def put_bucket_logging(self, Bucket, BucketLoggingStatus):
            self.calls.append((Bucket, BucketLoggingStatus["LoggingEnabled"]))
            if Bucket.startswith("gl-lfs-"):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutBucketLogging")

    class Aws:
        def client(self, service, region):
            return S3()

    source = RestoreSource("old", "id", buckets={"UploadsBucket": "gl-uploads-1-r-0a1b2c3d",
                                                 "LfsBucket": "gl-lfs-1-r-0a1b2c3d"})
    log_to_new_bucket(Aws(), "r", source, "gl-logs-1-r-99999999", Progress(quiet=False))
    assert S3.calls == [("gl-uploads-1-r-0a1b2c3d", {"TargetBucket": "gl-logs-1-r-99999999", "TargetPrefix": "s3/uploads/"}),
                        ("gl-lfs-1-r-0a1b2c3d", {"TargetBucket": "gl-logs-1-r-99999999", "TargetPrefix": "s3/lfs/"})]
    err = capsys.readouterr().err
    assert "left to do: gl-lfs-1-r-0a1b2c3d still logs to the old log bucket (AccessDenied); run aws s3api " \
           "put-bucket-logging --bucket gl-lfs-1-r-0a1b2c3d" in err
    assert "gl-uploads-1-r-0a1b2c3d still logs" not in err
