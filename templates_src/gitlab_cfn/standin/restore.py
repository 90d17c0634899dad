"""Stand-in patches: what a restore (``gitlab-cfn restore``) needs of CloudFormation, as AWS does it.

Stock moto ignores ``DBSnapshotIdentifier`` of ``AWS::RDS::DBInstance`` and ``SnapshotId``
of ``AWS::EC2::Volume`` (an empty database and an empty volume were created, whatever the
snapshot, even one that does not exist), and it forgets a deleted stack's resources.
Each patch here is registered by ``patches`` and tested in tests/test_standin_restore.py:

- ``db_instance_restored_from_snapshot``: an instance with ``DBSnapshotIdentifier`` is
  restored from that snapshot (its database name, master user and password, and its
  encryption key come from the snapshot), as RestoreDBInstanceFromDBSnapshot does. Refused,
  as AWS refuses them: a snapshot that does not exist ("DBSnapshot <id> not found.",
  DBSnapshotNotFound; RDS API reference, RestoreDBInstanceFromDBSnapshot: Errors); the
  properties CloudFormation says not to give with it (DBName, KmsKeyId, MasterUsername,
  MasterUserPassword, CharacterSetName, Timezone, SourceDBInstanceIdentifier;
  https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-rds-dbinstance.html#cfn-rds-dbinstance-dbsnapshotidentifier);
  storage smaller than the snapshot's ("The allocated storage size can't be less than the
  source snapshot or backup size.").
- ``volume_created_from_snapshot``: a volume with ``SnapshotId`` is created from that
  snapshot (``describe_volumes`` shows it), encrypted if the snapshot is; a snapshot that
  does not exist is InvalidSnapshot.NotFound, a size below the snapshot's is refused
  ("Volume of <n>GiB is too small; minimum is <m>GiB", EC2 CreateVolume, InvalidParameterValue).
- ``deleted_stack_resources_listed``: ListStackResources and GetTemplate of a deleted stack
  (by its id) answer what it held, the retained resources ``DELETE_SKIPPED``, the others
  ``DELETE_COMPLETE`` ("For deleted stacks, ListStackResources returns resource information
  for up to 90 days after the stack has been deleted", CloudFormation API reference,
  ListStackResources), a nested stack by its id (its name no longer names it). moto answered
  nothing after ``deleted_stacks_stay_deleted``.
- ``deleted_stack_parameters_described``: DescribeStacks of a deleted stack (by its id)
  answers the parameters it had, as CloudFormation does for 90 days ("you can retrieve
  information about a deleted stack for up to 90 days", CloudFormation API reference,
  DescribeStacks: StackName). moto answered an empty list once the stack was deleted.
- ``restored_db_parameter_group_family_checked``: an instance restored from a snapshot
  refuses a DB parameter group of another family than the snapshot's engine major
  ("The parameter group <name> with DBParameterGroupFamily postgres17 can't be used for
  this instance. Use a parameter group with DBParameterGroupFamily postgres16.",
  InvalidParameterCombination, as RDS answers it), and an EngineVersion of another major
  than the snapshot's (a snapshot is restored at its own major; a major upgrade is a later
  ModifyDBInstance; RDS User Guide, "Upgrading the PostgreSQL DB engine for Amazon RDS").
  moto restored a PostgreSQL 16 snapshot with a postgres17 group and called it 17.
- ``bucket_logging_policy_read_as_s3_does``: PutBucketLogging accepts a target bucket whose
  policy lets ``logging.s3.amazonaws.com`` PutObject on a resource covering the target prefix
  (a wildcard such as ``logs/s3/*`` for ``s3/uploads/``; principal and action as lists), as
  S3 does (S3 User Guide, "Permissions for log delivery": the policy's Resource names the
  destination prefix). moto compared the resource and principal as exact strings and failed
  with HTTP 500 on a policy stored by CloudFormation (text, not bytes). Still refused: a
  target bucket without such a statement (InvalidTargetBucketForLogging).
"""

from __future__ import annotations

from typing import Any

from gitlab_cfn.standin.patches import patch

# CloudFormation: "If you specify the DBSnapshotIdentifier property to restore a DB instance
# ..., then don't specify the following properties" (the ones this project could set).
NOT_WITH_SNAPSHOT = ("CharacterSetName", "DBName", "KmsKeyId", "MasterUsername", "MasterUserPassword",
                     "SourceDBInstanceIdentifier", "Timezone")


