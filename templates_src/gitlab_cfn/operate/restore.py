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
import math
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import ClientError

from gitlab_cfn.compile.catalog import gitaly_restore_parameter
from gitlab_cfn.compile.tiers.storage import BUCKETS
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.deploy import DeployRequest, DeployResult, _account, _existing, _parent_template, deploy
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
    buckets: dict[str, str] = field(default_factory=dict)   # logical id (UploadsBucket) -> bucket name
    buckets_region: str = ""   # where the buckets (and the key that encrypts them) are
    log_bucket: str = ""   # the old stack's retained log bucket, when the buckets were its own


# Provisioned IOPS per GiB that AWS accepts, by storage ("rds:" + RDS storage type, "ebs:" +
# EBS volume type): (lowest, highest). The IOPS parameters' own MinValue and MaxValue
# (compile/catalog.py: 1,000-256,000 on RDS io1, 100-64,000 on EBS io1, 3,000-16,000 on gp3)
# bound the allowed range too (check_iops).
# - RDS io1: "For RDS for Db2, MariaDB, MySQL, Oracle, and PostgreSQL - Must be a multiple
#   between .5 and 50 of the storage amount for the DB instance" (RDS API reference,
#   CreateDBInstance, Iops: https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html).
#   RDS gp3: the template gives no Iops (compile/tiers/database.py sets it on io1 only; gp3
#   for PostgreSQL takes provisioned IOPS only from 400 GiB, RDS User Guide, "gp3 storage"),
#   so there is no ratio to keep.
# - EBS: "The maximum ratio of provisioned IOPS to requested volume size (in GiB) is 50:1 for
#   io1 volumes, and 1000:1 for io2 Block Express volumes"
#   (https://docs.aws.amazon.com/ebs/latest/userguide/provisioned-iops.html); gp3: "The maximum
#   ratio of provisioned IOPS to provisioned volume size is 500 IOPS per GiB"
#   (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html). No lower ratio.
IOPS_PER_GIB = {"rds:io1": (0.5, 50), "ebs:io1": (0, 50), "ebs:io2": (0, 1000), "ebs:gp3": (0, 500)}


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


def _db_snapshot(aws: Aws, region: str, item: Kept) -> tuple[str, int, str]:
    snaps = aws.client("rds", region).describe_db_snapshots(
        DBInstanceIdentifier=item.physical_id)["DBSnapshots"]
    ready = [s for s in snaps if s.get("Status", "available") == "available"]
    if not ready:
        raise ConfigError(f"--from: no available snapshot of the old database {item.physical_id} "
                          f"({item.logical_id}); nothing was created")
    latest = max(ready, key=lambda s: str(s.get("SnapshotCreateTime", "")))
    return latest["DBSnapshotIdentifier"], int(latest.get("AllocatedStorage") or 0), str(latest.get("EngineVersion", ""))


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


def _key(aws: Aws, region: str, key_id: str, what: str = "DataKey") -> str:
    try:
        key = aws.client("kms", region).describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError:
        key = {}
    if key.get("KeyState", "Enabled") != "Enabled" or not key:
        state = key.get("KeyState", "not found")
        raise ConfigError(f"--from: the old key {key_id} ({what}) is {state}; it encrypts the old "
                          "snapshot, buckets and secrets (a key pending deletion: aws kms cancel-key-deletion, "
                          "then enable-key); nothing was created")
    return key["Arn"]


