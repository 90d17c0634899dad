"""How long a build takes to create, and to update when its servers roll, modelled from the
templates: the dependency graph of every stack (``DependsOn``, ``Ref``, ``Fn::GetAtt``,
``Fn::Sub``; a nested stack waits for the stacks whose outputs it takes), per-type durations
from ``data/durations.yaml`` (each with its source) and the templates' own ``CreationPolicy``
timeouts, which give the upper bound.

CloudFormation starts a resource as soon as everything it depends on is complete, so the
deploy takes the longest chain of dependencies (the critical path); a nested stack lasts as
long as its own critical path plus its bookkeeping. :func:`needless` tries each dependency on
the critical path and reports those whose removal would shorten it.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from gitlab_cfn.refs import references
from gitlab_cfn.report.stack import NESTED, Stack

DURATIONS = Path(__file__).resolve().parents[1] / "data" / "durations.yaml"


def load_durations(path: Path = DURATIONS) -> dict:
    return yaml.safe_load(Path(path).read_text())


def iso_seconds(text: str) -> float:
    """``PT1H30M`` -> 5400."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", str(text))
    if not match:
        return 0.0
    h, m, s = (int(x or 0) for x in match.groups())
    return h * 3600 + m * 60 + s


@dataclass
class Edge:
    source: str          # the resource that waits
    target: str          # the one it waits for
    kind: str            # DependsOn | Ref | GetAtt | Sub ...
    detail: str = ""     # e.g. the nested outputs taken


def edges_of(stack: Stack) -> dict[str, list[Edge]]:
    """Dependencies between the resources of one template (those that exist)."""
    live = {rid for rid in stack.resources if stack.exists(rid)}
    out: dict[str, list[Edge]] = {rid: [] for rid in live}
    for rid in live:
        res = stack.resources[rid]
        found: dict[str, Edge] = {}
        depends = res.get("DependsOn") or []
        for target in [depends] if isinstance(depends, str) else depends:
            if target in live:
                found[target] = Edge(rid, target, "DependsOn")
        for name, attr in references({k: v for k, v in res.items() if k in ("Properties", "Metadata")}):
            if name in live and name != rid:
                edge = found.setdefault(name, Edge(rid, name, "GetAtt" if attr else "Ref"))
                if attr and attr.startswith("Outputs."):
                    edge.detail = ", ".join(sorted(set(filter(None, edge.detail.split(", "))) | {attr[8:]}))
                if edge.kind == "DependsOn":
                    edge.kind = "DependsOn+Ref"
        out[rid] = sorted(found.values(), key=lambda e: e.target)
    return out


@dataclass
class Step:
    """A resource on a critical path: when it starts and ends, and why it waited."""

    tier: str
    resource: str
    type: str
    start: float
    end: float
    via: Edge | None
    depth: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Result:
    total: float
    path: list[Step] = field(default_factory=list)
    finish: dict[str, float] = field(default_factory=dict)     # resource -> end (this stack's clock)
    nested: dict[str, "Result"] = field(default_factory=dict)  # nested stack -> its result


