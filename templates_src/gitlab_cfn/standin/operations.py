"""Stand-in patches for the day-2 operations resources (log groups, alarms' topic).

Stock moto accepts log groups AWS refuses; each patch restores one refusal, and each
has its ``test_patch_*`` in tests/test_standin_operations.py:

- ``log_group_retention_values``: a log group's retention must be one of CloudWatch
  Logs' values (PutRetentionPolicy, ``retentionInDays``:
  https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html);
  moto stores any number.
- ``log_group_key_usable_by_logs``: a log group encrypted with a KMS key needs a key
  that exists and whose key policy lets ``logs.<region>.amazonaws.com`` use it for
  that group (an ``aws:logs:arn`` encryption-context condition, when there is one, must
  match the group's ARN); otherwise CloudWatch Logs answers AccessDeniedException "The
  specified KMS key does not exist or is not allowed to be used with Arn '<group arn>'"
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html).
  moto ignores the key.

And CloudFormation models for the AWS Backup types moto's CloudFormation does not know
(``AWS::Backup::BackupVault``, ``BackupPlan``, ``BackupSelection``), created in moto's
backup backend, refusing what AWS Backup refuses: a vault key that does not exist, a
rule keeping recovery points less than a day, a copy to something that is not a backup
vault ARN, a selection whose role does not exist or whose plan does not
(https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupPlan.html,
API_CreateBackupSelection.html). Registered by importing this module
(``test_backup_models`` in tests/test_standin_operations.py).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

from gitlab_cfn.standin.patches import patch

# The same values as gitlab_cfn.compile.observability.RETENTION_DAYS (the stand-in does
# not import the compiler; a test compares the two).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                  1827, 2192, 2557, 2922, 3288, 3653)
LOGS_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
CONTEXT_KEY = "kms:EncryptionContext:aws:logs:arn"


def _retention_problem(value: Any) -> str | None:
    if value is None:
        return None
    try:
        days = int(value)
    except (TypeError, ValueError):
        days = None
    if days not in RETENTION_DAYS:
        return (f"1 validation error detected: Value '{value}' at 'retentionInDays' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]")
    return None


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _action_allowed(actions: Any, wanted: str) -> bool:
    return any(fnmatchcase(wanted.lower(), a.lower()) for a in _as_list(actions))


def _principal_is(principal: Any, service: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    return service in _as_list(principal.get("Service", []))


def _context_matches(condition: dict | None, group_arn: str) -> bool:
    """Whether the statement's conditions allow this group's encryption context.
    Only the aws:logs:arn context is evaluated; any other condition key fails closed."""
    for operator, pairs in (condition or {}).items():
        for key, expected in pairs.items():
            if key != CONTEXT_KEY:
                return False
            patterns = _as_list(expected)
            if operator in ("ArnEquals", "StringEquals"):
                ok = group_arn in patterns
            elif operator in ("ArnLike", "StringLike"):
                ok = any(fnmatchcase(group_arn, p) for p in patterns)
            else:
                return False
            if not ok:
                return False
    return True


def key_allows_logs(policy: dict, region: str, group_arn: str) -> bool:
    """Whether a key policy lets CloudWatch Logs of ``region`` encrypt ``group_arn``."""
    service = f"logs.{region}.amazonaws.com"
    for action in LOGS_KEY_ACTIONS:
        allowed = False
        for statement in _as_list(policy.get("Statement", [])):
            if statement.get("Effect") != "Allow" or not _principal_is(statement.get("Principal"), service):
                continue
            if _action_allowed(statement.get("Action", []), action) and \
                    _context_matches(statement.get("Condition"), group_arn):
                allowed = True
        if not allowed:
            return False
    return True


def _key_problem(account_id: str, region: str, name: str, key_id: str | None) -> str | None:
    if not key_id:
        return None
    from moto.kms.models import kms_backends

    group_arn = f"arn:aws:logs:{region}:{account_id}:log-group:{name}"
    refused = f"The specified KMS key does not exist or is not allowed to be used with Arn '{group_arn}'"
    backend = kms_backends[account_id][region]
    wanted = key_id.rsplit("/", 1)[-1] if key_id.startswith("arn:") else key_id
    key = backend.keys.get(wanted)
    if key is None:
        return refused
    try:
        policy = json.loads(key.policy) if isinstance(key.policy, str) else key.policy
    except ValueError:
        return refused
    return None if key_allows_logs(policy or {}, region, group_arn) else refused


@patch
def log_group_retention_values() -> None:
    from moto.logs.exceptions import InvalidParameterException
    from moto.logs.models import LogsBackend

    original_create = LogsBackend.create_log_group
    original_put = LogsBackend.put_retention_policy

    def create_log_group(self, log_group_name, tags, **kwargs):
        problem = _retention_problem(kwargs.get("RetentionInDays", kwargs.get("retentionInDays")))
        if problem:
            raise InvalidParameterException(msg=problem)
        return original_create(self, log_group_name, tags, **kwargs)

    def put_retention_policy(self, log_group_name, retention_in_days):
        problem = _retention_problem(retention_in_days)
        if problem:
            raise InvalidParameterException(msg=problem)
        return original_put(self, log_group_name, retention_in_days)

    LogsBackend.create_log_group = create_log_group
    LogsBackend.put_retention_policy = put_retention_policy


@patch
def log_group_key_usable_by_logs() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.logs.models import LogsBackend

    class AccessDeniedException(JsonRESTError):
        code = 400

        def __init__(self, message: str):
            super().__init__("AccessDeniedException", message)

    original_create = LogsBackend.create_log_group
    original_associate = getattr(LogsBackend, "associate_kms_key", None)

    def create_log_group(self, log_group_name, tags, **kwargs):
        key_id = kwargs.get("KmsKeyId", kwargs.get("kmsKeyId"))
        problem = _key_problem(self.account_id, self.region_name, log_group_name, key_id)
        if problem:
            raise AccessDeniedException(problem)
        return original_create(self, log_group_name, tags, **kwargs)

    LogsBackend.create_log_group = create_log_group
    if original_associate is not None:
        def associate_kms_key(self, log_group_name, kms_key_id, *args, **kwargs):
            problem = _key_problem(self.account_id, self.region_name, log_group_name, kms_key_id)
            if problem:
                raise AccessDeniedException(problem)
            return original_associate(self, log_group_name, kms_key_id, *args, **kwargs)

        LogsBackend.associate_kms_key = associate_kms_key


# -- AWS Backup models ---------------------------------------------------------------------------

import re  # noqa: E402

from moto.core.common_models import CloudFormationModel  # noqa: E402

from gitlab_cfn.standin.models import _Model  # noqa: E402

VAULT_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:backup:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:backup-vault:[A-Za-z0-9_.-]{2,50}$")


class _BackupError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _backup(account_id: str, region: str):
    from moto.backup.models import backup_backends

    return backup_backends[account_id][region]


class BackupVault(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Backup::BackupVault"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "BackupVaultName"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        name = props.get("BackupVaultName") or resource_name
        if not re.fullmatch(r"[A-Za-z0-9_.-]{2,50}", name):
            raise _BackupError(f"Invalid backup vault name {name!r}: 2 to 50 letters, digits, hyphens, underscores, dots")
        key = props.get("EncryptionKeyArn")
        if key:
            from moto.kms.models import kms_backends

            if key.rsplit("/", 1)[-1] not in kms_backends[account_id][region_name].keys:
                raise _BackupError(f"Invalid EncryptionKeyArn: key {key} does not exist")
        vault = _backup(account_id, region_name).create_backup_vault(name, {}, key, "")
        return cls(name, BackupVaultName=name, BackupVaultArn=vault.backup_vault_arn)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):  # type: ignore[override]
        _backup(account_id, region_name).delete_backup_vault(resource_name)


class BackupPlan(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Backup::BackupPlan"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        spec = cloudformation_json.get("Properties", {}).get("BackupPlan", {})
        backend = _backup(account_id, region_name)
        rules = []
        for rule in spec.get("BackupPlanRule", []):
            vault = rule.get("TargetBackupVault")
            if vault not in backend.vaults:
                raise _BackupError(f"Backup vault {vault} does not exist")
            for lifecycle in [rule.get("Lifecycle")] + [c.get("Lifecycle") for c in rule.get("CopyActions", [])]:
                if lifecycle and "DeleteAfterDays" in lifecycle and int(lifecycle["DeleteAfterDays"]) < 1:
                    raise _BackupError("Lifecycle DeleteAfterDays must be at least 1")
            for copy in rule.get("CopyActions", []):
                if not VAULT_ARN.match(copy.get("DestinationBackupVaultArn", "")):
                    raise _BackupError(f"Invalid DestinationBackupVaultArn {copy.get('DestinationBackupVaultArn')!r}")
            rules.append({k: v for k, v in rule.items() if k != "TargetBackupVault"} | {"TargetBackupVaultName": vault})
        plan = backend.create_backup_plan({"BackupPlanName": spec.get("BackupPlanName", resource_name), "Rules": rules},
                                          {}, "")
        return cls(plan.backup_plan_id, BackupPlanId=plan.backup_plan_id, BackupPlanArn=plan.backup_plan_arn,
                   VersionId=plan.version_id)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):  # type: ignore[override]
        _backup(account_id, region_name).delete_backup_plan(resource_name)


SELECTIONS: dict[str, dict] = {}


class BackupSelection(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Backup::BackupSelection"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        from moto.iam.models import iam_backends
        from moto.utilities.utils import get_partition

        props = cloudformation_json.get("Properties", {})
        plan_id = props.get("BackupPlanId")
        if plan_id not in _backup(account_id, region_name).plans:
            raise _BackupError(f"Backup plan {plan_id} does not exist")
        selection = props.get("BackupSelection", {})
        role_arn = selection.get("IamRoleArn", "")
        roles = iam_backends[account_id][get_partition(region_name)].roles.values()
        if role_arn not in [r.arn for r in roles]:
            raise _BackupError(f"Invalid IamRoleArn {role_arn!r}: no such role")
        if not selection.get("Resources") and not selection.get("ListOfTags"):
            raise _BackupError("A backup selection needs Resources or ListOfTags")
        selection_id = f"{plan_id}-{len(SELECTIONS) + 1}"
        SELECTIONS[selection_id] = {"plan": plan_id, **selection}
        return cls(selection_id, SelectionId=selection_id, BackupPlanId=plan_id)
