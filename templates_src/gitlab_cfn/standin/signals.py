"""Resource signals: ``SignalResource`` and, when asked for, ``CreationPolicy`` honoured.

moto has no ``SignalResource`` and creates a resource with a ``CreationPolicy``
as if no server had to boot. Two named patches (registered with ``patches.patch``):

- ``signal_resource``: the CloudFormation ``SignalResource`` call (StackName,
  LogicalResourceId, UniqueId, Status SUCCESS|FAILURE). A signal for a stack that
  does not exist, or for a resource that awaits none, is a ``ValidationError``, as
  CloudFormation answers it
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_SignalResource.html).
- ``creation_policy_waits_for_signals``: only when the stand-in is started with
  ``GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT=<seconds>`` (the tests that boot the stack's
  servers set it; without it nothing changes). ``CreateStack`` then answers at once
  and the stack is created in the background, as CloudFormation does; a resource
  with ``CreationPolicy.ResourceSignal`` stays ``CREATE_IN_PROGRESS`` (and so does
  everything that depends on it, and its stack) until it has ``Count`` SUCCESS
  signals, each from its own UniqueId (the instance id). It fails, and its stack
  rolls back as any failed create does here (``failed_create_rolls_back``), on a
  FAILURE signal or when the policy's ``Timeout`` passes, shortened to the
  variable's seconds. The status reasons are CloudFormation's
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-creationpolicy.html;
  the wording as CloudFormation reports it, e.g. github.com/widdix/aws-ec2-ssh#137,
  github.com/amazon-archives/automating-governance-sample#2):
  ``Received FAILURE signal with UniqueId i-...`` (an instance),
  ``Received N FAILURE signal(s) out of M. Unable to satisfy P% MinSuccessfulInstancesPercent
  requirement`` (an Auto Scaling group), ``Failed to receive N resource signal(s) within
  the specified duration``. While a stack is created in the background, other requests
  see only what is created (moto's resource map creates a resource when it is first read,
  and a DescribeStackResources mid-create made a second copy), and no outputs.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import EmptyResult

from gitlab_cfn.standin.patches import _NESTING, ResourceCreateFailed
from gitlab_cfn.standin.patches import patch

TIMEOUT_VARIABLE = "GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT"
STATUSES = ("SUCCESS", "FAILURE")
_CHANGED = threading.Condition()
_CREATOR = threading.local()  # set in a thread that creates a stack in the background
_BACKGROUND = [0]  # how many stacks are being created in the background


@dataclass
class Awaiting:
    """A resource being created that waits for its signals."""

    resource_type: str
    count: int
    # Failures an Auto Scaling group may take (MinSuccessfulInstancesPercent); an instance: none.
    allowed_failures: int
    percent: int
    signals: dict[str, str] = field(default_factory=dict)  # UniqueId -> status

    def outcome(self) -> tuple[str, str] | None:
        """("ok", "") once satisfied, ("failed", reason) once it cannot be, else None."""
        failures = [u for u, s in self.signals.items() if s == "FAILURE"]
        successes = len(self.signals) - len(failures)
        if failures and self.resource_type == "AWS::AutoScaling::AutoScalingGroup":
            if len(failures) > self.allowed_failures:
                return "failed", (f"Received {len(failures)} FAILURE signal(s) out of {self.count}. Unable to "
                                  f"satisfy {self.percent}% MinSuccessfulInstancesPercent requirement")
        elif failures:
            return "failed", f"Received FAILURE signal with UniqueId {failures[0]}"
        if successes >= self.count:
            return "ok", ""
        return None


# (account, region, stack name, logical id) -> what it awaits
AWAITING: dict[tuple[str, str, str, str], Awaiting] = {}


def mode_timeout() -> float | None:
    value = os.environ.get(TIMEOUT_VARIABLE)
    return float(value) if value else None


def iso_seconds(duration: str) -> float:
    """``PT15M`` -> 900 (the ISO 8601 durations CreationPolicy takes)."""
    m = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", str(duration))
    if not m or not any(m.groups()):
        raise ValueError(f"CreationPolicy Timeout {duration!r} is not an ISO 8601 duration such as PT15M")
    hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def _stack_name(stack_id: str) -> str:
    return stack_id.split("/")[1] if stack_id.count("/") >= 2 else stack_id


@patch
def signal_resource() -> None:
    def signal_resource(self) -> EmptyResult:
        name = self._get_param("StackName")
        logical_id = self._get_param("LogicalResourceId")
        unique_id = self._get_param("UniqueId")
        status = self._get_param("Status")
        for field_name, value in (("StackName", name), ("LogicalResourceId", logical_id), ("UniqueId", unique_id),
                                  ("Status", status)):
            if not value:
                raise ValidationError(message=f"{field_name} is required")
        if status not in STATUSES:
            raise ValidationError(message=f"1 validation error detected: Value '{status}' at 'status' failed to "
                                          f"satisfy constraint: Member must satisfy enum value set: [{', '.join(STATUSES)}]")
        backend = self.cloudformation_backend
        stacks = [s for s in list(backend.stacks.values())
                  if name in (s.name, s.stack_id) and not s.status.startswith("DELETE_")]
        if not stacks:
            raise ValidationError(name)
        stack = stacks[0]
        key = (backend.account_id, backend.region_name, stack.name, logical_id)
        if logical_id not in (getattr(stack, "template_dict", None) or {}).get("Resources", {}):
            raise ValidationError(message=f"Resource {logical_id} does not exist for stack {stack.name}")
        with _CHANGED:
            awaiting = AWAITING.get(key)
            if awaiting is None:
                raise ValidationError(message=f"Resource {logical_id} of stack {stack.name} is not awaiting "
                                              "signals: it has no CreationPolicy or is no longer being created")
            awaiting.signals.setdefault(unique_id, status)
            _CHANGED.notify_all()
        return EmptyResult()

    CloudFormationResponse.signal_resource = signal_resource


@patch
def creation_policy_waits_for_signals() -> None:
    if mode_timeout() is None:
        return

    original_create = parsing.parse_and_create_resource

    def parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name):
        policy = (resource_json.get("CreationPolicy") or {})
        signal = policy.get("ResourceSignal")
        if not signal:
            return original_create(logical_id, resource_json, resources_map, account_id, region_name)
        count = int(signal.get("Count", 1))
        percent = int((policy.get("AutoScalingCreationPolicy") or {}).get("MinSuccessfulInstancesPercent", 100))
        awaiting = Awaiting(resource_json["Type"], count, count - math.ceil(count * percent / 100), percent)
        key = (account_id, region_name, _stack_name(resources_map.stack_id), logical_id)
        wait = min(iso_seconds(signal.get("Timeout", "PT5M")), mode_timeout())
        with _CHANGED:
            AWAITING[key] = awaiting
        try:
            resource = original_create(logical_id, resource_json, resources_map, account_id, region_name)
            if resource is None:  # its Condition is false
                return None
            deadline = time.monotonic() + wait
            with _CHANGED:
                while (outcome := awaiting.outcome()) is None and time.monotonic() < deadline:
                    _CHANGED.wait(timeout=max(0.0, deadline - time.monotonic()))
            if outcome is None:
                missing = count - sum(s == "SUCCESS" for s in awaiting.signals.values())
                outcome = ("failed", f"Failed to receive {missing} resource signal(s) within the specified duration")
            if outcome[0] == "failed":
                _delete(resource, account_id, region_name)
                raise ResourceCreateFailed(logical_id, resource_json["Type"], outcome[1])
            return resource
        finally:
            with _CHANGED:
                AWAITING.pop(key, None)

    parsing.parse_and_create_resource = parse_and_create_resource

    original_backend_create = cfn_models.CloudFormationBackend.create_stack

    def create_stack(self, name, *args, **kwargs):
        """A top-level stack is created in the background; the call answers once it exists."""
        if getattr(_NESTING, "depth", 0) > 0:
            return original_backend_create(self, name, *args, **kwargs)
        known = set(self.stacks)
        ended: dict[str, Any] = {}

        def run() -> None:
            _CREATOR.active = True
            with _CHANGED:
                _BACKGROUND[0] += 1
            try:
                original_backend_create(self, name, *args, **kwargs)
            except BaseException as exc:  # handed to the request below, or kept in the log
                ended["error"] = exc
            finally:
                with _CHANGED:
                    _BACKGROUND[0] -= 1
                ended["done"] = True

        threading.Thread(target=run, name=f"create-{name}", daemon=True).start()
        while True:
            created = [s for sid, s in list(self.stacks.items()) if sid not in known and s.name == name]
            if created:
                return created[0]
            if ended.get("done"):
                if "error" in ended:
                    raise ended["error"]
                raise ValidationError(message=f"stack {name} was not created")
            time.sleep(0.02)

    cfn_models.CloudFormationBackend.create_stack = create_stack

    # moto's resource map creates a resource when it is first read: a DescribeStackResources
    # or DescribeStacks answered while the stack is created in the background would create
    # a second copy of what is not created yet. Other requests see what exists; a stack in
    # creation has no outputs yet, as in CloudFormation.
    original_getitem = parsing.ResourceMap.__getitem__
    original_iter = parsing.ResourceMap.__iter__

    def reading_only(resource_map) -> bool:
        return _BACKGROUND[0] > 0 and not getattr(_CREATOR, "active", False)

    def __getitem__(self, key):
        if key not in self._parsed_resources and reading_only(self):
            raise KeyError(key)
        return original_getitem(self, key)

    def __iter__(self):
        if reading_only(self):
            return iter([key for key in list(self.resources) if key in self._parsed_resources])
        return original_iter(self)

    parsing.ResourceMap.__getitem__ = __getitem__
    parsing.ResourceMap.__iter__ = __iter__

    original_outputs = cfn_models.Stack.outputs.fget

    def outputs(self):
        if self.status in ("CREATE_PENDING", "CREATE_IN_PROGRESS") and reading_only(self.resource_map):
            return None
        return original_outputs(self)

    cfn_models.Stack.outputs = property(outputs)


def _delete(resource: Any, account_id: str, region_name: str) -> None:
    """The failed resource goes (an Auto Scaling group with its instances), as in a rollback."""
    try:
        resource.delete(account_id, region_name)
    except Exception:  # best effort, as the rollback of the others
        pass
