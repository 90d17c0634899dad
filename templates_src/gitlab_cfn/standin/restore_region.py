"""Stand-in patches: what a restore into another region (``gitlab-cfn restore --from-region``)
needs of RDS, as AWS does it. Registered by ``patches``, tested in
tests/test_standin_restore_region.py.

Stock moto copies a DB snapshot from another region by its ARN (and EBS snapshots with
``SourceRegion``; Secrets Manager's ``create_secret`` takes a ``KmsKeyId``), but it accepts an
encrypted DB snapshot copied to another region without a ``KmsKeyId``, keeping the source
region's key, which AWS refuses:

- ``cross_region_db_snapshot_copy_needs_a_key``: "If you copy an encrypted DB snapshot to a
  different Amazon Web Services Region, then you must specify an Amazon Web Services KMS key
  identifier for the destination Amazon Web Services Region. KMS keys are specific to the
  Amazon Web Services Region that they are created in, and you can't use KMS keys from one
  Amazon Web Services Region in another Amazon Web Services Region." (RDS API reference,
  CopyDBSnapshot, KmsKeyId). Refused as InvalidParameterValue naming KmsKeyId.
"""

from __future__ import annotations

from gitlab_cfn.standin.patches import patch


@patch
def cross_region_db_snapshot_copy_needs_a_key() -> None:
    from moto.rds.exceptions import InvalidParameterValue
    from moto.rds.models import RDSBackend
    from moto.rds.utils import split_arn

    original = RDSBackend.copy_db_snapshot

    def copy_db_snapshot(self, source_db_snapshot_identifier: str, target_db_snapshot_identifier: str,
                         kms_key_id=None, *args, **kwargs):
        if source_db_snapshot_identifier.startswith("arn:") and kms_key_id is None:
            region = split_arn(source_db_snapshot_identifier)[0]
            if region != self.region_name:
                source = self.get_db_snapshot(source_db_snapshot_identifier)
                if source.encrypted:
                    raise InvalidParameterValue(
                        "KmsKeyId must be given to copy an encrypted DB snapshot to another region: KMS keys "
                        f"are specific to the region they are created in ({source_db_snapshot_identifier})")
        return original(self, source_db_snapshot_identifier, target_db_snapshot_identifier, kms_key_id,
                        *args, **kwargs)

    RDSBackend.copy_db_snapshot = copy_db_snapshot
