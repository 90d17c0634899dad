"""A deployed stack as it is: status, outputs and events, nested stacks included.

The failing resource comes first (``deploy.first_failure``: the first failed event of
the deepest failing nested stack), then the rest, as ``rain`` and the console's
"Events" tab show it. Everything is read with DescribeStacks, ListStackResources and
DescribeStackEvents (paginated), so it works on any stack, also one made elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.deploy import EMBEDDED, Failure, _existing, first_failure, nested_resources


@dataclass
class StackStatus:
    name: str
    status: str
    reason: str
    complete: int
    total: int
    nested: bool

    def line(self) -> str:
        why = f"  {self.reason}" if self.reason and not self.status.endswith("_COMPLETE") else ""
        return f"{('  ' if self.nested else '') + self.name:<50} {self.status:<28} " \
               f"{self.complete}/{self.total} resources{why}"


@dataclass
class Status:
    stack_id: str
    name: str
    status: str
    termination_protection: bool
    parameters: dict[str, str]
    stacks: list[StackStatus] = field(default_factory=list)
    failure: Failure | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["failure"] = asdict(self.failure) if self.failure else None
        return out


def _stack(cfn, stack_name: str, region: str) -> dict:
    existing = _existing(cfn, stack_name)
    if existing is None:
        raise ConfigError(f"--stack-name: no stack {stack_name} in {region}")
    return existing


def _stack_ids(cfn, stack_id: str) -> tuple[list[str], dict[str, list[dict]]]:
    """The stack and its nested stacks, parent first, and each one's resources."""
    resources: dict[str, list[dict]] = {stack_id: []}
    order = [stack_id]
    for sid, r in nested_resources(cfn, stack_id):
        resources.setdefault(sid, []).append(r)
        if r["ResourceType"] == "AWS::CloudFormation::Stack" and r.get("PhysicalResourceId"):
            child = r["PhysicalResourceId"]
            if child not in resources:
                resources[child] = []
                order.append(child)
    return order, resources


def status(cfn, stack_name: str, region: str) -> Status:
    top = _stack(cfn, stack_name, region)
    order, resources = _stack_ids(cfn, top["StackId"])
    stacks = []
    for sid in order:
        described = top if sid == top["StackId"] else cfn.describe_stacks(StackName=sid)["Stacks"][0]
        rows = resources.get(sid, [])
        stacks.append(StackStatus(described["StackName"], described["StackStatus"],
                                  described.get("StackStatusReason") or "",
                                  sum(1 for r in rows if r.get("ResourceStatus", "").endswith("_COMPLETE")),
                                  len(rows), sid != top["StackId"]))
    failed = any("FAILED" in s.status or "ROLLBACK" in s.status for s in stacks)
    return Status(top["StackId"], top["StackName"], top["StackStatus"],
                  bool(top.get("EnableTerminationProtection")),
                  {p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
                   for p in top.get("Parameters", [])},
                  stacks, first_failure(cfn, top["StackId"]) if failed else None)


def status_text(result: Status) -> str:
    lines = []
    if result.failure:
        lines.append(f"FAILED: {result.failure}")
    lines += [s.line() for s in result.stacks]
    lines.append(f"termination protection: {'on' if result.termination_protection else 'off'}")
    return "\n".join(lines) + "\n"


def outputs(cfn, stack_name: str, region: str) -> dict[str, dict[str, str]]:
    """Outputs of the stack (``""``) and of each nested stack (by its name), parent first."""
    top = _stack(cfn, stack_name, region)
    order, _ = _stack_ids(cfn, top["StackId"])
    found: dict[str, dict[str, str]] = {}
    for sid in order:
        described = top if sid == top["StackId"] else cfn.describe_stacks(StackName=sid)["Stacks"][0]
        key = "" if sid == top["StackId"] else described["StackName"]
        found[key] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return found


@dataclass
class Event:
    time: str
    stack: str
    logical_id: str
    type: str
    status: str
    reason: str
    failing: bool = False

    def line(self) -> str:
        why = f"  {self.reason}" if self.reason else ""
        mark = "FAILING " if self.failing else ""
        return f"{mark}{self.time}  {self.stack}  {self.logical_id} ({self.type})  {self.status}{why}"


def events(cfn, stack_name: str, region: str, limit: int | None = None) -> list[Event]:
    """Events of the stack and its nested stacks, the failing resource's first, then newest first."""
    top = _stack(cfn, stack_name, region)
    order, _ = _stack_ids(cfn, top["StackId"])
    found: list[tuple[object, int, Event]] = []
    # Nested stacks come from the resources and from the events: a nested stack deleted by a
    # rollback is no longer a resource, but its events (the failure among them) remain.
    queue, seen = list(order), set()
    while queue:
        sid = queue.pop(0)
        if sid in seen:
            continue
        seen.add(sid)
        for page in cfn.get_paginator("describe_stack_events").paginate(StackName=sid):
            for e in page["StackEvents"]:
                stamp = e.get("Timestamp")
                found.append((stamp, len(found), Event(
                    stamp.isoformat(timespec="seconds") if hasattr(stamp, "isoformat") else str(stamp),
                    e.get("StackName", ""), e.get("LogicalResourceId", ""), e.get("ResourceType", ""),
                    e.get("ResourceStatus", ""), e.get("ResourceStatusReason") or "")))
                if e.get("ResourceType") != "AWS::CloudFormation::Stack" or \
                        e.get("LogicalResourceId") == e.get("StackName"):
                    continue
                embedded = EMBEDDED.search(e.get("ResourceStatusReason") or "")
                child = embedded.group(1) if embedded else e.get("PhysicalResourceId") or ""
                if child.startswith("arn:") and child not in seen:
                    queue.append(child)
    # Newest first (DescribeStackEvents' own order); equal times keep the order they came in.
    ordered = [e for _, _, e in sorted(found, key=lambda t: (t[0], -t[1]), reverse=True)]
    failure = first_failure(cfn, top["StackId"])
    if failure:
        match = next((e for e in ordered if e.logical_id == failure.logical_id and e.stack == failure.stack
                      and e.status.endswith("_FAILED")), None)
        if match:
            match.failing = True
            ordered.remove(match)
            ordered.insert(0, match)
    return ordered[:limit] if limit else ordered


def as_dicts(items) -> list[dict]:
    return [asdict(i) for i in items]
