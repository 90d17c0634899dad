"""``gitlab-cfn restore --from-region`` on the stand-in: a stack deployed in us-east-1, data
written, the stack destroyed keeping everything, a new stack restored into us-west-2 from copies
of its snapshots and secrets (the buckets used where they are), and the same data found; a
re-run finds its copies again; and the refusals, before anything is created."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from test_restore import build, physical, plain_http, run, secret_of, stack_outputs  # noqa: F401
from gitlab_cfn.operate.deploy import nested_resources
from test_deploy import _seed

A, B = "us-east-1", "us-west-2"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gitlab-app.sh"


def buckets_region(uploads_bucket: str, stack_region: str = "eu-west-1") -> str:
    """scripts/gitlab-app.sh's buckets_region, run by bash on a bucket name."""
    function = re.search(r"^buckets_region\(\) \{\n.*?^\}\n", SCRIPT.read_text(), flags=re.M | re.S).group(0)
    result = subprocess.run(["bash", "-c", 'die() { echo "$*" >&2; exit 1; }\n' + function + "buckets_region"],
                            env={"BUCKET_UPLOADS": uploads_bucket, "AWS_REGION": stack_region},
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("bucket, region", [
    ("gl-uploads-123456789012-ap-southeast-2-0a1b2c3d", "ap-southeast-2"),
    ("gl-external-diffs-123456789012-us-gov-west-1-0a1b2c3d", "us-gov-west-1"),
    ("gl-uploads-123456789012-us-iso-east-1-0a1b2c3d", "us-iso-east-1"),
    ("gl-uploads-123456789012-eusc-de-east-1-0a1b2c3d", "eusc-de-east-1"),
    # A name of another shape: the stack's own region (the boot never stops on it).
    ("uploads-elsewhere", "eu-west-1"),
])
def test_the_boot_script_reads_the_buckets_region_from_their_names(bucket, region):
    assert buckets_region(bucket) == region


def test_a_stack_destroyed_in_one_region_comes_back_in_another(build, local_aws, standin, tmp_path):  # noqa: F811
    def seeded(region):
        path = tmp_path / f"{region}.json"
        values = _seed(local_aws, region)
        values["AvailabilityZones"] = f"{region}a,{region}b"
        path.write_text(json.dumps(values))
        return path
    params, params_b = seeded(A), seeded(B)
    common = ["--endpoint-url", standin.endpoint, "--poll-seconds", "0.2"]
    created = run("deploy", "--build", str(build), "--stack-name", "old", "--params", str(params),
                  "--region", A, *common)
    assert created.returncode == 0, created.stderr
    cfn_a, s3, sm_a = (local_aws.client(s, A) for s in ("cloudformation", "s3", "secretsmanager"))
    old = stack_outputs(cfn_a, "old")
    with plain_http(s3, old["UploadsBucketName"]):
        s3.put_object(Bucket=old["UploadsBucketName"], Key="uploads/probe.txt", Body=b"written in us-east-1")
    rails_arn, _ = secret_of(cfn_a, sm_a, "old", "RailsSecretsSecret")
    rails = {"gitlab-secrets.json": json.dumps({"gitlab_rails": {"db_key_base": "0ld-db-key-base"}})}
    sm_a.put_secret_value(SecretId=rails_arn, SecretString=json.dumps(rails))
    _, old_db_secret = secret_of(cfn_a, sm_a, "old", "DatabaseSecret")
    old_key = physical(cfn_a, "old", "DataKey")
    destroyed = run("destroy", "--stack-name", "old", "--confirm", "old", "--region", A, *common)
    assert destroyed.returncode == 0, destroyed.stderr

    restore = ["restore", "--from", "old", "--from-region", A, "--region", B, "--stack-name", "new",
               "--build", str(build), "--params", str(params_b), *common]
    # The same region twice is refused before anything is looked up or created.
    same = run("restore", "--from", "old", "--from-region", B, "--region", B, "--stack-name", "new",
               "--build", str(build), *common)
    assert same.returncode == 2 and same.stderr.splitlines()[-1] == (
        f"gitlab-cfn: error: --from-region: {B} is the new stack's region too; leave it out for a restore "
        "in the same region")
    plan = run(*restore, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert plan.stderr.splitlines()[-1].endswith("dry run: nothing was created")
    assert sum("would copy  " in line for line in plan.stderr.splitlines()) == 5   # database, volume, 3 secrets
    assert local_aws.client("kms", B).list_keys()["Keys"] == []
    # A refusal of the parameters comes before any copy is started.
    clash = run(*restore, "--param", "RestoreBucketsRegion=eu-west-1")
    assert clash.returncode == 2 and clash.stderr.splitlines()[-1] == (
        f"gitlab-cfn: error: --param RestoreBucketsRegion=eu-west-1: restore sets it from the old stack ({A})")
    assert local_aws.client("kms", B).list_keys()["Keys"] == []
    assert local_aws.client("rds", B).describe_db_snapshots()["DBSnapshots"] == []
    assert local_aws.client("secretsmanager", B).list_secrets()["SecretList"] == []
    done = run(*restore)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "stack new: CREATE_COMPLETE (restored from old)"
    assert "copies in us-west-2 ready" in done.stderr
    assert "0ld-db-key-base" not in done.stderr + done.stdout   # secret values are never shown

    cfn_b, sm_b, rds_b, ec2_b, kms_b = (local_aws.client(s, B) for s in
                                        ("cloudformation", "secretsmanager", "rds", "ec2", "kms"))
    new = stack_outputs(cfn_b, "new")
    # The buckets: the old ones, in us-east-1, with the object written there; their TLS-only
    # policy put back by the command (plain_http checks it is there), not by the new stack.
    new_id = cfn_b.describe_stacks(StackName="new")["Stacks"][0]["StackId"]
    policies = [r["LogicalResourceId"] for _, r in nested_resources(cfn_b, new_id) if r["ResourceType"] == "AWS::S3::BucketPolicy"]
    assert policies == ["LogsBucketPolicy"]
    assert new["UploadsBucketName"] == old["UploadsBucketName"] and f"-{A}-" in new["UploadsBucketName"]
    with plain_http(s3, new["UploadsBucketName"]):
        assert s3.get_object(Bucket=new["UploadsBucketName"], Key="uploads/probe.txt")["Body"].read() \
            == b"written in us-east-1"
    # The database: from a copy in us-west-2 encrypted with the restore key made there.
    (db,) = rds_b.describe_db_instances(DBInstanceIdentifier=physical(cfn_b, "new", "Database"))["DBInstances"]
    assert db["KmsKeyId"].split(":")[3] == B
    key = kms_b.describe_key(KeyId=db["KmsKeyId"])["KeyMetadata"]
    assert key["KeyState"] == "Enabled" and "restore of stack old" in key["Description"]
    assert secret_of(cfn_b, sm_b, "new", "DatabaseSecret")[1]["password"] == old_db_secret["password"]
    assert secret_of(cfn_b, sm_b, "new", "RailsSecretsSecret")[1] == rails
    (volume,) = ec2_b.describe_volumes(VolumeIds=[physical(cfn_b, "new", "GitalyDataVolume")])["Volumes"]
    (snap,) = ec2_b.describe_snapshots(SnapshotIds=[volume["SnapshotId"]])["Snapshots"]
    assert snap["KmsKeyId"] == db["KmsKeyId"] and snap["Encrypted"]
    # The servers: GitLab's S3 connection names the old buckets' region (read by the boot
    # script from their names), and they use the old key through S3 there.
    assert buckets_region(new["UploadsBucketName"]) == A
    policy = local_aws.client("iam", B).get_role_policy(RoleName=physical(cfn_b, "new", "InstanceRole"),
                                                        PolicyName="RestoredDataKeyUse")["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == [local_aws.client("kms", A).describe_key(KeyId=old_key)
                                                  ["KeyMetadata"]["Arn"]]
    assert policy["Statement"][0]["Condition"]["StringEquals"]["kms:ViaService"] == [f"s3.{A}.amazonaws.com"]

    # A re-run finds the copies and the key again (by their tags): nothing is copied twice.
    counts = (len(rds_b.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]),
              len(ec2_b.describe_snapshots(OwnerIds=["self"])["Snapshots"]), len(kms_b.list_keys()["Keys"]))
    from gitlab_cfn.operate.progress import Progress
    from gitlab_cfn.operate.restore import locate
    from gitlab_cfn.operate.restore_region import into_region
    source = locate(local_aws, A, "old")
    into_region(local_aws, source, A, B, Progress(quiet=True), poll=0)
    copies = [s["DBSnapshotIdentifier"] for s in rds_b.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]]
    assert source.params["RestoreDBSnapshot"] in copies and source.params["RestoreBucketsRegion"] == A
    assert counts == (len(rds_b.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]),
                      len(ec2_b.describe_snapshots(OwnerIds=["self"])["Snapshots"]), len(kms_b.list_keys()["Keys"]))

    # The old log bucket in us-east-1 (retained, its policy not) admits S3's log delivery again.
    log_policy = json.loads(s3.get_bucket_policy(Bucket=old["LogsBucketName"])["Policy"])
    (delivery,) = [st for st in log_policy["Statement"] if st.get("Sid") == "S3ServerAccessLogs"]
    assert delivery["Principal"] == {"Service": ["logging.s3.amazonaws.com"]}
    assert delivery["Resource"] == [f"arn:aws:s3:::{old['LogsBucketName']}/s3/*"]
    # S3 (as the stand-in reads it) now accepts the old bucket's logging into it again.
    s3.put_bucket_logging(Bucket=old["UploadsBucketName"], BucketLoggingStatus={"LoggingEnabled": {
        "TargetBucket": old["LogsBucketName"], "TargetPrefix": "s3/uploads/"}})
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": _seed_account(local_aws)}}

    # The restored stack, destroyed, can be restored again: in its own region, and back in the
    # first (a failback), on the same buckets and key, which stay in us-east-1.
    destroyed = run("destroy", "--stack-name", "new", "--confirm", "new", "--region", B, *common)
    assert destroyed.returncode == 0, destroyed.stderr
    from gitlab_cfn.operate.restore import set_buckets_region
    again = locate(local_aws, B, "new")
    set_buckets_region(again, B)
    assert again.buckets == source.buckets and again.params["RestoreBucketsRegion"] == A
    assert again.params["RestoreKmsKeyArn"].split(":")[3] == A
    set_buckets_region(again, A)
    assert "RestoreBucketsRegion" not in again.params   # the buckets are the new stack's region's
    # The TLS-only policy goes on the buckets located (the restored stack kept none of its own).
    from gitlab_cfn.operate.restore_region import tls_only_policies
    for name in again.buckets.values():
        s3.delete_bucket_policy(Bucket=name)
    tls_only_policies(local_aws, again, A, Progress(quiet=True))
    for name in again.buckets.values():
        (statement,) = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])["Statement"]
        assert statement["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]


def _seed_account(local_aws) -> str:
    return local_aws.client("sts", A).get_caller_identity()["Account"]


def _nothing_in(local_aws, region: str, images: list) -> None:
    """No key, snapshot copy, secret, stack or template bucket was made in ``region`` (``images``:
    the snapshots of the stand-in's own images, there from the start)."""
    assert local_aws.client("kms", region).list_keys()["Keys"] == []
    assert local_aws.client("rds", region).describe_db_snapshots()["DBSnapshots"] == []
    assert local_aws.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"] == images
    assert local_aws.client("secretsmanager", region).list_secrets()["SecretList"] == []
    assert local_aws.client("cloudformation", region).describe_stacks()["Stacks"] == []
    assert not [b for b in local_aws.client("s3", region).list_buckets()["Buckets"] if b["Name"].startswith("gitlab-cfn-")]


def test_a_missing_source_or_a_misspelt_region_is_one_line_and_nothing_is_copied(build, local_aws, standin):  # noqa: F811
    from test_restore import DATABASE, REGION, _deleted

    held = _deleted(local_aws, {"Database": DATABASE})
    rds = local_aws.client("rds", REGION)
    (snapshot,) = rds.describe_db_snapshots(DBInstanceIdentifier=held["Database"])["DBSnapshots"]
    rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])

    images = local_aws.client("ec2", B).describe_snapshots(OwnerIds=["self"])["Snapshots"]

    def refused(*argv):
        result = run("restore", "--from", "old", "--stack-name", "new", "--build", str(build),
                     "--endpoint-url", standin.endpoint, *argv)
        assert result.returncode == 2, result.stderr
        assert [line for line in result.stderr.splitlines() if line.startswith("gitlab-cfn: error: ")] \
            == [result.stderr.splitlines()[-1]], result.stderr
        _nothing_in(local_aws, B, images)
        return result.stderr.splitlines()[-1]

    assert refused("--from-region", REGION, "--region", B) == (
        f"gitlab-cfn: error: --from: no available snapshot of the old database {held['Database']} (Database); "
        "nothing was created")
    assert refused("--from-region", "eu-wst-1", "--region", B).startswith(
        "gitlab-cfn: error: --from-region: 'eu-wst-1' is not an AWS region (did you mean eu-west-1?)")
    # The stack is looked for in --from-region, not --region.
    assert refused("--from-region", A, "--region", B) == (
        f"gitlab-cfn: error: --from: no deleted stack old in {A} (CloudFormation keeps a deleted stack's "
        "record for 90 days; past that, give the restore parameters to gitlab-cfn deploy)")


