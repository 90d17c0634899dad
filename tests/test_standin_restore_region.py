"""The stand-in's cross-region restore patch (standin/restore_region.py), through the running
server over HTTP; test_standin's ``test_every_patch_has_a_test`` finds it here."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

A, B = "us-east-1", "us-west-2"


def test_patch_cross_region_db_snapshot_copy_needs_a_key(local_aws):
    old_key = local_aws.client("kms", A).create_key()["KeyMetadata"]["Arn"]
    rds_a, rds_b = local_aws.client("rds", A), local_aws.client("rds", B)
    rds_a.create_db_instance(DBInstanceIdentifier="old", Engine="postgres", DBInstanceClass="db.m6i.large",
                             AllocatedStorage=100, MasterUsername="gitlab", MasterUserPassword="old-password-1",
                             StorageEncrypted=True, KmsKeyId=old_key)
    arn = rds_a.create_db_snapshot(DBInstanceIdentifier="old", DBSnapshotIdentifier="old-final")["DBSnapshot"]["DBSnapshotArn"]

    # Encrypted, to another region, without a key of that region: refused, nothing copied.
    with pytest.raises(ClientError) as refused:
        rds_b.copy_db_snapshot(SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy", SourceRegion=A)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "KmsKeyId must be given" in refused.value.response["Error"]["Message"]
    assert rds_b.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"] == []

    # With a key of the destination region: copied, encrypted with that key.
    new_key = local_aws.client("kms", B).create_key()["KeyMetadata"]["Arn"]
    copied = rds_b.copy_db_snapshot(SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier="copy",
                                    SourceRegion=A, KmsKeyId=new_key)["DBSnapshot"]
    assert (copied["KmsKeyId"], copied["Encrypted"]) == (new_key, True)
    # In the same region, a copy without a key keeps the source's key, as AWS does.
    same = rds_a.copy_db_snapshot(SourceDBSnapshotIdentifier="old-final", TargetDBSnapshotIdentifier="same")
    assert same["DBSnapshot"]["KmsKeyId"] == old_key