class Model:
    """Durations for one scenario (create, or an update that rolls the servers)."""

    def __init__(self, durations: dict | None = None, upper_bound: bool = False):
        self.d = durations if durations is not None else load_durations()
        self.upper = upper_bound
        # (tier, nested stack or "*" for every reader, nested stack it reads): read the outputs as
        # soon as they are ready inside the other stack, as if the slow rest of it were elsewhere.
        self.early: set[tuple[str, str, str]] = set()
        # (tier, resource, resource it waits for): dependencies left out (what-if of removing one).
        self.removed: set[tuple[str, str, str]] = set()

    def spec(self, kind: str) -> dict:
        return {**self.d.get("default", {}), **(self.d.get("types", {}).get(kind) or {})}

    def boot(self, rid: str, kind: str) -> float:
        for pattern, entry in (self.d.get("boot") or {}).items():
            if fnmatch.fnmatch(rid, pattern):
                return float(entry["seconds"])
        return float(self.spec(kind).get("boot", 0))

    def own(self, stack: Stack, rid: str) -> float:
        """A resource's create time (a nested stack's is computed from its template)."""
        res = stack.resources[rid]
        kind = res["Type"]
        base = float(self.spec(kind).get("create", 0))
        signal = (res.get("CreationPolicy") or {}).get("ResourceSignal")
        if signal:
            return base + (iso_seconds(signal.get("Timeout", "PT5M")) if self.upper else self.boot(rid, kind))
        return base

    # -- scenario hooks (the update model overrides these) ---------------------------------------

    def active(self, stack: Stack) -> bool:
        return True

    def duration(self, stack: Stack, rid: str) -> float:
        return self.own(stack, rid)

    # -- the longest path --------------------------------------------------------------------------

    def run(self, stack: Stack, offset: float = 0.0, depth: int = 0) -> Result:
        graph = {rid: [e for e in edges if (stack.name, rid, e.target) not in self.removed]
                 for rid, edges in edges_of(stack).items()}
        nested: dict[str, Result] = {}
        finish: dict[str, float] = {}
        start: dict[str, float] = {}
        via: dict[str, Edge | None] = {}
        order = _topological(graph)
        outputs_ready: dict[str, dict[str, float]] = {}
        for rid in order:
            ready, why = 0.0, None
            for edge in graph[rid]:
                done = finish[edge.target]
                early = {(stack.name, rid, edge.target), (stack.name, "*", edge.target)} & self.early
                if early and edge.target in outputs_ready and edge.detail:
                    done = max(outputs_ready[edge.target].get(o, done) for o in edge.detail.split(", "))
                if why is None or done > ready:
                    ready, why = done, edge
            # Waiting for things that take no time (unchanged in an update) is no wait.
            start[rid], via[rid] = ready, why if ready > 0 else None
            if stack.resources[rid]["Type"] == NESTED and rid in stack.children:
                child = stack.children[rid]
                if self.active(child):
                    inner = self.run(child, offset + ready + self.overhead(), depth + 1)
                    nested[rid] = inner
                    finish[rid] = ready + self.overhead() + inner.total
                    outputs_ready[rid] = {
                        name: ready + self.overhead() + max(
                            [inner.finish.get(r, 0.0) for r, _ in references(out.get("Value"))] or [0.0])
                        for name, out in (child.template.get("Outputs") or {}).items()}
                else:
                    finish[rid] = ready
            else:
                finish[rid] = ready + self.duration(stack, rid)
        if not finish:
            return Result(0.0, finish=finish, nested=nested)
        last = max(order, key=lambda r: (finish[r], r))
        chain = []
        rid: str | None = last
        while rid is not None:
            chain.append(rid)
            edge = via[rid]
            rid = edge.target if edge is not None else None
        steps: list[Step] = []
        for rid in reversed(chain):
            kind = stack.resources[rid]["Type"]
            steps.append(Step(stack.name, rid, kind, offset + start[rid], offset + finish[rid], via[rid], depth))
            if rid in nested:
                steps.extend(nested[rid].path)
        return Result(finish[last], steps, finish, nested)

    def overhead(self) -> float:
        return float(self.spec(NESTED).get("create", 0))


class RollModel(Model):
    """An update that rolls the servers: every Auto Scaling group with a rolling update policy
    replaces its instances batch by batch on a new launch template version; the stacks holding
    them (and their parents) update, everything else is unchanged and takes no time."""

    def __init__(self, root: Stack, durations: dict | None = None, upper_bound: bool = False):
        super().__init__(durations, upper_bound)
        self.rolling: dict[tuple[int, str], dict] = {}
        self.dirty: set[int] = set()
        for stack in root.walk():
            for rid, res in stack.resources.items():
                policy = (res.get("UpdatePolicy") or {}).get("AutoScalingRollingUpdate")
                if res.get("Type") == "AWS::AutoScaling::AutoScalingGroup" and policy and stack.exists(rid):
                    self.rolling[(id(stack), rid)] = policy
                    node: Stack | None = stack
                    while node is not None:
                        self.dirty.add(id(node))
                        node = node.parent
        self.launch_templates: set[tuple[int, str]] = set()
        for stack in root.walk():
            for rid, res in stack.resources.items():
                if (id(stack), rid) in self.rolling:
                    spec = (res.get("Properties") or {}).get("LaunchTemplate") or {}
                    for owner, lt in stack.target(spec.get("LaunchTemplateId")):
                        self.launch_templates.add((id(owner), lt))

    def active(self, stack: Stack) -> bool:
        return id(stack) in self.dirty

    def overhead(self) -> float:
        return float(self.spec(NESTED).get("update", 0))

    def batches(self, stack: Stack, rid: str) -> tuple[int, float, float]:
        props = stack.resources[rid].get("Properties") or {}
        policy = self.rolling[(id(stack), rid)]
        count = stack.number(props.get("DesiredCapacity")) or stack.number(props.get("MinSize")) or 1
        size = stack.number(policy.get("MaxBatchSize"), 1) or 1
        pause = iso_seconds(policy.get("PauseTime", "PT0S"))
        return math.ceil(count / size), pause, count

    def duration(self, stack: Stack, rid: str) -> float:
        kind = stack.resources[rid]["Type"]
        if (id(stack), rid) in self.launch_templates:
            return float(self.spec(kind).get("update", 0))
        if (id(stack), rid) not in self.rolling:
            return 0.0
        batches, pause, _ = self.batches(stack, rid)
        policy = self.rolling[(id(stack), rid)]
        waits = str(policy.get("WaitOnResourceSignals", "false")).lower() == "true"
        launch = float(self.spec(kind).get("create", 0))
        if waits:
            # Each batch waits for its new servers' signals, at most PauseTime.
            per_batch = pause if self.upper else min(pause or math.inf, launch + self.boot(rid, kind))
        else:
            # Without signals CloudFormation waits PauseTime after each batch.
            per_batch = max(pause, launch)
        return float(self.spec(kind).get("update", 0)) + batches * per_batch