def _previous_parameters(cfn, stack_id: str) -> dict[str, str]:
    """The deleted stack's parameters: DescribeStacks answers a deleted stack by its id, with
    its parameters, for 90 days ("you can retrieve information about a deleted stack for up to
    90 days", CloudFormation API reference, DescribeStacks: StackName)."""
    (stack,) = cfn.describe_stacks(StackName=stack_id)["Stacks"]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}


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
    # A stack that was itself restored made no object buckets (storage.py: NewBuckets) and
    # used the first stack's, encrypted with the first stack's key (as is its database, whose
    # snapshot keeps the key it was restored with): both are carried forward from its parameters.
    previous = _previous_parameters(cfn, stack_id)
    buckets: dict[str, str] = {}
    by_id = {item.logical_id: item for item in kept}
    if "PraefectDatabase" in by_id:
        raise ConfigError("--from: the old stack ran Gitaly Cluster with Praefect's own database; restore "
                          "starts a single Gitaly server's stack only (docs/operations.md, Restoring)")
    for item in kept:
        if item.resource_type == "AWS::RDS::DBInstance" and item.logical_id == "Database":
            snapshot, storage, version = _db_snapshot(aws, region, item)
            source.params["RestoreDBSnapshot"] = snapshot
            source.sizes["DBAllocatedStorage"] = storage
            # RDS restores a snapshot at its own major version: the parameter group's family
            # (postgres${DBEngineVersion}, compile/tiers/database.py) must be the snapshot's
            # ("The parameter group ... with DBParameterGroupFamily postgres17 can't be used for
            # this instance. Use a parameter group with DBParameterGroupFamily postgres16.").
            if version:
                source.params["DBEngineVersion"] = version.split(".", 1)[0]
            source.lines.append(f"database    from snapshot {snapshot} ({storage} GiB, PostgreSQL {version or '?'}) "
                                f"of {item.physical_id}")
        elif item.resource_type == "AWS::EC2::Volume" and item.logical_id.endswith("DataVolume"):
            snapshot, size = _volume_snapshot(aws, region, item)
            prefix = item.logical_id.removesuffix("DataVolume")
            source.params[gitaly_restore_parameter(prefix)] = snapshot
            source.sizes["GitalyVolumeSize" if prefix == "Gitaly" else "GitalyNodeVolumeSize"] = size
            source.lines.append(f"{prefix:<11} from snapshot {snapshot} ({size} GiB) of {item.physical_id}")
        elif item.resource_type == "AWS::S3::Bucket" and item.logical_id in OBJECT_BUCKETS:
            buckets[item.logical_id] = item.physical_id
        elif item.resource_type == "AWS::S3::Bucket" and item.logical_id == "LogsBucket":
            source.log_bucket = item.physical_id
        elif item.resource_type == "AWS::KMS::Key" and item.logical_id == "DataKey":
            source.params["RestoreKmsKeyArn"] = _key(aws, region, item.physical_id)
            encrypts = "secrets" if previous.get("RestoreKmsKeyArn") else "buckets, snapshot and secrets"
            source.lines.append(f"key         {source.params['RestoreKmsKeyArn']} (the old {encrypts} are "
                                "encrypted with it: keep it)")
        elif item.resource_type == "AWS::SecretsManager::Secret" and item.logical_id in SECRETS:
            source.params[SECRETS[item.logical_id]] = _secret(aws, region, item)
            source.lines.append(f"secret      {item.logical_id} seeded from {source.params[SECRETS[item.logical_id]]}")
    for needed, what in (("RestoreDBSnapshot", "database (Database)"), ("RestoreKmsKeyArn", "key (DataKey)"),
                         ("RestoreDBSecretArn", "database secret (DatabaseSecret)"),
                         ("RestoreRailsSecretArn", "gitlab-secrets.json secret (RailsSecretsSecret)")):
        if needed not in source.params:
            raise ConfigError(f"--from: stack {old_name} left no {what}; nothing was created")
    carried = previous.get("RestoreBucketsFrom", "")
    # A stack restored from another region used the first stack's buckets where they are
    # (RestoreBucketsRegion): their names, and the key that encrypts them, are of that region.
    source.buckets_region = (previous.get("RestoreBucketsRegion") if carried else "") or region
    if carried:
        source.log_bucket = ""   # the first stack's buckets log to the first stack's log bucket
        account = _account(aws, region)
        buckets = {f"{logical}Bucket": f"gl-{kind}-{account}-{source.buckets_region}-{carried}"
                   for logical, kind in BUCKETS.items()}
    if previous.get("RestoreKmsKeyArn"):
        source.params["RestoreKmsKeyArn"] = _key(aws, source.buckets_region, previous["RestoreKmsKeyArn"],
                                                 "RestoreKmsKeyArn")
        source.lines.append(f"key         {source.params['RestoreKmsKeyArn']} (carried from {old_name}'s "
                            "RestoreKmsKeyArn: the buckets and the database are still encrypted with it: keep it)")
    source.params["RestoreBucketsFrom"] = _bucket_suffix(aws, source.buckets_region, buckets)
    source.buckets = {logical: buckets[logical] for logical in OBJECT_BUCKETS}
    source.lines.append(f"buckets     the {'first' if carried else 'old'} stack's {len(OBJECT_BUCKETS)} object "
                        f"buckets, gl-<kind>-<account>-{source.buckets_region}-{source.params['RestoreBucketsFrom']} "
                        "(used in place" + (f", carried from {old_name}'s RestoreBucketsFrom)" if carried else ")"))
    return source


def set_buckets_region(source: RestoreSource, region: str) -> None:
    """RestoreBucketsRegion of the new stack in ``region``: the buckets' region, empty when it
    is the new stack's own (a failback to the buckets' region, or a restore in place)."""
    if source.buckets_region == region:
        source.params.pop("RestoreBucketsRegion", None)   # the parameter's default: ""
    else:
        source.params["RestoreBucketsRegion"] = source.buckets_region