def test_gitlabs_object_storage_names_the_old_buckets_region():
    """gitlab.rb as the application's boot script renders it for a stack in us-west-2 on the
    buckets of us-east-1, evaluated by Ruby as the package does: the object-storage and backup
    connections name us-east-1 (fog-aws signs for the region it is given)."""
    from support import boot

    arns = {variable: f"arn:aws:secretsmanager:{B}:123456789012:secret:{name}-AbCdEf"
            for variable, (name, _) in boot.SECRETS.items()}
    values = {**boot.preamble_values(5432, "gitlabhq_production", arns), "AWS_REGION": B}
    for name in [n for n in values if n.startswith("BUCKET_")]:
        values[name] = values[name].replace(f"-{boot.REGION}-", f"-{A}-")
    done = boot.render_gitlab_rb("19.3.0-ee", values)
    assert done.returncode == 0, done.stderr
    settings = boot.evaluate_gitlab_rb(done.stdout)["settings"]
    rails = settings["gitlab_rails"]
    assert rails["object_store"]["connection"]["region"] == A
    assert rails["backup_upload_connection"]["region"] == A


def test_a_buckets_region_without_old_buckets_is_refused_and_new_buckets_keep_their_policy(build):  # noqa: F811
    """RestoreBucketsRegion names where old buckets are: alone it is refused by the parent
    template's rules; and only old buckets of another region go without the template's
    TLS-only policy (the command puts it on them)."""
    import yaml
    from gitlab_cfn.operate.deploy import check_params
    from test_deploy import GOOD

    parent = yaml.safe_load((build / "templates" / "main.template.yaml").read_text())
    assert check_params(parent, {**GOOD, "RestoreBucketsRegion": A}, az_count=2) == [
        "RestoredBucketsRegionNamesThem: RestoreBucketsFrom must be given with RestoreBucketsRegion."]
    assert check_params(parent, {**GOOD, "RestoreBucketsRegion": "us-east"}, az_count=2)[0].startswith(
        "RestoreBucketsRegion: ")
    storage = yaml.safe_load((build / "templates" / "storage.template.yaml").read_text())
    assert storage["Resources"]["UploadsBucketPolicy"]["Condition"] == "BucketsInThisRegion"
    assert storage["Conditions"]["BucketsInThisRegion"] == {"Fn::Or": [
        {"Fn::Equals": [{"Ref": "RestoreBucketsFrom"}, ""]}, {"Fn::Equals": [{"Ref": "RestoreBucketsRegion"}, ""]}]}


