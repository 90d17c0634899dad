"""A restore into another region (``gitlab-cfn restore --from-region A --region B``).

``restore.locate`` finds and checks the deleted stack's pieces in region A; this module turns
them into what a stack in region B can start from, before the new stack's parameters are
computed:

- the database's final snapshot: ``rds copy_db_snapshot`` with the source's ARN and
  ``SourceRegion`` (an encrypted snapshot copied to another region needs a KMS key of the
  destination region: "If you copy an encrypted DB snapshot to a different Amazon Web Services
  Region, then you must specify an Amazon Web Services KMS key identifier for the destination
  Amazon Web Services Region", RDS API reference, CopyDBSnapshot, KmsKeyId);
- each Gitaly volume's snapshot: ``ec2 copy_snapshot`` (Encrypted, the same key);
- the three secrets (database, gitlab-secrets.json, SSH host keys): new secrets in B with the
  same values, encrypted with the same key. Independent copies, not replicas
  (``replicate_secret_to_regions``): a replica is read-only and is deleted or promoted with its
  primary, and a restore must not depend on the old region once it is done. The values are
  read and written, never printed;
- the buckets are not copied (objects of a real GitLab are too many to copy in a restore):
  the new stack uses them where they are, with ``RestoreBucketsRegion`` naming region A
  (their names, GitLab's object-storage connection, and the old key's ``kms:ViaService``),
  and ``RestoreKmsKeyArn`` stays the old key in A, which encrypts them.

The key in B is a customer managed key this command creates (one per old stack, found again by
its tags), with the stack key's policy shape (``policies.kms_key_policy``: delegation to IAM
in the account), rotated, and never deleted by any command: the restored database and volumes
are encrypted with it for as long as they live, so it cannot be the new stack's own key (which
does not exist yet when the copies are made, and would be deleted with that stack), and the
account's ``aws/rds`` key would leave the database under a key whose policy nobody can change.

Every copy is tagged (``gitlab-cfn:restore-of`` = the old stack's id) and found again on a
re-run, so a restore interrupted while waiting resumes without copying twice. Copies are kept
(docs/operations.md, "Restoring", says how to remove them).
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable

from awacs.aws import Principal
from botocore.exceptions import ClientError

from gitlab_cfn.compile.policies import kms_key_policy
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.progress import Progress

TAG = "gitlab-cfn:restore-of"
PIECE = "gitlab-cfn:restore-piece"
SECRET_PARAMS = ("RestoreDBSecretArn", "RestoreRailsSecretArn", "RestoreSshHostKeysArn")
SNAPSHOT_PARAM = re.compile(r"^RestoreGitaly[0-9]*Snapshot$")
UNSEEN_POLLS = 5   # polls a just-made EC2 snapshot copy may be unknown for (wait)


def _tags(source, piece: str) -> list[dict[str, str]]:
    return [{"Key": TAG, "Value": source.stack_id}, {"Key": PIECE, "Value": piece},
            {"Key": "gitlab-cfn:stack", "Value": source.stack_name}]


def _resolve(value, account: str, partition: str, region: str):
    """A template's policy with its pseudo parameters (and ``Fn::Sub`` variables) filled in."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], list):
        text, variables = value["Fn::Sub"]
        for name, given in variables.items():
            text = text.replace("${" + name + "}", given)
        return _resolve({"Fn::Sub": text}, account, partition, region)
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return (value["Fn::Sub"].replace("${AWS::AccountId}", account).replace("${AWS::Partition}", partition)
                .replace("${AWS::Region}", region))
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"].startswith("AWS::"):
        return {"AWS::AccountId": account, "AWS::Partition": partition, "AWS::Region": region}[value["Ref"]]
    if isinstance(value, dict):
        return {k: _resolve(v, account, partition, region) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, account, partition, region) for v in value]
    return value


def key_policy(account: str, partition: str, region: str) -> str:
    """The stack key's IAM-delegation statement (the service statements are for the stack's
    log groups and topic, which this key never encrypts)."""
    from troposphere import encode_to_dict
    policy = encode_to_dict(kms_key_policy())
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") == "EnableIamPolicies"]
    return json.dumps(_resolve(policy, account, partition, region))