def _storage_kinds(config: dict, declared: dict) -> list[tuple[str, str, str]]:
    """(storage kind of IOPS_PER_GIB, size parameter, IOPS parameter) of this build."""
    database = (config.get("database") or {}).get("storage_type", "io1")
    gitaly = (config.get("gitaly") or {}).get("volume_type", "io1")
    pairs = [(f"rds:{database}", "DBAllocatedStorage", "DBIops"), (f"ebs:{gitaly}", "GitalyVolumeSize", "GitalyVolumeIops"),
             ("ebs:gp3", "GitalyNodeVolumeSize", "GitalyNodeVolumeIops")]   # a cluster's volumes: gp3
    return [pair for pair in pairs if pair[0] in IOPS_PER_GIB and pair[1] in declared and pair[2] in declared]


def check_iops(declared: dict, params: dict[str, str], config: dict, raised: set[str]) -> None:
    """Refuse IOPS outside the ratio AWS allows for the (possibly raised) size: a database
    raised to a 3,000 GiB snapshot takes at least 1,500 io1 IOPS, and the default 1,000 fails
    the create after minutes. One line naming the IOPS parameter and its allowed values."""
    def value(name):
        return int(params.get(name, declared[name].get("Default", 0)) or 0)

    for kind, size_name, iops_name in _storage_kinds(config, declared):
        size, iops = value(size_name), value(iops_name)
        low_ratio, high_ratio = IOPS_PER_GIB[kind]
        definition = declared[iops_name]
        low = max(math.ceil(low_ratio * size), int(definition.get("MinValue", 0)))
        high = min(math.floor(high_ratio * size), int(definition.get("MaxValue", 10 ** 9)))
        if low <= iops <= high:
            continue
        why = " (raised to the old snapshot's)" if size_name in raised else ""
        storage = kind.replace(":", " ")
        allowed = f"give {iops_name} {low} to {high}" if low <= high else f"no {iops_name} fits; give another {size_name}"
        raise ConfigError(f"--param {iops_name}={iops}: {storage} takes {low_ratio:g} to {high_ratio:g} IOPS per GiB "
                          f"and {size_name} is {size} GiB{why}: {allowed}")


def restore_params(template: dict, source: RestoreSource, given: dict[str, str],
                   config: dict | None = None) -> dict[str, str]:
    """The new stack's parameters: the person's, the restore ones, the snapshot's PostgreSQL
    major, sizes no smaller than the snapshots' (a volume or database smaller than its
    snapshot is refused by AWS) and IOPS that fit those sizes. ``config``: the build's
    (manifest "config"), for the storage types; the defaults' (io1) without it."""
    declared = template.get("Parameters") or {}
    unknown = [name for name in source.params if name not in declared]
    if unknown:
        raise ConfigError(f"--build: this build has no parameter {unknown[0]} for the old stack's data (built "
                          "for another shape: a Gitaly Cluster, say); build the old stack's configuration")
    clash = [name for name in source.params if name in given and given[name] != source.params[name]]
    if clash:
        why = " (the database snapshot's PostgreSQL major: RDS restores a snapshot at its own major; upgrade " \
              "after the restore with gitlab-cfn deploy)" if clash[0] == "DBEngineVersion" else ""
        raise ConfigError(f"--param {clash[0]}={given[clash[0]]}: restore sets it from the old stack "
                          f"({source.params[clash[0]]}){why}")
    version = source.params.get("DBEngineVersion")
    allowed = [str(v) for v in declared.get("DBEngineVersion", {}).get("AllowedValues", [])]
    if version and allowed and version not in allowed:
        raise ConfigError(f"--from: the old database snapshot is PostgreSQL {version}; this build's DBEngineVersion "
                          f"takes {', '.join(allowed)}: upgrade the old snapshot's major first (restore it, then "
                          "aws rds modify-db-instance --engine-version), or build a version that supports it")
    params = {**given, **source.params}
    raised = set()
    for name, smallest in source.sizes.items():
        if name not in declared:
            continue
        current = int(params.get(name, declared[name].get("Default", 0)) or 0)
        if current < smallest:
            if name in given:
                raise ConfigError(f"--param {name}={given[name]}: smaller than the old stack's snapshot "
                                  f"({smallest} GiB); give at least {smallest}")
            params[name] = str(smallest)
            raised.add(name)
    check_iops(declared, params, config or {}, raised)
    return params