def _topological(graph: dict[str, list[Edge]]) -> list[str]:
    order, state = [], {}

    def visit(node: str, trail: tuple) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise ValueError(f"dependency cycle: {' -> '.join(trail + (node,))}")
        state[node] = 1
        for edge in graph[node]:
            visit(edge.target, trail + (node,))
        state[node] = 2
        order.append(node)

    for node in sorted(graph):
        visit(node, ())
    return order


@dataclass
class Finding:
    tier: str
    resource: str
    waits_for: str
    kind: str
    saving: float
    reason: str


def needless(root: Stack, model_factory: Callable[[], Model]) -> list[Finding]:
    """Each dependency on the critical path whose removal would shorten the deploy, with the
    saving; ``reason`` says whether the templates show it is needed (a value that is used) or not
    (an explicit DependsOn, or nested outputs passed as parameters the child never reads)."""
    base = model_factory().run(root)
    findings = []
    for step in base.path:
        edge = step.via
        if edge is None:
            continue
        stack = _find(root, step.tier, step.resource)
        if stack is None:
            continue
        saved = _without(root, stack, edge, model_factory)
        if base.total - saved <= 0.5:
            continue
        reason = _why(stack, edge)
        findings.append(Finding(step.tier, edge.source, edge.target, edge.kind, base.total - saved, reason))
    return findings


def waits_for_whole_stacks(root: Stack, model_factory: Callable[[], Model]) -> list[Finding]:
    """Nested stacks on the critical path that wait for the whole of another nested stack
    although the outputs they read are ready earlier inside it. ``saving`` is how much the whole
    deploy would shorten if they could read those outputs when ready (the slow rest of that
    stack moved elsewhere), other chains taken into account."""
    base = model_factory().run(root)
    findings, seen = [], set()
    for step in base.path:
        edge = step.via
        stack = _find(root, step.tier, step.resource)
        if edge is None or stack is None or step.resource not in stack.children \
                or edge.target not in stack.children or not edge.detail or (stack.name, edge.target) in seen:
            continue
        seen.add((stack.name, edge.target))
        model = model_factory()
        model.early.add((stack.name, "*", edge.target))
        saving = base.total - model.run(root).total
        if saving > 0.5:
            child = stack.children[edge.target]
            findings.append(Finding(stack.name, step.resource, edge.target, "nested outputs", saving,
                                    f"every stack reading {child.name} waits for all of it; reading its "
                                    f"outputs when they are ready (its slow rest elsewhere) saves this"))
    return findings


def outputs_when_ready(root: Stack, model_factory: Callable[[], Model]) -> tuple[float, float]:
    """(modelled total, total if every stack read other stacks' outputs as soon as they are ready):
    the most that restructuring the nested stacks could save, all at once."""
    base = model_factory().run(root).total
    model = model_factory()
    for stack in root.walk():
        model.early |= {(stack.name, "*", rid) for rid in stack.children}
    return base, model.run(root).total


def _find(root: Stack, tier: str, rid: str) -> Stack | None:
    for stack in root.walk():
        if stack.name == tier and rid in stack.resources:
            return stack
    return None


def _without(root: Stack, stack: Stack, edge: Edge, model_factory: Callable[[], Model]) -> float:
    model = model_factory()
    model.removed.add((stack.name, edge.source, edge.target))
    return model.run(root).total


def _why(stack: Stack, edge: Edge) -> str:
    res = stack.resources[edge.source]
    if res["Type"] == NESTED and edge.source in stack.children and edge.kind != "DependsOn":
        child = stack.children[edge.source]
        passed = (res.get("Properties") or {}).get("Parameters") or {}
        taken = [p for p, v in passed.items() if any(n == edge.target for n, _ in references(v))]
        used = _used_parameters(child)
        unused = [p for p in taken if p not in used]
        if taken and len(unused) == len(taken):
            return f"not needed: {child.name} never reads {', '.join(unused)}"
        return f"needed: {child.name} reads {', '.join(p for p in taken if p in used)}"
    if edge.kind == "DependsOn":
        return "explicit DependsOn: needed only if the resource uses the other while it is created"
    return f"needed: it reads the other's {'attribute' if edge.kind == 'GetAtt' else 'id'}"


def _used_parameters(stack: Stack) -> set[str]:
    body = {k: v for k, v in stack.template.items() if k not in ("Parameters", "Metadata")}
    return {name for name, _ in references(body)}


# -- output --------------------------------------------------------------------------------------

def minutes(seconds: float) -> str:
    return f"{seconds / 60:5.1f} min"


def render(title: str, result: Result) -> str:
    out = [f"{title}: {minutes(result.total).strip()} (critical path, resource by resource)"]
    out.append(f"  {'start':>9} {'end':>9} {'takes':>9}  resource")
    for step in result.path:
        why = ""
        if step.via is not None:
            why = f"  after {step.via.target} ({step.via.kind}{': ' + step.via.detail if step.via.detail else ''})"
        indent = "  " * step.depth
        out.append(f"  {minutes(step.start)} {minutes(step.end)} {minutes(step.seconds)}  "
                   f"{indent}{step.tier}/{step.resource} [{step.type}]{why}")
    return "\n".join(out)
