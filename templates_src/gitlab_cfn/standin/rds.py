"""Stand-in patch: a DB instance is modified in place by a stack update, as RDS does.

Stock moto has no update for ``AWS::RDS::DBInstance``: a stack update kept the old
instance whatever changed, so an engine upgrade "succeeded" without the flag RDS
requires. ``db_instance_modified_in_place`` (registered by ``patches``, tested by
``tests/test_standin.py::test_patch_db_instance_modified_in_place``) applies the
properties CloudFormation updates without replacement (engine version, class,
storage, IOPS, parameter group, backup retention, deletion protection) to the same
instance, with RDS's ModifyDBInstance checks:

- a new major version needs ``AllowMajorVersionUpgrade: true``:
  "The AllowMajorVersionUpgrade flag must be present when upgrading to a new major
  version." (InvalidParameterCombination; RDS API reference, ModifyDBInstance,
  AllowMajorVersionUpgrade: "This parameter must be set to true when specifying a value
  for the EngineVersion parameter that is a different major version than the DB
  instance's current version");
- no downgrade: "Cannot upgrade postgres from 17.4 to 16" (InvalidParameterCombination).
"""

from __future__ import annotations

from typing import Any

from moto.rds.exceptions import InvalidParameterCombination
from moto.rds.models import DBInstance

from gitlab_cfn.standin.patches import patch


def _major(version: str) -> int:
    return int(str(version).split(".")[0])


def _modify(original: Any, props: dict[str, Any]) -> Any:
    old, new = str(original.engine_version), props.get("EngineVersion")
    if new is not None and str(new) != old and not old.startswith(f"{new}."):
        if _major(new) < _major(old):
            raise InvalidParameterCombination(f"Cannot upgrade {original.engine} from {old} to {new}")
        if _major(new) > _major(old) and str(props.get("AllowMajorVersionUpgrade")).lower() != "true":
            raise InvalidParameterCombination(
                "The AllowMajorVersionUpgrade flag must be present when upgrading to a new major version.")
        original.engine_version = str(new)
    simple = {"DBInstanceClass": "db_instance_class", "Iops": "iops",
              "DBParameterGroupName": "db_parameter_group_name",
              "BackupRetentionPeriod": "backup_retention_period",
              "DeletionProtection": "deletion_protection"}
    for prop, attribute in simple.items():
        if prop in props:
            value = props[prop]
            if prop in ("Iops", "BackupRetentionPeriod"):
                # moto keeps these as it was given them at create (strings from a template)
                current = getattr(original, attribute, None)
                value = type(current)(value) if current is not None else value
            if prop == "DeletionProtection":
                value = str(value).lower() == "true"
            setattr(original, attribute, value)
    if "AllocatedStorage" in props:
        size = int(props["AllocatedStorage"])
        if size < int(original.allocated_storage):
            raise InvalidParameterCombination(
                "Invalid storage size for engine name postgres and storage type "
                f"{getattr(original, 'storage_type', 'gp3')}: {size}")
        original.allocated_storage = type(original.allocated_storage)(size)
    return original


@patch
def db_instance_modified_in_place() -> None:
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):
        return _modify(original_resource, cloudformation_json.get("Properties") or {})

    DBInstance.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)
