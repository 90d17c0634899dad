"""Deleting a deployment, and saying honestly what it leaves behind.

Data resources are never lost to a deletion: buckets, the KMS key and secrets
are retained, the database and the Gitaly volume end in final snapshots. RDS
deletion protection (on by design) would make CloudFormation's delete fail, so
``destroy`` turns it off first, in the open, when the person has confirmed the
stack name. After the delete, each retained resource and snapshot is looked up
and reported as it is, not as the template intended.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import yaml
from botocore.exceptions import ClientError

from gitlab_cfn.errors import CheckFailed, ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.deploy import (
    TERMINAL_FAILED,
    _existing,
    nested_resources,
    stack_states,
)
from gitlab_cfn.operate.progress import Progress

DATA_POLICIES = ("Retain", "Snapshot")


@dataclass
class Kept:
    logical_id: str
    resource_type: str
    physical_id: str
    policy: str
    found: str = ""   # what exists now: the bucket, the snapshot id, ...

    def line(self) -> str:
        state = self.found or "NOT FOUND"
        return f"{self.policy:<8} {self.resource_type:<34} {self.logical_id:<24} {state}"


@dataclass
class DestroyResult:
    status: str
    kept: list[Kept] = field(default_factory=list)


def data_resources(cfn, stack_id: str) -> list[Kept]:
    kept = []
    by_stack: dict[str, dict[str, str]] = {stack_id: {}}
    for sid, r in nested_resources(cfn, stack_id):
        by_stack.setdefault(sid, {})[r["LogicalResourceId"]] = r.get("PhysicalResourceId", "")
        if r["ResourceType"] == "AWS::CloudFormation::Stack" and r.get("PhysicalResourceId"):
            by_stack.setdefault(r["PhysicalResourceId"], {})
    for sid, physical in by_stack.items():
        body = cfn.get_template(StackName=sid)["TemplateBody"]
        template = body if isinstance(body, dict) else yaml.safe_load(body)
        for logical, resource in (template.get("Resources") or {}).items():
            policy = resource.get("DeletionPolicy")
            if policy in DATA_POLICIES and logical in physical:
                kept.append(Kept(logical, resource["Type"], physical[logical], policy))
    return kept


def _look(aws: Aws, region: str, item: Kept) -> str:
    try:
        if item.resource_type == "AWS::S3::Bucket":
            aws.client("s3", region).head_bucket(Bucket=item.physical_id)
            return f"bucket {item.physical_id}"
        if item.resource_type == "AWS::SecretsManager::Secret":
            aws.client("secretsmanager", region).describe_secret(SecretId=item.physical_id)
            return f"secret {item.physical_id}"
        if item.resource_type == "AWS::KMS::Key":
            key = aws.client("kms", region).describe_key(KeyId=item.physical_id)["KeyMetadata"]
            return f"key {key['KeyId']} ({key.get('KeyState', 'Enabled')})"
        if item.resource_type == "AWS::RDS::DBInstance":
            snaps = aws.client("rds", region).describe_db_snapshots(
                DBInstanceIdentifier=item.physical_id)["DBSnapshots"]
            return f"snapshot {snaps[-1]['DBSnapshotIdentifier']}" if snaps else ""
        if item.resource_type == "AWS::EC2::Volume":
            snaps = aws.client("ec2", region).describe_snapshots(
                Filters=[{"Name": "volume-id", "Values": [item.physical_id]}])["Snapshots"]
            return f"snapshot {snaps[-1]['SnapshotId']}" if snaps else ""
        if item.resource_type == "AWS::ElastiCache::ReplicationGroup":
            snaps = aws.client("elasticache", region).describe_snapshots(
                ReplicationGroupId=item.physical_id).get("Snapshots", [])
            return f"snapshot {snaps[-1]['SnapshotName']}" if snaps else ""
    except ClientError:
        return ""
    return "kept"


def unprotect(rds, instance: str, progress: Progress, poll: float) -> None:
    """Turn a database's deletion protection off, in the open, once it can be changed.

    RDS refuses to modify an instance that is still being created or modified
    (InvalidDBInstanceState) and answers DBInstanceNotFound for one already gone (API
    reference, ModifyDBInstance: Errors); the change is in effect once the instance is
    ``available`` again (ApplyImmediately).
    """
    for _ in range(360):
        try:
            rds.modify_db_instance(DBInstanceIdentifier=instance, DeletionProtection=False, ApplyImmediately=True)
            break
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
                progress.done(f"database {instance} is already gone")
                return
            if code != "InvalidDBInstanceState":
                raise
            progress.update(f"database {instance} cannot be changed yet; waiting")
            time.sleep(poll)
    else:
        raise CheckFailed(f"database {instance} could not be changed for an hour; nothing was deleted")
    for _ in range(360):
        described = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
        if described.get("DBInstanceStatus") == "available" and not described.get("DeletionProtection"):
            break
        progress.update(f"database {instance}: {described.get('DBInstanceStatus')}")
        time.sleep(poll)
    progress.done(f"turned off deletion protection of {instance} (a final snapshot is taken)")


def destroy(stack_name: str, region: str, aws: Aws, progress: Progress, poll: float = 10.0) -> DestroyResult:
    cfn = aws.client("cloudformation", region)
    existing = _existing(cfn, stack_name)
    if existing is None:
        raise ConfigError(f"--stack-name: no stack {stack_name} in {region}")
    stack_id = existing["StackId"]
    kept = data_resources(cfn, stack_id)
    rds = aws.client("rds", region)
    for item in kept:
        if item.resource_type == "AWS::RDS::DBInstance" and item.physical_id:
            unprotect(rds, item.physical_id, progress, poll)
    if existing.get("EnableTerminationProtection"):
        # deploy turns it on for every new stack; the confirmed name is the consent to turn it off
        # (UpdateTerminationProtection, CloudFormation API reference).
        cfn.update_termination_protection(StackName=stack_id, EnableTerminationProtection=False)
        progress.done(f"turned off termination protection of stack {stack_name}")
    cfn.delete_stack(StackName=stack_id)
    progress.done(f"deleting stack {stack_name}")
    status = "DELETE_IN_PROGRESS"
    while True:
        states = stack_states(cfn, stack_id)
        status = states[0].status if states else "DELETE_COMPLETE"
        if status == "DELETE_COMPLETE" or status in TERMINAL_FAILED:
            break
        progress.update(f"{stack_name}: {status}")
        time.sleep(poll)
    if status != "DELETE_COMPLETE":
        raise CheckFailed(f"stack {stack_name} is {status}")
    for item in kept:
        item.found = _look(aws, region, item)
    return DestroyResult(status, kept)
