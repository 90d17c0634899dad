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
