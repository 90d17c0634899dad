"""The replacement guard: what an update from one build to another would replace or delete.

For every template of two builds it lists the resources an update would

- **delete**: the logical id is gone (or its whole nested template is);
- **replace**: the type changed, or a property that the CloudFormation registry
  schema marks create-only (``createOnlyProperties``) changed;
- **may replace**: a conditionally create-only property changed
  (``conditionalCreateOnlyProperties``: replaced or not depending on the value);
- **replace in cascade**: a create-only property refers to a resource that is
  replaced (its id changes), to a launch template that changes (its
  ``LatestVersionNumber`` changes), or to a parameter fed by such a resource
  through another nested stack's output.

The schemas come with cfn-lint, so this runs offline. Resources that hold data
(``holds_data``) are marked; replacing or deleting one fails the check unless it
is allowed by name, and doing so without a Retain or Snapshot policy is data loss.

A server may also keep its data in a database another resource holds: a change of where
its user data points (``DATA_LOCATIONS``: the Praefect servers' database host, port and
name) leaves the old data behind and starts the servers on an empty database, so it is
marked as holding data too, and refused unless allowed by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from gitlab_cfn.compile.compiler import read_manifest
from gitlab_cfn.refs import canonical, references
from gitlab_cfn.verify.access import _preamble
from gitlab_cfn.verify.lint_rules.StatefulResourcesKept import STATEFUL

KEEP = ("Retain", "Snapshot")
# Instances whose replacement takes data offline (a Gitaly server's volume moves): the
# single server, and the servers of a Gitaly Cluster (config gitaly.nodes, at most 9).
DATA_INSTANCES = {"GitalyInstance", *(f"Gitaly{n}Instance" for n in range(1, 10))}
# Attributes whose value changes whenever their resource is modified, not only replaced.
VOLATILE = {"LatestVersionNumber", "DefaultVersionNumber"}
DELETE, REPLACE, MAY_REPLACE = "delete", "replace", "may replace"
# User data role -> the variables that say where its servers' data lives, and what losing it
# means. Praefect routes every call by the repository records in its database
# (https://docs.gitlab.com/administration/gitaly/praefect/configure/, "PostgreSQL"): on an
# empty database every repository is "not found". GitLab moves that database with pg_dump
# and psql while Praefect is stopped ("Moving GitLab databases to a different PostgreSQL
# instance", https://docs.gitlab.com/administration/postgresql/moving/, praefect_production).
DATA_LOCATIONS = {
    "praefect": (("DB_HOST", "DB_PORT", "PRAEFECT_DB_NAME"),
                 "the Praefect servers would start on an empty database and find no repository; stop "
                 "Praefect, copy praefect_production with pg_dump and psql as "
                 "https://docs.gitlab.com/administration/postgresql/moving/ describes, then allow it"),
}


@dataclass
class Change:
    template: str
    logical_id: str
    type: str
    action: str
    reasons: list[str] = field(default_factory=list)
    holds_data: bool = False
    data_loss: bool = False
    allowed: bool = False

    @property
    def name(self) -> str:
        return f"{self.template}:{self.logical_id}"

    @property
    def blocking(self) -> bool:
        return self.holds_data and not self.allowed

    def __str__(self) -> str:
        marks = []
        if self.holds_data:
            marks.append("holds data")
        if self.data_loss:
            marks.append("DATA LOSS: no Retain or Snapshot policy")
        if self.allowed:
            marks.append("allowed")
        mark = f" [{', '.join(marks)}]" if marks else ""
        return f"{self.action.upper():12} {self.logical_id} ({self.type}){mark}: {'; '.join(self.reasons)}"


def holds_data(logical_id: str, resource_type: str) -> bool:
    return resource_type in STATEFUL or (resource_type == "AWS::EC2::Instance" and logical_id in DATA_INSTANCES)


def _schema_lists(resource_type: str, region: str) -> tuple[list[str], list[str]]:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    except Exception:  # a type the schemas do not know: nothing is known to be create-only
        return [], []
    return schema.get("createOnlyProperties", []), schema.get("conditionalCreateOnlyProperties", [])


def _at(properties: dict, pointer: str) -> Any:
    value: Any = properties
    for part in pointer.removeprefix("/properties/").split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _load(build_dir: Path) -> dict[str, dict]:
    manifest = read_manifest(build_dir)
    out = {}
    for tier, entry in manifest["templates"].items():
        template, _ = decode_str((build_dir / entry["path"]).read_text())
        out[tier] = template or {}
    return out


def diff_templates(name: str, old: dict, new: dict, changed_inputs: set[str] = frozenset(),
                   region: str = "us-east-1") -> tuple[list[Change], set[str]]:
    """The changes to one template, and the names of its outputs whose values change."""
    old_res, new_res = old.get("Resources") or {}, new.get("Resources") or {}
    changes: dict[str, Change] = {}

    def add(logical_id: str, resource_type: str, action: str, reason: str) -> None:
        change = changes.get(logical_id)
        if change is None:
            changes[logical_id] = Change(name, logical_id, resource_type, action, [reason],
                                         holds_data(logical_id, resource_type))
            return
        if reason not in change.reasons:
            change.reasons.append(reason)
        if change.action == MAY_REPLACE and action == REPLACE:
            change.action = REPLACE

    for logical_id, resource in old_res.items():
        if logical_id not in new_res:
            reason = "logical id gone" if new_res else "its nested template is gone"
            add(logical_id, resource["Type"], DELETE, reason)
        elif new_res[logical_id]["Type"] != resource["Type"]:
            add(logical_id, resource["Type"], REPLACE, f"type changed to {new_res[logical_id]['Type']}")

    modified = {lid for lid in new_res if lid in old_res
                and canonical(old_res[lid].get("Properties")) != canonical(new_res[lid].get("Properties"))}

    # Direct changes, then cascades until nothing more is replaced.
    while True:
        before = ({lid: c.action for lid, c in changes.items()}, len(modified))
        replaced = {lid for lid, c in changes.items() if c.action in (REPLACE, DELETE)}
        # A resource that refers to something whose value changes is itself
        # modified, even when its text is not: a launch template naming a
        # replaced instance profile gets a new version.
        for logical_id, resource in new_res.items():
            if logical_id in old_res and any(
                    ref in replaced or (attr in VOLATILE and ref in modified) or (attr is None and ref in changed_inputs)
                    for ref, attr in references(resource.get("Properties"))):
                modified.add(logical_id)
        for logical_id, resource in new_res.items():
            if logical_id not in old_res or old_res[logical_id]["Type"] != resource["Type"]:
                continue
            old_props, new_props = old_res[logical_id].get("Properties") or {}, resource.get("Properties") or {}
            create_only, conditional = _schema_lists(resource["Type"], region)
            for pointers, action in ((create_only, REPLACE), (conditional, MAY_REPLACE)):
                for pointer in pointers:
                    prop = pointer.removeprefix("/properties/")
                    old_value, new_value = _at(old_props, pointer), _at(new_props, pointer)
                    if canonical(old_value) != canonical(new_value):
                        add(logical_id, resource["Type"], action, f"{prop} changed (create-only)"
                            if action == REPLACE else f"{prop} changed (create-only for some values)")
                        continue
                    for ref, attr in sorted(references(new_value), key=str):
                        if ref in replaced:
                            add(logical_id, resource["Type"], action, f"{prop} refers to {ref}, which is replaced")
                        elif attr in VOLATILE and ref in modified:
                            add(logical_id, resource["Type"], action, f"{prop} refers to {ref}.{attr}, which changes")
                        elif attr is None and ref in changed_inputs:
                            add(logical_id, resource["Type"], action,
                                f"{prop} refers to parameter {ref}, whose source is replaced")
        if ({lid: c.action for lid, c in changes.items()}, len(modified)) == before:
            break

    moved: set[str] = set()     # the data stays where it was, but the servers leave it
    for logical_id, resource in new_res.items():
        if logical_id in old_res and logical_id not in changes:
            reason = _data_moves(old_res[logical_id], resource, changed_inputs)
            if reason:
                changes[logical_id] = Change(name, logical_id, resource["Type"], REPLACE, [reason], True)
                moved.add(logical_id)

    replaced = {lid for lid, c in changes.items() if c.action in (REPLACE, DELETE)}
    changed_outputs = set()
    for output, spec in (new.get("Outputs") or {}).items():
        for ref, attr in references(spec.get("Value")):
            if ref in replaced or (attr is None and ref in changed_inputs) or (attr in VOLATILE and ref in modified):
                changed_outputs.add(output)

    for change in changes.values():
        if not change.holds_data or change.logical_id in moved:
            continue
        if change.action == DELETE:
            policy = old_res[change.logical_id].get("DeletionPolicy")
        else:
            policy = new_res[change.logical_id].get("UpdateReplacePolicy")
        change.data_loss = policy not in KEEP
    return sorted(changes.values(), key=lambda c: c.logical_id), changed_outputs


def _data_moves(old: dict, new: dict, changed_inputs: set[str]) -> str | None:
    """Why a server's data location changes between two versions of its resource, or None."""
    old_found = _preamble((old.get("Properties") or {}).get("LaunchTemplateData", old.get("Properties")))
    new_found = _preamble((new.get("Properties") or {}).get("LaunchTemplateData", new.get("Properties")))
    if not (old_found and new_found) or old_found[0] != new_found[0] or new_found[0] not in DATA_LOCATIONS:
        return None
    names, consequence = DATA_LOCATIONS[new_found[0]]
    moved = [n for n in names if canonical(old_found[1].get(n)) != canonical(new_found[1].get(n))
             or any(attr is None and ref in changed_inputs for ref, attr in references(new_found[1].get(n)))]
    if not moved:
        return None
    return f"its database moves ({', '.join(moved)} changed): {consequence}"


def diff_builds(old_dir: str | Path, new_dir: str | Path, allow: set[str] = frozenset(),
                region: str = "us-east-1") -> list[Change]:
    """Every replacement and deletion an update from ``old_dir`` to ``new_dir`` causes."""
    return diff_loaded(_load(Path(old_dir)), _load(Path(new_dir)), allow, region)


def diff_loaded(old: dict[str, dict], new: dict[str, dict], allow: set[str] = frozenset(),
                region: str = "us-east-1") -> list[Change]:
    """The same, for templates already loaded, keyed by tier (``main`` is the parent)."""
    tiers = list(dict.fromkeys([*old, *new]))
    changed_inputs: set[str] = set()
    while True:
        changes, outputs = [], set()
        for tier in tiers:
            tier_changes, tier_outputs = diff_templates(tier, old.get(tier, {}), new.get(tier, {}),
                                                        changed_inputs, region)
            changes += tier_changes
            outputs |= tier_outputs
        # A child parameter is fed by the output of the same name (see wiring).
        if outputs <= changed_inputs:
            break
        changed_inputs |= outputs
    for change in changes:
        change.allowed = change.name in allow or change.logical_id in allow
    return changes
