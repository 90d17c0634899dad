"""A new stack from what a deleted one left behind (``gitlab-cfn restore``).

``destroy`` keeps every data resource: the database and the Gitaly volumes end in final
snapshots; the buckets, the KMS key and the secrets are retained. CloudFormation keeps a
deleted stack's record, its template and its resources' physical ids for 90 days ("For
deleted stacks, ListStackResources returns resource information for up to 90 days after
the stack has been deleted", CloudFormation API reference, ListStackResources), so the old
stack's data is found from that record, by logical id, as ``destroy`` reported it
(``destroy.data_resources``), not from names guessed again.

Every piece is looked up and checked before anything is created: a snapshot that is not
there (or not yet available), a key pending deletion, a deleted secret, a bucket that is
gone, or a gitlab-secrets.json that was never published is one line naming it (exit 2).
The new stack is then created by ``deploy`` with the restore parameters
(``catalog.restore_parameters``); the servers' boot scripts take it from there (a restored
database is migrated, never seeded again: scripts/gitlab-app.sh).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import ClientError

from gitlab_cfn.compile.catalog import gitaly_restore_parameter
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.deploy import DeployRequest, DeployResult, _existing, _parent_template, deploy
from gitlab_cfn.operate.destroy import Kept, data_resources
from gitlab_cfn.operate.progress import Progress

# The object buckets of the storage tier (storage.BUCKETS), by logical id.
OBJECT_BUCKETS = ("ArtifactsBucket", "ExternalDiffsBucket", "LfsBucket", "UploadsBucket", "PackagesBucket",
                  "DependencyProxyBucket", "TerraformStateBucket", "CiSecureFilesBucket", "PagesBucket",
                  "RegistryBucket", "BackupsBucket")
SECRETS = {"DatabaseSecret": "RestoreDBSecretArn", "RailsSecretsSecret": "RestoreRailsSecretArn",
           "SshHostKeysSecret": "RestoreSshHostKeysArn"}


@dataclass
class RestoreSource:
    """What the old stack left, and the deploy parameters that start a new stack from it."""

    stack_name: str
    stack_id: str
    params: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)   # the plan, one line per piece
    sizes: dict[str, int] = field(default_factory=dict)   # size parameter -> smallest allowed (GiB)


def deleted_stack(cfn, name: str, region: str) -> str:
    """The id of the most recently deleted top-level stack called ``name``."""
    live = _existing(cfn, name)
    if live is not None:
        raise ConfigError(f"--from: stack {name} still exists in {region} ({live['StackStatus']}); restore starts "
                          f"from a deleted stack's data: delete it with gitlab-cfn destroy (which keeps its data)")
    found = []
    for page in cfn.get_paginator("list_stacks").paginate(StackStatusFilter=["DELETE_COMPLETE"]):
        found += [s for s in page["StackSummaries"] if s["StackName"] == name and not s.get("ParentId")]
    if not found:
        raise ConfigError(f"--from: no deleted stack {name} in {region} (CloudFormation keeps a deleted stack's "
                          "record for 90 days; past that, give the restore parameters to gitlab-cfn deploy)")
    latest = max(found, key=lambda s: str(s.get("DeletionTime") or s.get("CreationTime")))
    return latest["StackId"]


def _db_snapshot(aws: Aws, region: str, item: Kept) -> tuple[str, int]:
    snaps = aws.client("rds", region).describe_db_snapshots(
        DBInstanceIdentifier=item.physical_id)["DBSnapshots"]
    ready = [s for s in snaps if s.get("Status", "available") == "available"]
    if not ready:
        raise ConfigError(f"--from: no available snapshot of the old database {item.physical_id} "
                          f"({item.logical_id}); nothing was created")
    latest = max(ready, key=lambda s: str(s.get("SnapshotCreateTime", "")))
    return latest["DBSnapshotIdentifier"], int(latest.get("AllocatedStorage") or 0)


def _volume_snapshot(aws: Aws, region: str, item: Kept) -> tuple[str, int]:
    snaps = aws.client("ec2", region).describe_snapshots(
        Filters=[{"Name": "volume-id", "Values": [item.physical_id]}])["Snapshots"]
    ready = [s for s in snaps if s.get("State", "completed") == "completed"]
    if not ready:
        raise ConfigError(f"--from: no completed snapshot of the old Gitaly volume {item.physical_id} "
                          f"({item.logical_id}); nothing was created")
    latest = max(ready, key=lambda s: str(s.get("StartTime", "")))
    return latest["SnapshotId"], int(latest.get("VolumeSize") or 0)


def _secret(aws: Aws, region: str, item: Kept) -> str:
    client = aws.client("secretsmanager", region)
    try:
        described = client.describe_secret(SecretId=item.physical_id)
    except ClientError:
        described = {}
    if not described or described.get("DeletedDate"):
        raise ConfigError(f"--from: the old secret {item.physical_id} ({item.logical_id}) is gone or scheduled for "
                          "deletion (restore it with aws secretsmanager restore-secret); nothing was created")
    if item.logical_id == "RailsSecretsSecret":
        # Read to check a key is there, never printed: without gitlab-secrets.json the restored
        # database's encrypted columns cannot be read.
        value = json.loads(client.get_secret_value(SecretId=item.physical_id).get("SecretString") or "{}")
        if not value.get("gitlab-secrets.json"):
            raise ConfigError(f"--from: the old secret {item.physical_id} (RailsSecretsSecret) holds no "
                              "gitlab-secrets.json (no server of the old stack ever published it); nothing was created")
    return described["ARN"]


def _key(aws: Aws, region: str, item: Kept) -> str:
    try:
        key = aws.client("kms", region).describe_key(KeyId=item.physical_id)["KeyMetadata"]
    except ClientError:
        key = {}
    if key.get("KeyState", "Enabled") != "Enabled" or not key:
        state = key.get("KeyState", "not found")
        raise ConfigError(f"--from: the old key {item.physical_id} (DataKey) is {state}; it encrypts the old "
                          "snapshot, buckets and secrets (a key pending deletion: aws kms cancel-key-deletion, "
                          "then enable-key); nothing was created")
    return key["Arn"]


def _bucket_suffix(aws: Aws, region: str, buckets: dict[str, str]) -> str:
    missing = [b for b in OBJECT_BUCKETS if b not in buckets]
    if missing:
        raise ConfigError(f"--from: the old stack had no {missing[0]}; nothing was created")
    s3 = aws.client("s3", region)
    for logical in OBJECT_BUCKETS:
        try:
            s3.head_bucket(Bucket=buckets[logical])
        except ClientError:
            raise ConfigError(f"--from: the old bucket {buckets[logical]} ({logical}) is gone; "
                              "nothing was created") from None
    suffixes = {name.rsplit("-", 1)[-1] for name in buckets.values()}
    if len(suffixes) != 1:
        raise ConfigError(f"--from: the old buckets do not share one suffix ({', '.join(sorted(suffixes))}); "
                          "nothing was created")
    return suffixes.pop()


def locate(aws: Aws, region: str, old_name: str) -> RestoreSource:
    """Everything the deleted stack ``old_name`` left, checked; raises ConfigError (exit 2)
    naming the first piece that is missing."""
    cfn = aws.client("cloudformation", region)
    stack_id = deleted_stack(cfn, old_name, region)
    kept = data_resources(cfn, stack_id)
    source = RestoreSource(old_name, stack_id)
    buckets: dict[str, str] = {}
    by_id = {item.logical_id: item for item in kept}
    if "PraefectDatabase" in by_id:
        raise ConfigError("--from: the old stack ran Gitaly Cluster with Praefect's own database; restore "
                          "starts a single Gitaly server's stack only (docs/operations.md, Restoring)")
    for item in kept:
        if item.resource_type == "AWS::RDS::DBInstance" and item.logical_id == "Database":
            snapshot, storage = _db_snapshot(aws, region, item)
            source.params["RestoreDBSnapshot"] = snapshot
            source.sizes["DBAllocatedStorage"] = storage
            source.lines.append(f"database    from snapshot {snapshot} ({storage} GiB) of {item.physical_id}")
        elif item.resource_type == "AWS::EC2::Volume" and item.logical_id.endswith("DataVolume"):
            snapshot, size = _volume_snapshot(aws, region, item)
            prefix = item.logical_id.removesuffix("DataVolume")
            source.params[gitaly_restore_parameter(prefix)] = snapshot
            source.sizes["GitalyVolumeSize" if prefix == "Gitaly" else "GitalyNodeVolumeSize"] = size
            source.lines.append(f"{prefix:<11} from snapshot {snapshot} ({size} GiB) of {item.physical_id}")
        elif item.resource_type == "AWS::S3::Bucket" and item.logical_id in OBJECT_BUCKETS:
            buckets[item.logical_id] = item.physical_id
        elif item.resource_type == "AWS::KMS::Key" and item.logical_id == "DataKey":
            source.params["RestoreKmsKeyArn"] = _key(aws, region, item)
            source.lines.append(f"key         {source.params['RestoreKmsKeyArn']} (the old buckets, snapshot "
                                "and secrets are encrypted with it: keep it)")
        elif item.resource_type == "AWS::SecretsManager::Secret" and item.logical_id in SECRETS:
            source.params[SECRETS[item.logical_id]] = _secret(aws, region, item)
            source.lines.append(f"secret      {item.logical_id} seeded from {source.params[SECRETS[item.logical_id]]}")
    for needed, what in (("RestoreDBSnapshot", "database (Database)"), ("RestoreKmsKeyArn", "key (DataKey)"),
                         ("RestoreDBSecretArn", "database secret (DatabaseSecret)"),
                         ("RestoreRailsSecretArn", "gitlab-secrets.json secret (RailsSecretsSecret)")):
        if needed not in source.params:
            raise ConfigError(f"--from: stack {old_name} left no {what}; nothing was created")
    source.params["RestoreBucketsFrom"] = _bucket_suffix(aws, region, buckets)
    source.lines.append(f"buckets     the old stack's {len(OBJECT_BUCKETS)} object buckets, "
                        f"gl-<kind>-<account>-{region}-{source.params['RestoreBucketsFrom']} (used in place)")
    return source


def restore_params(template: dict, source: RestoreSource, given: dict[str, str]) -> dict[str, str]:
    """The new stack's parameters: the person's, the restore ones, and sizes no smaller than
    the snapshots' (a volume or database smaller than its snapshot is refused by AWS)."""
    declared = template.get("Parameters") or {}
    unknown = [name for name in source.params if name not in declared]
    if unknown:
        raise ConfigError(f"--build: this build has no parameter {unknown[0]} for the old stack's data (built "
                          "for another shape: a Gitaly Cluster, say); build the old stack's configuration")
    clash = [name for name in source.params if name in given and given[name] != source.params[name]]
    if clash:
        raise ConfigError(f"--param {clash[0]}: restore sets it from the old stack ({source.params[clash[0]]})")
    params = {**given, **source.params}
    for name, smallest in source.sizes.items():
        if name not in declared:
            continue
        current = int(params.get(name, declared[name].get("Default", 0)) or 0)
        if current < smallest:
            if name in given:
                raise ConfigError(f"--param {name}={given[name]}: smaller than the old stack's snapshot "
                                  f"({smallest} GiB); give at least {smallest}")
            params[name] = str(smallest)
    return params