def _snapshot_name(identifier: str) -> str:
    return identifier.split(":snapshot:", 1)[-1] if identifier.startswith("arn:") else identifier


@patch
def db_instance_restored_from_snapshot() -> None:
    from moto.rds.exceptions import DBSnapshotNotFoundFault, InvalidParameterCombination, InvalidParameterValue
    from moto.rds.models import DBInstance, rds_backends

    original = DBInstance.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties") or {}
        identifier = props.get("DBSnapshotIdentifier")
        if not identifier:
            return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        given = [name for name in NOT_WITH_SNAPSHOT if name in props]
        if given:
            raise InvalidParameterCombination(
                f"{', '.join(given)} cannot be given with DBSnapshotIdentifier: a DB instance restored "
                "from a snapshot takes them from the snapshot")
        backend = rds_backends[account_id][region_name]
        name = _snapshot_name(identifier)
        found = [s for s in backend.describe_db_snapshots(None, None) if s.db_snapshot_identifier == name.lower()]
        if not found:
            raise DBSnapshotNotFoundFault(name)
        snapshot = found[0]
        if int(props.get("AllocatedStorage") or 0) < int(snapshot.allocated_storage or 0):
            raise InvalidParameterValue(
                "The allocated storage size can't be less than the source snapshot or backup size.")
        source = snapshot.database
        restored = {**props, "MasterUsername": source.master_username,
                    "MasterUserPassword": getattr(source, "_master_user_password", None) or "",
                    "DBName": source.db_name,
                    "KmsKeyId": snapshot.kms_key_id, "StorageEncrypted": snapshot.encrypted}
        db = original(cls, resource_name, {**cloudformation_json, "Properties": restored}, account_id,
                      region_name, **kwargs)
        db.restored_from_snapshot = snapshot.db_snapshot_identifier
        return db

    DBInstance.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


@patch
def volume_created_from_snapshot() -> None:
    from moto.ec2.exceptions import InvalidParameterValue as Ec2InvalidParameterValue
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.elastic_block_store import Volume

    original = Volume.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties") or {}
        snapshot_id = props.get("SnapshotId")
        if not snapshot_id:
            return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = ec2_backends[account_id][region_name]
        snapshot = backend.get_snapshot(snapshot_id)   # InvalidSnapshot.NotFound
        size = int(props.get("Size") or snapshot.volume.size)
        if size < int(snapshot.volume.size):
            raise Ec2InvalidParameterValue(
                f"Volume of {size}GiB is too small; minimum is {snapshot.volume.size}GiB")
        return backend.create_volume(size=size, zone_name=props.get("AvailabilityZone"), snapshot_id=snapshot_id,
                                     encrypted=str(props.get("Encrypted", snapshot.encrypted)).lower() == "true"
                                     or snapshot.encrypted)

    Volume.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


class _Held:
    """One resource of a deleted stack, as ListStackResources shows it."""

    def __init__(self, logical_id: str, resource_type: str, physical_id: str, status: str):
        self.logical_resource_id = logical_id
        self.cf_resource_type = resource_type
        self.physical_resource_id = physical_id
        self.status = status


@patch
def deleted_stack_resources_listed() -> None:
    from moto.cloudformation import models as cfn_models
    from moto.cloudformation import responses as cfn_responses

    original_delete = cfn_models.Stack.delete

    def delete(self) -> None:
        held = []
        parsed = self.resource_map._parsed_resources
        for logical_id, body in (self.resource_map._resource_json_map or {}).items():
            resource = parsed.get(logical_id)
            if resource is None or isinstance(resource, (str, int, float, list, dict)):
                continue
            kept = body.get("DeletionPolicy") == "Retain"
            physical = getattr(resource, "physical_resource_id", "")
            if body.get("Type") == "AWS::CloudFormation::Stack":
                # A deleted nested stack is found by its id only (its name is free again).
                physical = getattr(resource, "stack_id", None) or physical
            held.append(_Held(logical_id, body.get("Type", ""), physical,
                              "DELETE_SKIPPED" if kept else "DELETE_COMPLETE"))
        original_delete(self)
        if self.status == "DELETE_COMPLETE":
            self.held_when_deleted = held

    cfn_models.Stack.delete = delete

    original_list = cfn_models.CloudFormationBackend.list_stack_resources

    def list_stack_resources(self, stack_name_or_id: str) -> Any:
        stack, resources = original_list(self, stack_name_or_id)
        held = getattr(stack, "held_when_deleted", None)
        if stack.status == "DELETE_COMPLETE" and held is not None:
            return stack, held
        return stack, resources

    cfn_models.CloudFormationBackend.list_stack_resources = list_stack_resources

    original_response = cfn_responses.CloudFormationResponse.list_stack_resources

    def list_stack_resources_response(self):
        result = original_response(self)
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        held = {h.logical_resource_id: h for h in getattr(stack, "held_when_deleted", None) or []}
        if stack.status == "DELETE_COMPLETE" and held:
            for summary in result.result["StackResourceSummaries"]:
                summary["ResourceStatus"] = held[summary["LogicalResourceId"]].status
        return result

    cfn_responses.CloudFormationResponse.list_stack_resources = list_stack_resources_response


