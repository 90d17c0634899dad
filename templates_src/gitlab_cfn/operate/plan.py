"""The plan of an update: every resource change, per nested stack, like ``terraform plan``.

``plan`` compares the templates a stack runs (or an older build) with a build and
lists, per template (the parent is ``main``),

- **add**: a logical id that is new (or its whole nested template is);
- **modify**: the same resource with other property values or resource attributes
  (the properties are named), or one that refers to a resource that is replaced (its
  id changes, so the value given to it does);
- **replace** / **may replace** / **delete**: the replacement guard's verdicts
  (``verify.replacement``: create-only properties from the registry schemas, cascades
  through references and nested stack outputs), with the changed properties named too;
- a nested stack whose template changes is a **modify** of its stack resource in the
  parent, as CloudFormation shows it.

Replacing or deleting a resource that holds data blocks the update unless allowed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from gitlab_cfn.compile.naming import MAIN
from gitlab_cfn.compile.naming import stack_id as tier_stack_id
from gitlab_cfn.refs import canonical, references
from gitlab_cfn.verify.replacement import DELETE, MAY_REPLACE, REPLACE, diff_loaded, holds_data

ADD, MODIFY = "add", "modify"
# terraform plan's marks, in the order a plan lists them.
ORDER = (ADD, MODIFY, MAY_REPLACE, REPLACE, DELETE)
MARK = {ADD: "+", MODIFY: "~", MAY_REPLACE: "~/+", REPLACE: "-/+", DELETE: "-"}
ATTRIBUTES = ("Condition", "DependsOn", "Metadata", "CreationPolicy", "UpdatePolicy", "DeletionPolicy",
              "UpdateReplacePolicy")


@dataclass
class PlanRow:
    template: str
    logical_id: str
    type: str
    action: str
    properties: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    holds_data: bool = False
    data_loss: bool = False
    allowed: bool = False

    @property
    def name(self) -> str:
        return f"{self.template}:{self.logical_id}"

    @property
    def loses_data(self) -> bool:
        return self.holds_data and self.action in (REPLACE, MAY_REPLACE, DELETE)

    @property
    def blocking(self) -> bool:
        return self.loses_data and not self.allowed

    def __str__(self) -> str:
        marks = []
        if self.holds_data:
            marks.append("holds data")
        if self.data_loss:
            marks.append("DATA LOSS: no Retain or Snapshot policy")
        if self.allowed and self.loses_data:
            marks.append("allowed")
        mark = f" [{', '.join(marks)}]" if marks else ""
        why = "; ".join(self.reasons) if self.reasons else ", ".join(self.properties)
        return f"{self.action.upper():12} {self.logical_id} ({self.type}){mark}" + (f": {why}" if why else "")

    def as_dict(self) -> dict:
        return asdict(self)


def _changed_fields(old: dict, new: dict) -> list[str]:
    old_props, new_props = old.get("Properties") or {}, new.get("Properties") or {}
    names = [p for p in sorted(set(old_props) | set(new_props))
             if canonical(old_props.get(p)) != canonical(new_props.get(p))]
    names += [a for a in ATTRIBUTES if canonical(old.get(a)) != canonical(new.get(a))]
    return names


def plan(old: dict[str, dict], new: dict[str, dict], allow: set[str] = frozenset(),
         region: str = "us-east-1") -> list[PlanRow]:
    """Every change of an update from ``old`` to ``new`` (templates keyed by tier), per template."""
    guard = {c.name: c for c in diff_loaded(old, new, allow, region)}
    rows: list[PlanRow] = []
    tiers = list(dict.fromkeys([MAIN, *old, *new]))
    changed_tiers = {t for t in tiers if t != MAIN and canonical(old.get(t)) != canonical(new.get(t))}
    for tier in tiers:
        old_res = (old.get(tier) or {}).get("Resources") or {}
        new_res = (new.get(tier) or {}).get("Resources") or {}
        tier_rows: dict[str, PlanRow] = {}
        for logical_id, change in ((c.logical_id, c) for c in guard.values() if c.template == tier):
            fields = _changed_fields(old_res.get(logical_id, {}), new_res.get(logical_id, {})) \
                if logical_id in old_res and logical_id in new_res else []
            tier_rows[logical_id] = PlanRow(tier, logical_id, change.type, change.action, fields,
                                            list(change.reasons), change.holds_data, change.data_loss,
                                            change.allowed)
        gone = {lid for lid, r in tier_rows.items() if r.action in (REPLACE, DELETE)}
        for logical_id, resource in new_res.items():
            if logical_id in tier_rows:
                continue
            if logical_id not in old_res:
                reason = "new" if old_res or tier == MAIN else "its nested template is new"
                tier_rows[logical_id] = PlanRow(tier, logical_id, resource["Type"], ADD, [], [reason],
                                                holds_data(logical_id, resource["Type"]))
                continue
            fields = _changed_fields(old_res[logical_id], resource)
            reasons = [f"{', '.join(fields)} changed"] if fields else []
            refs = sorted({ref for ref, _ in references(resource.get("Properties")) if ref in gone})
            reasons += [f"refers to {ref}, which is replaced" for ref in refs]
            if tier == MAIN and resource["Type"] == "AWS::CloudFormation::Stack":
                child = next((t for t in changed_tiers if tier_stack_id(t) == logical_id), None)
                if child:
                    reasons.append(f"its nested template ({child}) changes")
            if reasons:
                tier_rows[logical_id] = PlanRow(tier, logical_id, resource["Type"], MODIFY, fields, reasons,
                                                holds_data(logical_id, resource["Type"]))
        rows += sorted(tier_rows.values(), key=lambda r: (ORDER.index(r.action), r.logical_id))
    for row in rows:
        row.allowed = row.allowed or row.name in allow or row.logical_id in allow
    return rows


def counts(rows: list[PlanRow]) -> dict[str, int]:
    return {action: sum(1 for r in rows if r.action == action) for action in ORDER}


def summary(rows: list[PlanRow]) -> str:
    n = counts(rows)
    return (f"{n[REPLACE]} replaced, {n[MAY_REPLACE]} may be replaced, {n[DELETE]} deleted, {n[ADD]} added, "
            f"{n[MODIFY]} modified; {sum(r.loses_data for r in rows)} hold data, "
            f"{sum(r.data_loss for r in rows)} without Retain or Snapshot")


def text(rows: list[PlanRow]) -> str:
    """The plan per template, a heading for each template that changes."""
    lines, template = [], None
    for row in rows:
        if row.template != template:
            template = row.template
            lines.append(f"{template}.template.yaml")
        lines.append(f"  {row}")
    return "".join(line + "\n" for line in lines)


def refusal(rows: list[PlanRow], flag: str) -> str | None:
    """The one-line refusal when the plan replaces or deletes data not allowed, else None."""
    blocking = [r for r in rows if r.blocking]
    if not blocking:
        return None
    named = "; ".join(f"{r.name} would be {'deleted' if r.action == DELETE else 'replaced'} "
                      f"({', '.join(r.reasons)})" + (" with DATA LOSS" if r.data_loss else "") for r in blocking)
    return f"{named}: it holds data; allow it with {flag} TIER:LOGICAL_ID ({summary(rows)})"