def restore(old_name: str, request: DeployRequest, aws: Aws, progress: Progress, dry_run: bool = False,
            fill: Callable[[dict[str, str]], dict[str, str]] | None = None, from_region: str | None = None,
            ) -> tuple[RestoreSource, dict[str, str], DeployResult | None]:
    """Check, plan and (unless ``dry_run``) create. ``fill``: demo values of the stand-in
    (``--local``), asked for only once every check has passed, since it creates some."""
    template, _ = _parent_template(request.build_dir)   # a missing build fails before anything starts
    cfn = aws.client("cloudformation", request.region)
    if old_name == request.stack_name:
        raise ConfigError("--from: the new stack needs another name than the old one")
    if _existing(cfn, request.stack_name) is not None:
        raise ConfigError(f"--stack-name: stack {request.stack_name} already exists in {request.region}; "
                          "restore creates a new stack")
    if from_region is not None:   # another region: the old stack's pieces are copied first
        from gitlab_cfn.operate.restore_region import check_regions, into_region, plan_copies
        check_regions(from_region, request.region)
    source = locate(aws, from_region or request.region, old_name)
    if from_region is not None:
        if dry_run:
            plan_copies(source, from_region, request.region, progress)
        else:
            into_region(aws, source, from_region, request.region, progress, poll=request.poll)
    params = restore_params(template, source, request.params)
    progress.done(f"restoring {request.stack_name} from deleted stack {old_name} ({source.stack_id})")
    for line in source.lines:
        progress.done(line)
    for name in source.sizes:
        if name in params and name not in request.params:
            progress.done(f"{name} = {params[name]} (at least the old snapshot's size)")
    if dry_run:
        progress.done("dry run: nothing was created")
        return source, params, None
    if fill is not None:
        params = {**fill(params), **params}
    request.params = params
    return source, params, deploy(request, aws, progress)