@patch
def deleted_stack_parameters_described() -> None:
    from moto.cloudformation import models as cfn_models

    original_delete = cfn_models.Stack.delete

    def delete(self) -> None:
        try:
            kept = list(self.parameter_list)
        except AttributeError:   # a resource map already gone
            kept = None
        original_delete(self)
        if self.status == "DELETE_COMPLETE" and kept is not None:
            self.parameters_when_deleted = kept

    cfn_models.Stack.delete = delete
    original_list = cfn_models.Stack.parameter_list.fget

    def parameter_list(self) -> list:
        kept = getattr(self, "parameters_when_deleted", None)
        if self.status == "DELETE_COMPLETE" and kept is not None:
            return kept
        return original_list(self)

    cfn_models.Stack.parameter_list = property(parameter_list)


def _major(version: str) -> str:
    """A PostgreSQL engine version's major: "16.3" -> "16", "17" -> "17"."""
    return str(version).split(".", 1)[0]


@patch
def restored_db_parameter_group_family_checked() -> None:
    from moto.rds.exceptions import InvalidParameterCombination
    from moto.rds.models import DBInstance, rds_backends

    restored = DBInstance.create_from_cloudformation_json.__func__   # db_instance_restored_from_snapshot's

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties") or {}
        identifier = props.get("DBSnapshotIdentifier")
        if identifier:
            backend = rds_backends[account_id][region_name]
            name = _snapshot_name(identifier).lower()
            found = [s for s in backend.describe_db_snapshots(None, None) if s.db_snapshot_identifier == name]
            if found:   # a missing snapshot is refused by the restore itself
                engine = found[0].database.engine
                major = _major(found[0].database.engine_version)
                family = f"{engine}{major}"
                group_name = props.get("DBParameterGroupName")
                if group_name:
                    groups = backend.describe_db_parameter_groups({"db_parameter_group_name": group_name})
                    group_family = groups[0].family if groups else None
                    if group_family and group_family != family:
                        raise InvalidParameterCombination(
                            f"The parameter group {group_name} with DBParameterGroupFamily {group_family} can't "
                            f"be used for this instance. Use a parameter group with DBParameterGroupFamily {family}.")
                given = props.get("EngineVersion")
                if given and _major(given) != major:
                    raise InvalidParameterCombination(
                        f"Cannot restore a DB snapshot of {engine} {found[0].database.engine_version} "
                        f"as engine version {given}: restore at major {major}, then upgrade")
        return restored(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    DBInstance.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


@patch
def bucket_logging_policy_read_as_s3_does() -> None:
    import fnmatch
    import json

    from moto.s3.models import FakeBucket

    def _log_permissions_enabled_policy(target_bucket, target_prefix) -> bool:
        policy = target_bucket.policy
        if not policy:
            return False
        document = json.loads(policy.decode() if isinstance(policy, bytes) else policy)
        statements = document.get("Statement", [])
        for stmt in statements if isinstance(statements, list) else [statements]:
            services = (stmt.get("Principal") or {}).get("Service") if isinstance(stmt.get("Principal"), dict) else None
            services = [services] if isinstance(services, str) else services or []
            actions = stmt.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = stmt.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            if stmt.get("Effect") != "Allow" or "logging.s3.amazonaws.com" not in services:
                continue
            if not any(a in ("s3:PutObject", "s3:*", "*") for a in actions):
                continue
            key = f"arn:{target_bucket.partition}:s3:::{target_bucket.name}/{target_prefix or ''}"
            if any(fnmatch.fnmatchcase(key, r) or fnmatch.fnmatchcase(key + "x", r) for r in resources):
                return True
        return False

    FakeBucket._log_permissions_enabled_policy = staticmethod(_log_permissions_enabled_policy)
