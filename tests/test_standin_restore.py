"""The stand-in's restore patches (standin/restore.py), one test each, each deploying a small
template through the running server over HTTP; test_standin's ``test_every_patch_has_a_test``
finds them here."""

from __future__ import annotations

from test_standin import REGION, deploy, failed_events, outputs

DB = {"Engine": "postgres", "DBInstanceClass": "db.m6i.large", "AllocatedStorage": "100"}


def _old_database(local_aws) -> tuple[str, str]:
    """A deleted stack's database and its final snapshot: (snapshot id, the old key's ARN)."""
    key = local_aws.client("kms", REGION).create_key()["KeyMetadata"]["Arn"]
    cfn, stack = deploy(local_aws, {"Resources": {"Database": {
        "Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "Properties": {
            **DB, "DBName": "gitlabhq_production", "MasterUsername": "gitlab",
            "MasterUserPassword": "old-password-1", "StorageEncrypted": True, "KmsKeyId": key}}},
        "Outputs": {"Id": {"Value": {"Ref": "Database"}}}}, name="old")
    db = outputs(stack)["Id"]
    cfn.delete_stack(StackName=stack["StackId"])
    (snapshot,) = local_aws.client("rds", REGION).describe_db_snapshots(DBInstanceIdentifier=db)["DBSnapshots"]
    return snapshot["DBSnapshotIdentifier"], key


def test_patch_db_instance_restored_from_snapshot(local_aws):
    snapshot, old_key = _old_database(local_aws)
    rds = local_aws.client("rds", REGION)

    # Restored: the database name, master user and key come from the snapshot, not the template.
    cfn, stack = deploy(local_aws, {"Resources": {"Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
        **DB, "DBSnapshotIdentifier": snapshot, "StorageEncrypted": True}}},
        "Outputs": {"Id": {"Value": {"Ref": "Database"}}}}, name="restored")
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    (db,) = rds.describe_db_instances(DBInstanceIdentifier=outputs(stack)["Id"])["DBInstances"]
    assert (db["DBName"], db["MasterUsername"], db["KmsKeyId"]) == ("gitlabhq_production", "gitlab", old_key)

    # What AWS refuses: a master user with the snapshot, a snapshot that does not exist,
    # storage below the snapshot's.
    cfn, stack = deploy(local_aws, {"Resources": {"Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
        **DB, "DBSnapshotIdentifier": snapshot, "MasterUsername": "gitlab", "MasterUserPassword": "x" * 12}}}},
        name="both")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    ((_, reason),) = failed_events(cfn, stack["StackId"])
    assert "MasterUsername, MasterUserPassword cannot be given with DBSnapshotIdentifier" in reason
    cfn, stack = deploy(local_aws, {"Resources": {"Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
        **DB, "DBSnapshotIdentifier": "no-such-snapshot"}}}}, name="missing")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "DBSnapshot no-such-snapshot not found." in failed_events(cfn, stack["StackId"])[0][1]
    cfn, stack = deploy(local_aws, {"Resources": {"Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
        **DB, "AllocatedStorage": "20", "DBSnapshotIdentifier": snapshot}}}}, name="small")
    assert "can't be less than the source snapshot" in failed_events(cfn, stack["StackId"])[0][1]


def test_patch_volume_created_from_snapshot(local_aws):
    ec2 = local_aws.client("ec2", REGION)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=30, Encrypted=True)["VolumeId"]
    snapshot = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]

    def volume_from(snapshot_id, size, name):
        return deploy(local_aws, {"Resources": {"Data": {"Type": "AWS::EC2::Volume", "Properties": {
            "AvailabilityZone": f"{REGION}a", "Size": size, "Encrypted": True, "SnapshotId": snapshot_id}}},
            "Outputs": {"Volume": {"Value": {"Ref": "Data"}}}}, name=name)

    _, stack = volume_from(snapshot, 100, "restored")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    (made,) = ec2.describe_volumes(VolumeIds=[outputs(stack)["Volume"]])["Volumes"]
    assert (made["SnapshotId"], made["Size"], made["Encrypted"]) == (snapshot, 100, True)

    cfn, stack = volume_from("snap-0123456789abcdef0", 100, "missing")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "InvalidSnapshot.NotFound" in failed_events(cfn, stack["StackId"])[0][1]
    cfn, stack = volume_from(snapshot, 20, "small")
    assert "Volume of 20GiB is too small; minimum is 30GiB" in failed_events(cfn, stack["StackId"])[0][1]