def precheck(template: dict, manifest: dict, source: RestoreSource, request: DeployRequest,
             from_region: str) -> None:
    """restore_params' and deploy's value checks, before copies that take hours are started:
    on the parameters the copies will give (the copies' ids, as into_region names them, by
    placeholders of the same shape)."""
    from dataclasses import replace

    from gitlab_cfn.operate.deploy import _raise_problems, check_params, check_request
    from gitlab_cfn.operate.restore_region import SECRET_PARAMS

    placeholder = replace(source, params=dict(source.params))
    if "RestoreDBSnapshot" in placeholder.params:
        placeholder.params["RestoreDBSnapshot"] = f"{placeholder.params['RestoreDBSnapshot'][:200]}-{request.region}"
    for name in SECRET_PARAMS:
        if name in placeholder.params:
            parts = placeholder.params[name].split(":")
            if len(parts) > 3:
                parts[3] = request.region
            placeholder.params[name] = ":".join(parts)
    params = restore_params(template, placeholder, request.params, manifest.get("config"))
    check_request(request)
    location = {"TemplateBucketName": request.bucket or "gitlab-cfn-bucket", "TemplateKeyPrefix": "gitlab-cfn/",
                "TemplateBucketRegion": request.region}
    not_given = {name for name in template.get("Parameters") or {} if name not in params and name not in location}
    _raise_problems(check_params(template, {**params, **location}, manifest.get("config", {}).get("az_count"),
                                 elsewhere=not_given, region=request.region))


def restore(old_name: str, request: DeployRequest, aws: Aws, progress: Progress, dry_run: bool = False,
            fill: Callable[[dict[str, str]], dict[str, str]] | None = None, from_region: str | None = None,
            ) -> tuple[RestoreSource, dict[str, str], DeployResult | None]:
    """Check, plan and (unless ``dry_run``) create. ``fill``: demo values of the stand-in
    (``--local``), asked for only once every check has passed, since it creates some."""
    template, manifest = _parent_template(request.build_dir)   # a missing build fails before anything starts
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
    set_buckets_region(source, request.region)
    if from_region is not None:
        if dry_run:
            plan_copies(source, from_region, request.region, progress)
        else:
            precheck(template, manifest, source, request, from_region)
            into_region(aws, source, from_region, request.region, progress, poll=request.poll)
    params = restore_params(template, source, request.params, manifest.get("config"))
    progress.done(f"restoring {request.stack_name} from deleted stack {old_name} ({source.stack_id})")
    for line in source.lines:
        progress.done(line)
    if "DBEngineVersion" in source.params and "DBEngineVersion" not in request.params:
        progress.done(f"DBEngineVersion = {params['DBEngineVersion']} (the old database snapshot's PostgreSQL major)")
    for name in source.sizes:
        if name in params and name not in request.params:
            progress.done(f"{name} = {params[name]} (at least the old snapshot's size)")
    if dry_run:
        progress.done("dry run: nothing was created")
        return source, params, None
    if fill is not None:
        params = {**fill(params), **params}
    request.params = params
    result = deploy(request, aws, progress)
    if source.buckets_region == request.region:   # S3 logs only to a bucket of the source bucket's region
        log_to_new_bucket(aws, request.region, source, result.outputs.get("LogsBucketName"), progress)
    return source, params, result


def log_to_new_bucket(aws: Aws, region: str, source: RestoreSource, logs: str | None, progress: Progress) -> None:
    """The old buckets' server access logging still names the old stack's log bucket (the
    new stack does not manage them: it cannot set their LoggingConfiguration); point it at the
    new stack's, with the prefixes the template gives its own buckets (storage.py: s3/<kind>/).
    The new log bucket's policy admits S3 log delivery from any bucket of the account
    (policies.log_bucket: aws:SourceAccount)."""
    if not logs:
        return
    s3 = aws.client("s3", region)
    kinds = {f"{logical}Bucket": kind for logical, kind in BUCKETS.items()}
    failed = []
    for logical, name in source.buckets.items():
        try:
            s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={"LoggingEnabled": {
                "TargetBucket": logs, "TargetPrefix": f"s3/{kinds[logical]}/"}})
        except ClientError as exc:   # the stack is created and works: say what is left, do not fail it
            failed.append((name, kinds[logical], exc.response.get("Error", {}).get("Code", "error")))
    if not failed:
        progress.done(f"access logs of the {len(source.buckets)} old buckets now go to {logs}")
    for name, kind, code in failed:
        progress.done(f"left to do: {name} still logs to the old log bucket ({code}); run aws s3api "
                      f"put-bucket-logging --bucket {name} --bucket-logging-status "
                      f"'{{\"LoggingEnabled\":{{\"TargetBucket\":\"{logs}\",\"TargetPrefix\":\"s3/{kind}/\"}}}}'")