def restore_key(aws: Aws, region: str, source, progress: Progress) -> str:
    """The key in ``region`` for the copies of ``source``'s data: found by tag, or created."""
    kms = aws.client("kms", region)
    for page in kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            try:   # AWS managed keys may refuse ListResourceTags: not ours either way
                listed = kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags", [])
            except ClientError:
                continue
            tags = {t["TagKey"]: t["TagValue"] for t in listed}
            if tags.get(TAG) == source.stack_id:
                meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
                if meta.get("KeyState") == "Enabled":
                    progress.done(f"key         {meta['Arn']} in {region} (made by an earlier run)")
                    return meta["Arn"]
    identity = aws.client("sts", region).get_caller_identity()
    partition = identity["Arn"].split(":")[1]
    meta = kms.create_key(
        Description=f"gitlab-cfn restore of stack {source.stack_name}: its copies in {region}",
        Policy=key_policy(identity["Account"], partition, region),
        Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(source, "key")])["KeyMetadata"]
    kms.enable_key_rotation(KeyId=meta["KeyId"])
    progress.done(f"key         {meta['Arn']} created in {region} for the copies (kept: never deleted)")
    return meta["Arn"]


def _rds_tags(rds, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn).get("TagList", [])}


def copy_db_snapshot(aws: Aws, source, from_region: str, region: str, key: str, progress: Progress) -> str:
    name = source.params["RestoreDBSnapshot"]
    src = aws.client("rds", from_region).describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]
    rds = aws.client("rds", region)
    target = f"{src['DBSnapshotIdentifier'][:200]}-{region}"
    try:   # looked up by its name: a listing of the region's snapshots is paginated
        (snap,) = rds.describe_db_snapshots(DBSnapshotIdentifier=target)["DBSnapshots"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "DBSnapshotNotFound":
            raise
        snap = None
    if snap is not None:
        if _rds_tags(rds, snap["DBSnapshotArn"]).get(TAG) != source.stack_id:
            raise ConfigError(f"--region: a DB snapshot {target} that this restore did not make is in {region}; "
                              "nothing more was created")
        if snap.get("Status") not in ("failed", "error"):
            return target
        # A failed copy never becomes available: deleted, and copied again.
        rds.delete_db_snapshot(DBSnapshotIdentifier=target)
        progress.done(f"database    the failed copy {target} in {region} deleted; copying again")
    rds.copy_db_snapshot(SourceDBSnapshotIdentifier=src["DBSnapshotArn"], TargetDBSnapshotIdentifier=target,
                         KmsKeyId=key, SourceRegion=from_region, CopyTags=False, Tags=_tags(source, "database"))
    return target


def copy_volume_snapshot(aws: Aws, source, param: str, from_region: str, region: str, key: str) -> str:
    ec2 = aws.client("ec2", region)
    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": f"tag:{TAG}", "Values": [source.stack_id]}, {"Name": f"tag:{PIECE}", "Values": [param]}])["Snapshots"]
    for snap in found:
        if snap.get("State") == "error":   # a failed copy never completes: deleted, copied again
            ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
    found = [snap for snap in found if snap.get("State") != "error"]
    if found:
        return found[0]["SnapshotId"]
    return ec2.copy_snapshot(
        SourceSnapshotId=source.params[param], SourceRegion=from_region, Encrypted=True, KmsKeyId=key,
        Description=f"gitlab-cfn restore of {source.stack_name}: {source.params[param]} from {from_region}",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": _tags(source, param)}])["SnapshotId"]


def copy_secret(aws: Aws, source, param: str, from_region: str, region: str, key: str) -> str:
    """A secret in ``region`` holding the old one's current value; the value is never shown."""
    sm = aws.client("secretsmanager", region)
    old = source.params[param]
    # The old ARN's last field ends in the six characters Secrets Manager adds to a name
    # ("Secrets Manager adds a hyphen and six random characters after the secret name at the
    # end of the ARN", Secrets Manager User Guide, "Secret ARN"): left out of the copy's name.
    name = f"gitlab-cfn-restore/{source.stack_name}/{re.sub(r'-[A-Za-z0-9]{6}$', '', old.rsplit(':', 1)[-1])}"
    try:
        described = sm.describe_secret(SecretId=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        described = None
    if described is not None:
        if {t["Key"]: t["Value"] for t in described.get("Tags", [])}.get(TAG) != source.stack_id:
            raise ConfigError(f"--region: a secret {name} that this restore did not make is in {region}; "
                              "nothing more was created")
        if described.get("DeletedDate"):
            raise ConfigError(f"--region: the copy {name} in {region} is scheduled for deletion; restore it "
                              f"(aws secretsmanager restore-secret --secret-id {name} --region {region}) and run "
                              "the same command again")
        return described["ARN"]
    value = aws.client("secretsmanager", from_region).get_secret_value(SecretId=old)
    return sm.create_secret(Name=name, KmsKeyId=key, SecretString=value["SecretString"],
                            Description=f"gitlab-cfn restore of {source.stack_name}: a copy of {old}",
                            Tags=_tags(source, param))["ARN"]


def wait(aws: Aws, region: str, db_snapshot: str, volume_snapshots: list[str], progress: Progress,
         poll: float, timeout: float = 6 * 3600, sleep: Callable[[float], None] = time.sleep) -> None:
    """Until every copy is available, with one progress line of their states."""
    rds, ec2 = aws.client("rds", region), aws.client("ec2", region)
    deadline = time.monotonic() + timeout
    unseen = 0
    while True:
        db = rds.describe_db_snapshots(DBSnapshotIdentifier=db_snapshot)["DBSnapshots"][0]
        try:
            volumes = ec2.describe_snapshots(SnapshotIds=volume_snapshots)["Snapshots"] if volume_snapshots else []
        except ClientError as exc:
            # EC2 is eventually consistent: a snapshot CopySnapshot just named may not be
            # described yet ("Eventual consistency in the Amazon EC2 API", EC2 API reference):
            # pending for a few polls.
            unseen += 1
            if exc.response["Error"]["Code"] != "InvalidSnapshot.NotFound" or unseen > UNSEEN_POLLS:
                raise
            volumes = [{"SnapshotId": v, "State": "pending"} for v in volume_snapshots]
        states = [f"database {db.get('Status')} {db.get('PercentProgress', 0)}%"] + [
            f"{v['SnapshotId']} {v.get('State')} {v.get('Progress', '')}" for v in volumes]
        failed = [s for s in [db.get("Status")] + [v.get("State") for v in volumes] if s in ("failed", "error")]
        if failed:
            raise ConfigError(f"--region: a copy into {region} failed ({', '.join(states)})")
        if db.get("Status") == "available" and all(v.get("State") == "completed" for v in volumes):
            progress.done(f"copies in {region} ready: {', '.join(states)}")
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"--region: the copies into {region} are not ready after {timeout:.0f} s "
                              f"({', '.join(states)}); run the same command again to resume")
        progress.update(f"copying into {region}: {', '.join(states)}")
        sleep(poll)


def tls_only_policies(aws: Aws, source, buckets_region: str, progress: Progress) -> None:
    """The old buckets' TLS-only policy (``policies.tls_only_bucket``), put back by this command
    in their region: the old stack's went with it, and the new stack's template puts it only on
    buckets of its own region (storage.BUCKETS_ELSEWHERE), since a stack's S3 requests go to
    its own region's endpoint. It stays when the new stack is deleted. On every bucket
    ``locate`` found (a stack that was itself restored kept no buckets of its own)."""
    from troposphere import encode_to_dict

    from gitlab_cfn.compile.policies import tls_only_bucket

    s3 = aws.client("s3", buckets_region)
    identity = aws.client("sts", buckets_region).get_caller_identity()
    partition = identity["Arn"].split(":")[1]
    put = 0
    for name in sorted(source.buckets.values()):
        policy = _resolve(encode_to_dict(tls_only_bucket(f"arn:{partition}:s3:::{name}")), identity["Account"],
                          partition, buckets_region)
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        put += 1
    progress.done(f"buckets     TLS-only policy put back on the {put} old buckets in {buckets_region}")


def log_delivery_policies(aws: Aws, source, buckets_region: str, progress: Progress) -> None:
    """The S3 server access log delivery statement (``policies.log_bucket``'s, with its TLS-only
    ones) put back on the log bucket the old buckets log to: the old stack's log bucket is
    retained but its policy (LogsBucketPolicy) is not, and the bucket is BucketOwnerEnforced,
    where S3 delivers server access logs only as the bucket policy allows ("If the destination
    bucket uses the bucket owner enforced setting for Object Ownership, ... you must use a
    bucket policy to grant access to the logging service principal",
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html).
    A log bucket that has a policy already (a live stack's) is left as it is."""
    from troposphere import encode_to_dict

    from gitlab_cfn.compile.policies import log_bucket

    s3 = aws.client("s3", buckets_region)
    identity = aws.client("sts", buckets_region).get_caller_identity()
    partition = identity["Arn"].split(":")[1]
    targets = {source.log_bucket} if source.log_bucket else set()
    for name in source.buckets.values():
        enabled = s3.get_bucket_logging(Bucket=name).get("LoggingEnabled")
        if enabled:
            targets.add(enabled["TargetBucket"])
    for target in sorted(targets):
        try:
            s3.get_bucket_policy(Bucket=target)
            progress.done(f"buckets     their access logs go to {target} in {buckets_region}, whose policy is kept")
            continue
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucketPolicy":
                raise
        # The load balancer's statement is left out: the old stack's load balancer is gone.
        document = encode_to_dict(log_bucket(f"arn:{partition}:s3:::{target}", Principal("Service", ["unused"])))
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != "LoadBalancerAccessLogs"]
        s3.put_bucket_policy(Bucket=target, Policy=json.dumps(_resolve(document, identity["Account"], partition,
                                                                        buckets_region)))
        progress.done(f"buckets     their access logs stay in {target} in {buckets_region}: its log delivery "
                      "policy put back")


def check_regions(from_region: str, region: str) -> None:
    if from_region == region:
        raise ConfigError(f"--from-region: {from_region} is the new stack's region too; leave it out for a "
                          "restore in the same region")


def plan_copies(source, from_region: str, region: str, progress: Progress) -> None:
    """What ``into_region`` would copy (``--dry-run``): nothing is created."""
    copied = ["RestoreDBSnapshot"] + sorted(p for p in source.params if SNAPSHOT_PARAM.match(p)) + [
        p for p in SECRET_PARAMS if p in source.params]
    for param in copied:
        progress.done(f"would copy  {source.params[param]} into {region} (a restore key there, made or found again)")
    from gitlab_cfn.operate.restore import set_buckets_region
    set_buckets_region(source, region)
    progress.done(f"buckets     stay in {source.buckets_region} (RestoreBucketsRegion)")


def into_region(aws: Aws, source, from_region: str, region: str, progress: Progress, poll: float = 5.0) -> None:
    """Copy ``source``'s snapshots and secrets (found in ``from_region``) into ``region``, wait,
    and point its parameters at the copies; the buckets stay in ``from_region``."""
    check_regions(from_region, region)
    key = restore_key(aws, region, source, progress)
    db = copy_db_snapshot(aws, source, from_region, region, key, progress)
    progress.done(f"database    snapshot {source.params['RestoreDBSnapshot']} copying to {db} in {region}")
    source.params["RestoreDBSnapshot"] = db
    volumes = []
    for param in sorted(p for p in source.params if SNAPSHOT_PARAM.match(p)):
        copied = copy_volume_snapshot(aws, source, param, from_region, region, key)
        progress.done(f"volume      snapshot {source.params[param]} copying to {copied} in {region}")
        source.params[param] = copied
        volumes.append(copied)
    for param in SECRET_PARAMS:
        if param in source.params:
            copied = copy_secret(aws, source, param, from_region, region, key)
            progress.done(f"secret      {source.params[param]} copied to {copied}")
            source.params[param] = copied
    from gitlab_cfn.operate.restore import set_buckets_region
    set_buckets_region(source, region)
    if source.buckets_region != region:   # else the new stack's template puts both (restore.log_to_new_bucket)
        tls_only_policies(aws, source, source.buckets_region, progress)
        progress.done(f"buckets     stay in {source.buckets_region} (RestoreBucketsRegion); the old key "
                      f"{source.params.get('RestoreKmsKeyArn', '')} stays with them")
        # "The source bucket and destination bucket must be in the same AWS Region"
        # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html):
        # the old buckets keep logging to the retained log bucket of their region.
        log_delivery_policies(aws, source, source.buckets_region, progress)
    wait(aws, region, db, volumes, progress, poll)