def test_patch_deleted_stack_resources_listed(local_aws):
    cfn, stack = deploy(local_aws, {"Resources": {
        "Kept": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "Properties": {"BucketName": "gl-kept"}},
        "Gone": {"Type": "AWS::SNS::Topic"}}})
    cfn.delete_stack(StackName=stack["StackId"])
    summaries = cfn.list_stack_resources(StackName=stack["StackId"])["StackResourceSummaries"]
    rows = sorted((s["LogicalResourceId"], s["ResourceType"], s["ResourceStatus"]) for s in summaries)
    assert rows == [("Gone", "AWS::SNS::Topic", "DELETE_COMPLETE"), ("Kept", "AWS::S3::Bucket", "DELETE_SKIPPED")]
    assert [s["PhysicalResourceId"] for s in summaries if s["LogicalResourceId"] == "Kept"] == ["gl-kept"]
    assert "Kept" in cfn.get_template(StackName=stack["StackId"])["TemplateBody"]["Resources"]
    # Deleted: still nothing is created again by the listing, and the bucket is still there once.
    assert local_aws.client("s3", REGION).list_buckets()["Buckets"][0]["Name"] == "gl-kept"
    assert len(local_aws.client("sns", REGION).list_topics()["Topics"]) == 0


def test_patch_deleted_stack_parameters_described(local_aws):
    cfn, stack = deploy(local_aws, {"Parameters": {"RestoreBucketsFrom": {"Type": "String"}},
                                    "Resources": {"Gone": {"Type": "AWS::SNS::Topic"}}},
                        parameters={"RestoreBucketsFrom": "0a1b2c3d"})
    cfn.delete_stack(StackName=stack["StackId"])
    (gone,) = cfn.describe_stacks(StackName=stack["StackId"])["Stacks"]
    assert gone["StackStatus"] == "DELETE_COMPLETE"
    assert gone["Parameters"] == [{"ParameterKey": "RestoreBucketsFrom", "ParameterValue": "0a1b2c3d"}]


def test_patch_restored_db_parameter_group_family_checked(local_aws):
    rds = local_aws.client("rds", REGION)
    rds.create_db_instance(DBInstanceIdentifier="pg16", Engine="postgres", EngineVersion="16.3",
                           DBInstanceClass="db.m6i.large", AllocatedStorage=100, MasterUsername="gitlab",
                           MasterUserPassword="old-password-1")
    rds.create_db_snapshot(DBInstanceIdentifier="pg16", DBSnapshotIdentifier="pg16-final")

    def restored(major: str, name: str):
        return deploy(local_aws, {"Resources": {
            "Params": {"Type": "AWS::RDS::DBParameterGroup", "Properties": {
                "Family": f"postgres{major}", "Description": "TLS", "Parameters": {"rds.force_ssl": "1"}}},
            "Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
                **DB, "EngineVersion": major, "DBSnapshotIdentifier": "pg16-final",
                "DBParameterGroupName": {"Ref": "Params"}}}},
            "Outputs": {"Id": {"Value": {"Ref": "Database"}}}}, name=name)

    cfn, stack = restored("17", "newer")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    reason = failed_events(cfn, stack["StackId"])[0][1]
    assert "with DBParameterGroupFamily postgres17 can't be used for this instance. Use a parameter group " \
           "with DBParameterGroupFamily postgres16." in reason
    cfn, stack = restored("16", "same")
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    (db,) = rds.describe_db_instances(DBInstanceIdentifier=outputs(stack)["Id"])["DBInstances"]
    assert db["EngineVersion"].split(".")[0] == "16"


def test_patch_bucket_logging_policy_read_as_s3_does(local_aws):
    s3 = local_aws.client("s3", REGION)
    for name in ("gl-uploads-old", "gl-logs-new", "gl-logs-closed"):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    # The log bucket's policy as the storage tier writes it (policies.log_bucket), through CloudFormation.
    cfn, stack = deploy(local_aws, {"Resources": {"Policy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
        "Bucket": "gl-logs-new", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": ["logging.s3.amazonaws.com"]}, "Action": ["s3:PutObject"],
            "Resource": ["arn:aws:s3:::gl-logs-new/s3/*"],
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]}}}}})
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    s3.put_bucket_logging(Bucket="gl-uploads-old", BucketLoggingStatus={"LoggingEnabled": {
        "TargetBucket": "gl-logs-new", "TargetPrefix": "s3/uploads/"}})
    assert s3.get_bucket_logging(Bucket="gl-uploads-old")["LoggingEnabled"]["TargetBucket"] == "gl-logs-new"
    # Still refused: a target bucket whose policy does not admit log delivery.
    import botocore.exceptions
    import pytest
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidTargetBucketForLogging"):
        s3.put_bucket_logging(Bucket="gl-uploads-old", BucketLoggingStatus={"LoggingEnabled": {
            "TargetBucket": "gl-logs-closed", "TargetPrefix": "s3/uploads/"}})