class _Stubbed:
    """``Aws`` whose clients are botocore's, each with a Stubber: every request is checked
    against the service model and must be the one expected, in order."""

    def __init__(self):
        import boto3
        from botocore.stub import Stubber
        self.clients, self.stubs = {}, {}
        for service in ("rds", "ec2", "secretsmanager"):
            for region in (A, B):
                client = boto3.client(service, region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
                self.clients[service, region] = client
                self.stubs[service, region] = Stubber(client)

    def client(self, service, region):
        return self.clients[service, region]

    def __enter__(self):
        for stub in self.stubs.values():
            stub.activate()
        return self

    def __exit__(self, *exc):
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


STACK_ID = f"arn:aws:cloudformation:{A}:123456789012:stack/old/0a1b"


def _source(**params):
    from gitlab_cfn.operate.restore import RestoreSource
    return RestoreSource("old", STACK_ID, params=dict(params))


def test_a_failed_database_copy_is_looked_up_by_name_deleted_and_copied_again():
    from gitlab_cfn.operate.progress import Progress
    from gitlab_cfn.operate.restore_region import TAG, copy_db_snapshot

    aws = _Stubbed()
    src_arn = f"arn:aws:rds:{A}:123456789012:snapshot:final-1"
    target = f"final-1-{B}"
    target_arn = f"arn:aws:rds:{B}:123456789012:snapshot:{target}"
    aws.stubs["rds", A].add_response("describe_db_snapshots", {"DBSnapshots": [
        {"DBSnapshotIdentifier": "final-1", "DBSnapshotArn": src_arn}]}, {"DBSnapshotIdentifier": "final-1"})
    rds_b = aws.stubs["rds", B]
    # Looked up by the target's name (never a listing of every manual snapshot).
    rds_b.add_response("describe_db_snapshots", {"DBSnapshots": [
        {"DBSnapshotIdentifier": target, "DBSnapshotArn": target_arn, "Status": "failed"}]},
        {"DBSnapshotIdentifier": target})
    rds_b.add_response("list_tags_for_resource", {"TagList": [{"Key": TAG, "Value": STACK_ID}]},
                       {"ResourceName": target_arn})
    rds_b.add_response("delete_db_snapshot", {}, {"DBSnapshotIdentifier": target})
    rds_b.add_response("copy_db_snapshot", {"DBSnapshot": {"DBSnapshotIdentifier": target}}, {
        "SourceDBSnapshotIdentifier": src_arn, "TargetDBSnapshotIdentifier": target, "KmsKeyId": "key",
        "SourceRegion": A, "CopyTags": False, "Tags": [
            {"Key": TAG, "Value": STACK_ID}, {"Key": "gitlab-cfn:restore-piece", "Value": "database"},
            {"Key": "gitlab-cfn:stack", "Value": "old"}]})
    with aws:
        assert copy_db_snapshot(aws, _source(RestoreDBSnapshot="final-1"), A, B, "key", Progress(quiet=True)) == target


def test_a_failed_volume_copy_is_deleted_and_copied_again():
    from gitlab_cfn.operate.restore_region import copy_volume_snapshot

    aws = _Stubbed()
    ec2 = aws.stubs["ec2", B]
    ec2.add_response("describe_snapshots", {"Snapshots": [{"SnapshotId": "snap-0bad", "State": "error"}]})
    ec2.add_response("delete_snapshot", {}, {"SnapshotId": "snap-0bad"})
    ec2.add_response("copy_snapshot", {"SnapshotId": "snap-0new"})
    with aws:
        assert copy_volume_snapshot(aws, _source(RestoreGitalySnapshot="snap-0old"), "RestoreGitalySnapshot",
                                    A, B, "key") == "snap-0new"


def test_a_secret_copy_scheduled_for_deletion_is_refused_with_how_to_restore_it():
    import datetime

    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.operate.restore_region import TAG, copy_secret

    aws = _Stubbed()
    old = f"arn:aws:secretsmanager:{A}:123456789012:secret:old-DatabaseSecret-AbCdEf"
    name = "gitlab-cfn-restore/old/old-DatabaseSecret"   # without the old ARN's random suffix
    aws.stubs["secretsmanager", B].add_response("describe_secret", {
        "ARN": f"arn:aws:secretsmanager:{B}:123456789012:secret:{name}-GhIjKl", "Name": name,
        "DeletedDate": datetime.datetime(2026, 12, 1), "Tags": [{"Key": TAG, "Value": STACK_ID}]}, {"SecretId": name})
    with aws, pytest.raises(ConfigError) as refused:
        copy_secret(aws, _source(RestoreDBSecretArn=old), "RestoreDBSecretArn", A, B, "key")
    assert str(refused.value) == (
        f"--region: the copy {name} in {B} is scheduled for deletion; restore it (aws secretsmanager "
        f"restore-secret --secret-id {name} --region {B}) and run the same command again")


def test_a_volume_copy_not_yet_described_is_pending_for_a_few_polls():
    from botocore.exceptions import ClientError

    from gitlab_cfn.operate.progress import Progress
    from gitlab_cfn.operate.restore_region import UNSEEN_POLLS, wait

    aws = _Stubbed()
    db = {"DBSnapshots": [{"DBSnapshotIdentifier": "copy", "Status": "available"}]}
    for _ in range(2):
        aws.stubs["rds", B].add_response("describe_db_snapshots", db, {"DBSnapshotIdentifier": "copy"})
        aws.stubs["ec2", B].add_client_error("describe_snapshots", "InvalidSnapshot.NotFound",
                                             expected_params={"SnapshotIds": ["snap-0new"]})
    aws.stubs["rds", B].add_response("describe_db_snapshots", db, {"DBSnapshotIdentifier": "copy"})
    aws.stubs["ec2", B].add_response("describe_snapshots", {"Snapshots": [
        {"SnapshotId": "snap-0new", "State": "completed"}]}, {"SnapshotIds": ["snap-0new"]})
    with aws:
        wait(aws, B, "copy", ["snap-0new"], Progress(quiet=True), poll=0, sleep=lambda _: None)
    # Past a few polls it is an error, not a wait of hours.
    aws = _Stubbed()
    for _ in range(UNSEEN_POLLS + 1):
        aws.stubs["rds", B].add_response("describe_db_snapshots", db, {"DBSnapshotIdentifier": "copy"})
        aws.stubs["ec2", B].add_client_error("describe_snapshots", "InvalidSnapshot.NotFound",
                                             expected_params={"SnapshotIds": ["snap-0new"]})
    with aws, pytest.raises(ClientError, match="InvalidSnapshot.NotFound"):
        wait(aws, B, "copy", ["snap-0new"], Progress(quiet=True), poll=0, sleep=lambda _: None)
