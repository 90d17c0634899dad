"""Change sets and stack updates as CloudFormation does them, for the stand-in.

moto compares the raw template text of each resource and stops there: a changed
parameter value (a new image id behind an SSM parameter, another list of
Availability Zones) gives "no changes", nested stacks get no change sets of their
own, and executing an update deletes and re-creates nested stacks and Auto Scaling
groups. This module plans an update the way CloudFormation describes it and
carries it out in place:

- ``plan``: every resource change of one stack, with ``Replacement``, ``Scope`` and
  ``Details`` (``Target`` with ``Attribute``/``Name``/``RequiresRecreation``,
  ``Evaluation``, ``ChangeSource``, ``CausingEntity``), computed from the resolved
  values before and after (SSM parameters resolved again, as CloudFormation does on
  every update) and the registry schemas' ``createOnlyProperties``;
- nested change sets: with ``IncludeNestedStacks`` the root lists only the stack
  rows, each naming its own change set (``ChangeSetId``), whose ``ParentChangeSetId``
  and ``RootChangeSetId`` point up and whose ``ExecutionStatus`` is ``UNAVAILABLE``
  ("Executable from root change set");
- ``update``: the plan carried out: removed resources deleted, added ones created,
  modified ones updated in dependency order (replaced ones created anew and the old
  ones deleted afterwards), nested stacks updated in place.

Sources: botocore ``cloudformation/2010-05-15/service-2.json`` (ResourceChange,
ResourceChangeDetail, ResourceTargetDefinition, DescribeChangeSetOutput members);
AWS CloudFormation User Guide, "Change sets for nested stacks"
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/change-sets-for-nested-stacks.html)
and "Example change sets"
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-changesets-samples.html).
"""

from __future__ import annotations

import threading
from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.utils import (
    generate_changeset_id,
    get_stack_from_s3_url,
    random_suffix,
)
from moto.utilities.utils import get_partition

from gitlab_cfn.refs import canonical, references

UNRESOLVED = object()
# Attributes whose value changes whenever their resource is modified, not only replaced.
VOLATILE = {"LatestVersionNumber", "DefaultVersionNumber"}
RESOURCE_ATTRIBUTES = ("Metadata", "CreationPolicy", "UpdatePolicy", "DeletionPolicy", "UpdateReplacePolicy")
STACK = "AWS::CloudFormation::Stack"
_REQUEST = threading.local()  # IncludeNestedStacks of the CreateChangeSet request being served


def _schema(resource_type: str, region: str) -> tuple[set[str], set[str]]:
    """Top-level create-only and conditionally create-only properties (registry schemas, via cfn-lint)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    except Exception:  # a type the schemas do not know: nothing is known to be create-only
        return set(), set()

    def top(pointers: list[str]) -> set[str]:
        return {p.removeprefix("/properties/").split("/")[0] for p in pointers}

    return top(schema.get("createOnlyProperties", [])), top(schema.get("conditionalCreateOnlyProperties", []))


def _resolve(value: Any, resource_map: Any) -> Any:
    try:
        return parsing.clean_json(value, resource_map)
    except Exception:  # refers to something that does not exist yet
        return UNRESOLVED


def scratch_map(resource_map: Any, template: dict, parameters: dict[str, Any]) -> Any:
    """A resource map of the new template and parameters that resolves values but creates nothing.

    Parameters are loaded as on a real update (SSM parameters resolved again); the
    stack's existing resources are visible under their logical ids."""
    scratch = parsing.ResourceMap(
        stack_id=resource_map.stack_id, stack_name=resource_map["AWS::StackName"], parameters=parameters,
        tags=resource_map.tags, region_name=resource_map._region_name, account_id=resource_map._account_id,
        template=template, cross_stack_resources=resource_map.cross_stack_resources)
    scratch.load_mapping()
    scratch.load_parameters()
    scratch.load_conditions()
    for logical_id in resource_map._resource_json_map:
        if logical_id in resource_map._parsed_resources:
            scratch._parsed_resources.setdefault(logical_id, resource_map._parsed_resources[logical_id])
    scratch._resource_json_map = {}
    return scratch


def _detail(attribute: str, requires: str, evaluation: str, source: str, name: str | None = None,
            causing: str | None = None) -> dict:
    target: dict[str, str] = {"Attribute": attribute, "RequiresRecreation": requires}
    if name:
        target["Name"] = name
    detail: dict[str, Any] = {"Target": target, "Evaluation": evaluation, "ChangeSource": source}
    if causing:
        detail["CausingEntity"] = causing
    return detail


def _replacement(details: list[dict]) -> str:
    """Always+Static -> True; Always+Dynamic or Conditionally -> Conditional; else False (botocore docs)."""
    result = "False"
    for d in details:
        requires = d["Target"]["RequiresRecreation"]
        if requires == "Always" and d["Evaluation"] == "Static":
            return "True"
        if requires in ("Always", "Conditionally"):
            result = "Conditional"
    return result


def _physical_id(resource: Any) -> str | None:
    if resource is None or isinstance(resource, (str, int, float, list, dict)):
        return None
    if isinstance(resource, cfn_models.Stack):
        return resource.stack_id
    return getattr(resource, "physical_resource_id", None)


def _is_active(scratch: Any, resource: dict) -> bool:
    condition = resource.get("Condition")
    return not condition or bool(scratch.lazy_condition_map[condition])


def _stack_parameters(resolved: Any) -> dict[str, str]:
    def text(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return {k: text(v) for k, v in (resolved or {}).items()}


def nested_template(resource_map: Any, properties: dict) -> str:
    return get_stack_from_s3_url(properties["TemplateURL"], account_id=resource_map._account_id,
                                 partition=get_partition(resource_map._region_name))


def plan(resource_map: Any, template: dict, parameters: dict[str, Any], nested=None) -> list[dict]:
    """The resource changes an update of this stack to ``template`` and ``parameters`` makes.

    ``nested(logical_id, child_stack, child_template_text, child_parameters)`` is
    called for each nested stack that stays; it returns (has changes, change set id).
    Without it, a nested stack's changes are planned without a change set of their own."""
    if nested is None:
        def nested(logical_id: str, child: Any, body: str, child_parameters: dict[str, str]) -> tuple[bool, None]:
            return bool(plan(child.resource_map, cfn_models.Stack.parse_template(body), child_parameters)), None
    region = resource_map._region_name
    old_res = resource_map._resource_json_map or {}
    new_res = template.get("Resources") or {}
    scratch = scratch_map(resource_map, template, parameters)
    changed_params = {name for name, value in scratch.resolved_parameters.items()
                      if canonical(resource_map.resolved_parameters.get(name, UNRESOLVED)) != canonical(value)}
    rows: dict[str, dict] = {}
    details: dict[str, list[dict]] = {}

    def physical(logical_id: str) -> str | None:
        return _physical_id(resource_map._parsed_resources.get(logical_id))

    for logical_id, resource in old_res.items():
        gone = logical_id not in new_res or not _is_active(scratch, new_res[logical_id])
        if (gone or new_res[logical_id]["Type"] != resource["Type"]) and logical_id in resource_map._parsed_resources:
            policy = resource.get("DeletionPolicy", "Delete")
            rows[logical_id] = {"Action": "Remove", "LogicalResourceId": logical_id, "ResourceType": resource["Type"],
                                "PhysicalResourceId": physical(logical_id), "PolicyAction": policy,
                                "Scope": [], "Details": []}
    for logical_id, resource in new_res.items():
        if not _is_active(scratch, resource):
            continue
        if (logical_id not in old_res or logical_id not in resource_map._parsed_resources
                or old_res[logical_id]["Type"] != resource["Type"]):
            key = logical_id if logical_id not in rows else f"{logical_id} (new)"
            rows[key] = {"Action": "Add", "LogicalResourceId": logical_id, "ResourceType": resource["Type"],
                         "Scope": [], "Details": []}

    kept = [lid for lid in new_res if lid in old_res and lid not in rows and _is_active(scratch, new_res[lid])]
    for logical_id in kept:
        old, new = old_res[logical_id], new_res[logical_id]
        found: list[dict] = []
        for attribute in RESOURCE_ATTRIBUTES:
            if canonical(old.get(attribute)) != canonical(new.get(attribute)):
                found.append(_detail(attribute, "Never", "Static", "DirectModification"))
        if new["Type"] != STACK:
            create_only, conditional = _schema(new["Type"], region)
            old_props, new_props = old.get("Properties") or {}, new.get("Properties") or {}
            for prop in sorted(set(old_props) | set(new_props)):
                requires = "Always" if prop in create_only else "Conditionally" if prop in conditional else "Never"
                attribute = "Tags" if prop == "Tags" and requires == "Never" else "Properties"
                name = None if attribute == "Tags" else prop
                if canonical(old_props.get(prop)) != canonical(new_props.get(prop)):
                    found.append(_detail(attribute, requires, "Static", "DirectModification", name))
                    continue
                causes = sorted(ref for ref, attr in references(new_props.get(prop))
                                if attr is None and ref in changed_params)
                if causes and canonical(_resolve(old_props.get(prop), resource_map)) != canonical(
                        _resolve(new_props.get(prop), scratch)):
                    found.append(_detail(attribute, requires, "Dynamic", "DirectModification", name))
                    for cause in causes:
                        found.append(_detail(attribute, requires, "Static", "ParameterReference", name, cause))
        details[logical_id] = found

    # Cascades: a value that refers to a replaced resource, or to an attribute that
    # changes when its resource is modified, changes too (known only at execution: Dynamic).
    while True:
        before = sum(len(d) for d in details.values())
        replaced = {rows[k]["LogicalResourceId"] for k in rows if rows[k]["Action"] == "Remove"} | {
            lid for lid, d in details.items() if _replacement(d) in ("True", "Conditional")}
        modified = {lid for lid, d in details.items() if d}
        for logical_id in kept:
            new = new_res[logical_id]
            if new["Type"] == STACK:
                continue
            create_only, conditional = _schema(new["Type"], region)
            for prop, value in sorted((new.get("Properties") or {}).items()):
                requires = "Always" if prop in create_only else "Conditionally" if prop in conditional else "Never"
                attribute = "Tags" if prop == "Tags" and requires == "Never" else "Properties"
                name = None if attribute == "Tags" else prop
                for ref, attr in sorted(references(value), key=str):
                    if ref in replaced and not (attr in VOLATILE):
                        causing, source = (ref, "ResourceReference") if attr is None else (f"{ref}.{attr}", "ResourceAttribute")
                    elif attr in VOLATILE and ref in modified:
                        causing, source = f"{ref}.{attr}", "ResourceAttribute"
                    else:
                        continue
                    detail = _detail(attribute, requires, "Dynamic", source, name, causing)
                    if detail not in details[logical_id]:
                        details[logical_id].append(detail)
        if sum(len(d) for d in details.values()) == before:
            break

    for logical_id in kept:
        new = new_res[logical_id]
        found = details[logical_id]
        if new["Type"] == STACK:
            child = resource_map._parsed_resources.get(logical_id)
            props = _resolve(new.get("Properties") or {}, scratch)
            raw_changed = canonical(old_res[logical_id].get("Properties")) != canonical(new.get("Properties"))
            has_changes, change_set_id = False, None
            if isinstance(child, cfn_models.Stack) and props is not UNRESOLVED:
                has_changes, change_set_id = nested(logical_id, child, nested_template(resource_map, props),
                                                    _stack_parameters(props.get("Parameters")))
            if not (raw_changed or has_changes or found):
                continue
            row = {"Action": "Modify", "LogicalResourceId": logical_id, "ResourceType": STACK,
                   "PhysicalResourceId": physical(logical_id), "Replacement": "False", "Scope": ["Properties"],
                   "Details": [_detail("Properties", "Never", "Dynamic", "Automatic")] + found}
            if change_set_id:
                row["ChangeSetId"] = change_set_id
            rows[logical_id] = row
            continue
        if not found:
            continue
        rows[logical_id] = {"Action": "Modify", "LogicalResourceId": logical_id, "ResourceType": new["Type"],
                            "PhysicalResourceId": physical(logical_id), "Replacement": _replacement(found),
                            "Scope": sorted({d["Target"]["Attribute"] for d in found}), "Details": found}
        if rows[logical_id]["Replacement"] == "True":
            policy = new.get("UpdateReplacePolicy", "Delete")
            rows[logical_id]["PolicyAction"] = f"ReplaceAnd{policy}"
    return list(rows.values())


def dependency_order(template: dict, names: list[str]) -> list[str]:
    """``names`` ordered so that each comes after what it refers to or depends on."""
    resources = template.get("Resources") or {}
    wanted = set(names)
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        resource = resources.get(name, {})
        depends = resource.get("DependsOn", [])
        for dependency in ([depends] if isinstance(depends, str) else depends):
            if dependency in wanted:
                visit(dependency)
        for ref, _ in sorted(references(resource.get("Properties")), key=str):
            if ref in wanted:
                visit(ref)
        ordered.append(name)

    for name in names:
        visit(name)
    return ordered


class UpdateFailed(Exception):
    def __init__(self, logical_id: str, resource_type: str, reason: str):
        super().__init__(f"{logical_id} ({resource_type}): {reason}")
        self.logical_id, self.resource_type, self.reason = logical_id, resource_type, reason


def update(resource_map: Any, template: dict, parameters: dict[str, Any] | None) -> None:
    """``ResourceMap.update`` as CloudFormation updates a stack: the plan, carried out in place.

    A failed update is not rolled back here (the stack says UPDATE_ROLLBACK_COMPLETE with
    the failing resource's event); the stack keeps what it holds, and listing it creates
    nothing new."""
    old_json = dict(resource_map._resource_json_map or {})
    try:
        _update(resource_map, template, parameters)
    except Exception:
        held = resource_map._parsed_resources
        merged = {**old_json, **(template.get("Resources") or {})}
        resource_map._resource_json_map = {lid: body for lid, body in merged.items()
                                           if _physical_id(held.get(lid)) is not None}
        raise


def _update(resource_map: Any, template: dict, parameters: dict[str, Any] | None) -> None:
    parameters = parameters if parameters is not None else resource_map.input_parameters
    rows = plan(resource_map, template, parameters)
    account, region = resource_map._account_id, resource_map._region_name
    old_json = dict(resource_map._resource_json_map or {})
    stack = _stack_of(resource_map)

    resource_map._template = template
    resource_map.input_parameters = parameters
    resource_map.resolved_parameters = {}
    resource_map.load_mapping()
    resource_map.load_parameters()
    resource_map.load_conditions()
    resource_map._resource_json_map = template["Resources"]

    def event(logical_id: str, resource_type: str, status: str, reason: str | None = None,
              physical: str | None = None) -> None:
        if stack is not None:
            stack.events.append(cfn_models.Event(
                stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=logical_id,
                physical_resource_id=physical or _physical_id(resource_map._parsed_resources.get(logical_id)) or "",
                resource_type=resource_type, resource_status=status, resource_status_reason=reason,
                resource_properties=None))

    adds = [r["LogicalResourceId"] for r in rows if r["Action"] == "Add"]
    modifies = {r["LogicalResourceId"]: r for r in rows if r["Action"] == "Modify"}
    removes = [r for r in rows if r["Action"] == "Remove"]
    cleanup: list[tuple[str, Any, dict]] = []
    # Nested stacks whose inputs change only once a sibling is updated (an output it passes on)
    # are updated in their turn too.
    stacks = [lid for lid, r in template["Resources"].items() if r.get("Type") == STACK
              and lid not in modifies and lid not in adds and isinstance(resource_map._parsed_resources.get(lid), cfn_models.Stack)]
    for logical_id in dependency_order(template, adds + list(modifies) + stacks):
        resource_json = template["Resources"][logical_id]
        if logical_id in stacks:
            child = resource_map._parsed_resources[logical_id]
            props = _resolve(resource_json.get("Properties") or {}, resource_map)
            if props is UNRESOLVED or _stack_parameters(props.get("Parameters")) == _stack_parameters(
                    child.resource_map.input_parameters):
                continue
            modifies[logical_id] = {"LogicalResourceId": logical_id, "ResourceType": STACK, "Replacement": "False"}
        if logical_id in adds:
            if logical_id in resource_map._parsed_resources and any(
                    r["LogicalResourceId"] == logical_id for r in removes):
                cleanup.append((logical_id, resource_map._parsed_resources.pop(logical_id), old_json[logical_id]))
            event(logical_id, resource_json["Type"], "CREATE_IN_PROGRESS")
            try:
                resource_map[logical_id]
            except Exception as exc:
                raise UpdateFailed(logical_id, resource_json["Type"], _reason(exc)) from exc
            event(logical_id, resource_json["Type"], "CREATE_COMPLETE")
            continue
        row = modifies[logical_id]
        event(logical_id, row["ResourceType"], "UPDATE_IN_PROGRESS")
        original = resource_map._parsed_resources.get(logical_id)
        try:
            if row.get("Replacement") == "True" or (row.get("Replacement") == "Conditional" and _really_replaced(
                    row, old_json[logical_id], resource_json, resource_map)):
                resource_map._parsed_resources.pop(logical_id, None)
                created = parsing.parse_and_create_resource(logical_id, resource_json, resource_map, account, region)
                resource_map._parsed_resources[logical_id] = created
                event(logical_id, row["ResourceType"], "UPDATE_IN_PROGRESS",
                      "Requested update requires the creation of a new physical resource; hence creating one.")
                cleanup.append((logical_id, original, old_json[logical_id]))
            else:
                changed = parsing.parse_and_update_resource(logical_id, resource_json, resource_map, account, region)
                # A type moto cannot update keeps its resource (moto would drop it from the stack).
                resource_map._parsed_resources[logical_id] = changed if changed is not None else original
        except UpdateFailed as exc:
            if exc.logical_id:
                raise
            raise UpdateFailed(logical_id, row["ResourceType"], exc.reason) from exc
        except Exception as exc:
            raise UpdateFailed(logical_id, row["ResourceType"], _reason(exc)) from exc
        event(logical_id, row["ResourceType"], "UPDATE_COMPLETE")

    # UPDATE_COMPLETE_CLEANUP_IN_PROGRESS: old resources of replacements, then removed ones.
    for row in removes:
        logical_id = row["LogicalResourceId"]
        if logical_id in resource_map._parsed_resources and logical_id not in template["Resources"]:
            cleanup.append((logical_id, resource_map._parsed_resources.pop(logical_id), old_json[logical_id]))
    for logical_id, resource, resource_json in cleanup:
        replaced = logical_id in template["Resources"]
        policy = resource_json.get("UpdateReplacePolicy" if replaced else "DeletionPolicy")
        if resource is None or policy == "Retain":
            continue
        physical = _physical_id(resource)
        event(logical_id, resource_json.get("Type", "?"), "DELETE_IN_PROGRESS", physical=physical)
        try:
            resource_map._delete_resource(resource, resource_json)
        except Exception as exc:  # as CloudFormation: a failed cleanup leaves the old resource, the update stands
            event(logical_id, resource_json.get("Type", "?"), "DELETE_FAILED", _reason(exc), physical=physical)
            continue
        event(logical_id, resource_json.get("Type", "?"), "DELETE_COMPLETE", physical=physical)


def _really_replaced(row: dict, old_json: dict, new_json: dict, resource_map: Any) -> bool:
    """A Conditional replacement happens when a create-only value really changes once resolved."""
    create_only, _ = _schema(row["ResourceType"], resource_map._region_name)
    for prop in create_only:
        old = _resolve((old_json.get("Properties") or {}).get(prop), resource_map)
        new = _resolve((new_json.get("Properties") or {}).get(prop), resource_map)
        if canonical(old) != canonical(new):
            return True
    return False


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def _stack_of(resource_map: Any) -> Any:
    for backend in cfn_models.cloudformation_backends[resource_map._account_id].values():
        stack = backend.stacks.get(resource_map.stack_id)
        if stack is not None:
            return stack
    return None


# -- installed by the patches ------------------------------------------------------------------

def install_change_sets() -> None:
    """Change sets with AWS's shapes: details, replacement, nested change sets, parameter changes."""
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import ActionResult

    def create_change_set(self) -> Any:
        stack_name = self._get_param("StackName")
        kind = self._get_param("ChangeSetType", "CREATE")
        body = self._get_param("TemplateBody")
        url = self._get_param("TemplateURL")
        stack = None
        if kind == "UPDATE":
            stack = self.cloudformation_backend.get_stack(stack_name)
            self.validate_template_and_stack_body()
            if self._get_bool_param("UsePreviousTemplate", False):
                body = stack.template
        if url:
            body = self._get_stack_from_s3_url(url)
        parameters = {}
        for item in self._get_param("Parameters", []):
            key = item["ParameterKey"]
            if item.get("UsePreviousValue", False) in (True, "true"):
                # The value the stack was given (an SSM parameter's name, not what it resolved to).
                previous = {}
                if stack is not None:
                    defaults = {k: v["Default"] for k, v in (stack.template_dict.get("Parameters") or {}).items()
                                if "Default" in v}
                    previous = {**defaults, **stack.resource_map.input_parameters}
                if key not in previous:
                    raise ValidationError(message=f"Invalid input for parameter key {key}. "
                                                  "Cannot specify usePreviousValue as true for a parameter key "
                                                  "not in the previous template")
                parameters[key] = previous[key]
            else:
                parameters[key] = item["ParameterValue"]
        _REQUEST.include_nested = self._get_bool_param("IncludeNestedStacks", False)
        try:
            change_set_id, stack_id = self.cloudformation_backend.create_change_set(
                stack_name=stack_name, change_set_name=self._get_param("ChangeSetName"), template=body,
                parameters=parameters, description=self._get_param("Description"),
                notification_arns=self._get_param("NotificationARNs", []),
                tags={t["Key"]: t["Value"] for t in self._get_param("Tags", [])},
                role_arn=self._get_param("RoleARN"), change_set_type=kind)
        finally:
            _REQUEST.include_nested = False
        return ActionResult({"Id": change_set_id, "StackId": stack_id})

    CloudFormationResponse.create_change_set = create_change_set

    def diff(self) -> list:
        if self.change_set_type != "UPDATE":
            return [cfn_models.Change(action="Add", logical_resource_id=name, resource_type=r["Type"])
                    for name, r in (self.template_dict.get("Resources") or {}).items()]
        include = getattr(self, "include_nested_stacks", None)
        if include is None:
            include = self.include_nested_stacks = bool(getattr(_REQUEST, "include_nested", False))
        self.children = []
        root = getattr(self, "root_change_set_id", None) or self.change_set_id

        def nested(logical_id: str, child: Any, body: str, parameters: dict[str, str]) -> tuple[bool, str | None]:
            if not include:
                return bool(plan(child.resource_map, cfn_models.Stack.parse_template(body), parameters)), None
            backend = cfn_models.cloudformation_backends[child.account_id][child.region_name]
            name = f"{self.change_set_name}-{logical_id}-{random_suffix()}"[:128]
            child_id = generate_changeset_id(name, child.region_name, child.account_id)
            change_set = cfn_models.ChangeSet.__new__(cfn_models.ChangeSet)
            change_set.include_nested_stacks = True
            change_set.parent_change_set_id = self.change_set_id
            change_set.root_change_set_id = root
            change_set.__init__(change_set_type="UPDATE", change_set_id=child_id, change_set_name=name,
                                stack=child, template=body, parameters=parameters,
                                description=self.description, tags=self.tags)
            change_set.status = "CREATE_COMPLETE"
            change_set.execution_status = "UNAVAILABLE"
            change_set.status_reason = "Executable from root change set"
            backend.change_sets[child_id] = change_set
            self.children.append(change_set)
            return bool(change_set.changes), child_id

        changes = []
        for row in plan(self.stack.resource_map, self.template_dict, self.parameters, nested):
            change = cfn_models.Change(action=row["Action"], logical_resource_id=row["LogicalResourceId"],
                                       resource_type=row["ResourceType"])
            change.physical_resource_id = row.get("PhysicalResourceId")
            change.replacement = row.get("Replacement")
            change.scope = row["Scope"]
            change.details = row["Details"]
            change.change_set_id = row.get("ChangeSetId")
            change.policy_action = row.get("PolicyAction")
            changes.append(change)
        return changes

    cfn_models.ChangeSet.diff = diff
    cfn_models.ChangeSet.parent_change_set_id = None
    cfn_models.ChangeSet.root_change_set_id = None

    original_create = cfn_models.CloudFormationBackend.create_change_set

    def create_change_set_backend(self, *args: Any, **kwargs: Any) -> tuple[str, str]:
        change_set_id, stack_id = original_create(self, *args, **kwargs)
        change_set = self.change_sets[change_set_id]
        if change_set.change_set_type == "UPDATE":
            if change_set.changes:
                change_set.status, change_set.execution_status, change_set.status_reason = \
                    "CREATE_COMPLETE", "AVAILABLE", None
            else:
                change_set.status, change_set.execution_status = "FAILED", "UNAVAILABLE"
                change_set.status_reason = ("The submitted information didn't contain changes. "
                                            "Submit different information to create a change set.")
        return change_set_id, stack_id

    cfn_models.CloudFormationBackend.create_change_set = create_change_set_backend

    original_delete = cfn_models.CloudFormationBackend.delete_change_set

    def delete_change_set(self, change_set_name: str) -> None:
        change_set = self.describe_change_set(change_set_name)
        for child in getattr(change_set, "children", []):
            self.change_sets.pop(child.change_set_id, None)
            for grandchild in getattr(child, "children", []):
                self.change_sets.pop(grandchild.change_set_id, None)
        original_delete(self, change_set.change_set_id)

    cfn_models.CloudFormationBackend.delete_change_set = delete_change_set


def install_updates() -> None:
    """Executing a change set or UpdateStack updates the stack in place, as planned."""
    parsing.ResourceMap.update = update

    def update_nested(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        # A nested stack is updated in place: same stack id, its resources updated (moto deleted
        # the nested stack and created a new one).
        properties = cloudformation_json["Properties"]
        body = nested_template(original_resource.resource_map, properties)
        original_resource.update(body, parameters=_stack_parameters(properties.get("Parameters")))
        if original_resource.status != "UPDATE_COMPLETE":
            raise UpdateFailed("", STACK, f"Embedded stack {original_resource.stack_id} was not successfully updated")
        return original_resource

    cfn_models.Stack.update_from_cloudformation_json = classmethod(update_nested)

    def stack_update(self, template: str, role_arn: str | None = None, parameters: dict | None = None,
                     tags: dict | None = None) -> None:
        self._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
        self.status = "UPDATE_IN_PROGRESS"
        try:
            update(self.resource_map, self.parse_template(template), parameters)
        except UpdateFailed as exc:
            if exc.logical_id:
                self._add_resource_event(exc.logical_id, exc.resource_type, "UPDATE_FAILED", exc.reason)
            self.status = "UPDATE_ROLLBACK_COMPLETE"
            self._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=exc.reason)
            self._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
            return
        # Template, parameters and outputs are the new ones (moto kept the old ones after a change set).
        self.template = template
        self._parse_template()
        if parameters is not None:
            self.parameters = parameters
        self.output_map = self._create_output_map()
        self.description = self.template_dict.get("Description")
        self.role_arn = role_arn or self.role_arn
        if tags is not None:
            self.tags = tags
        self.status = "UPDATE_COMPLETE"
        self._add_stack_event("UPDATE_COMPLETE")

    cfn_models.Stack.update = stack_update

    def execute_change_set(self, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        if change_set.execution_status != "AVAILABLE":
            reason = change_set.status_reason or change_set.execution_status
            raise ValidationError(message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its "
                                          f"current status of [{change_set.execution_status}]: {reason}")
        stack = self.stacks[change_set.stack_id]
        if change_set.change_set_type == "CREATE":
            stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
            change_set.apply()
            stack.template = change_set.template
            stack._parse_template()
            stack.output_map = stack._create_output_map()
            stack.status = "CREATE_COMPLETE"
            stack._add_stack_event("CREATE_COMPLETE")
        else:
            stack.update(change_set.template, parameters=change_set.parameters)
        change_set.execution_status = "EXECUTE_COMPLETE" if stack.status.endswith("_COMPLETE") and \
            "ROLLBACK" not in stack.status else "EXECUTE_FAILED"
        # Executing a change set deletes the stack's other change sets (botocore ExecuteChangeSet docs).
        for other_id, other in list(self.change_sets.items()):
            if other.stack_id == stack.stack_id and other is not change_set and \
                    getattr(other, "root_change_set_id", None) is None:
                del self.change_sets[other_id]
        for child in getattr(change_set, "children", []):
            child.execution_status = change_set.execution_status

    cfn_models.CloudFormationBackend.execute_change_set = execute_change_set


# -- Auto Scaling groups and instances updated as CloudFormation updates them -------------------

def _rolling(resource_json: dict) -> dict | None:
    policy = resource_json.get("UpdatePolicy") or {}
    return policy.get("AutoScalingRollingUpdate") or policy.get("AutoScalingReplacingUpdate")


def install_group_updates() -> None:
    """An Auto Scaling group is updated in place (UpdateAutoScalingGroup: same name, capacity kept
    when the template gives none); with a rolling or replacing UpdatePolicy, a new launch
    template version replaces the instances, a batch at a time, new ones first (moto deleted
    the group and created another).

    AWS: AWS::AutoScaling::AutoScalingGroup properties LaunchTemplate, Min/Max/DesiredCapacity,
    HealthCheckGracePeriod "Update requires: No interruption"; UpdatePolicy applies when the
    LaunchTemplate changes (CloudFormation User Guide, aws-properties-as-group and
    aws-attribute-updatepolicy)."""
    from moto.autoscaling.models import FakeAutoScalingGroup, autoscaling_backends

    def update_group(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        props = cloudformation_json["Properties"]
        backend = autoscaling_backends[account_id][region_name]
        group = original_resource

        def launched_from(g: Any) -> tuple:
            template = g.ec2_launch_template
            if template is None:
                return (g.launch_config_name if hasattr(g, "launch_config_name") else None,)
            return template.id, str(template.get_version(g.launch_template_version).number)

        before = launched_from(group)

        def number(name: str) -> int | None:
            return int(props[name]) if props.get(name) is not None else None

        backend.update_auto_scaling_group(
            name=group.name, availability_zones=props.get("AvailabilityZones", []),
            desired_capacity=number("DesiredCapacity"), max_size=number("MaxSize"), min_size=number("MinSize"),
            launch_config_name=props.get("LaunchConfigurationName"), launch_template=props.get("LaunchTemplate", {}),
            vpc_zone_identifier=",".join(props.get("VPCZoneIdentifier", [])) or None,
            health_check_period=number("HealthCheckGracePeriod"), health_check_type=props.get("HealthCheckType"),
            new_instances_protected_from_scale_in=props.get("NewInstancesProtectedFromScaleIn"),
            mixed_instances_policy=props.get("MixedInstancesPolicy") or None)
        policy = _rolling(cloudformation_json)
        if policy is not None and launched_from(group) != before:
            old = [state for state in group.instance_states]
            batch = max(1, int(policy.get("MaxBatchSize", 1)))
            for start in range(0, len(old), batch):
                chunk = old[start:start + batch]
                group.replace_autoscaling_group_instances(len(chunk), group.get_propagated_tags())
                backend.ec2_backend.terminate_instances([s.instance.id for s in chunk])
                group.instance_states = [s for s in group.instance_states if s not in chunk]
            backend.update_attached_elbs(group.name)
        return group

    FakeAutoScalingGroup.update_from_cloudformation_json = classmethod(update_group)


# AWS::EC2::Instance properties updated in place: with a stop and start (EBS-backed), or without
# interruption (CloudFormation User Guide, aws-properties-ec2-instance, "Update requires").
INSTANCE_STOP_START = {"InstanceType", "UserData", "EbsOptimized", "KernelId", "RamdiskId"}


def install_instance_updates() -> None:
    """An instance whose changed properties AWS updates in place keeps its id (InstanceType and
    UserData with a stop and start); a create-only change (ImageId, LaunchTemplate, SubnetId, ...)
    is a replacement, carried out by ``update`` (moto dropped the instance from the stack)."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import Instance

    def update_instance(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        props = cloudformation_json.get("Properties", {})
        backend = ec2_backends[account_id][region_name]
        instance = original_resource
        changes = {}
        if props.get("InstanceType") and props["InstanceType"] != instance.instance_type:
            changes["instance_type"] = props["InstanceType"]
        if "UserData" in props and props["UserData"] != instance.user_data:
            changes["user_data"] = props["UserData"]
        if changes:
            running = instance.state == "running"
            if running:
                backend.stop_instances([instance.id])
            for key, value in changes.items():
                backend.modify_instance_attribute(instance.id, key, value)
            if running:
                backend.start_instances([instance.id])
        if props.get("Tags") is not None:
            instance.add_tags({t["Key"]: t["Value"] for t in props["Tags"]})
        return instance

    Instance.update_from_cloudformation_json = classmethod(update_instance)


# -- EC2 refusals ------------------------------------------------------------------------------

def install_block_device_sizes() -> None:
    """RunInstances refuses an EBS volume smaller than its snapshot (the image's root snapshot),
    with EC2's error; images carry a root snapshot size (``root_volume_size`` in the stand-in's
    image catalog; an image created from an instance has its root volume's size).

    AWS: ``InvalidBlockDeviceMapping: Volume of size 20GB is smaller than snapshot
    'snap-...', expect size >= 30GB`` (botocore ClientError quoted in scylladb/scylladb#6999)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models import amis
    from moto.ec2.models.instances import InstanceBackend

    original_init = amis.Ami.__init__

    def ami_init(self, ec2_backend, ami_id, *args, root_volume_size=None, **kwargs):
        original_init(self, ec2_backend, ami_id, *args, **kwargs)
        instance = kwargs.get("instance")
        if root_volume_size is None and instance is not None:
            root = instance.block_device_mapping.get(getattr(instance, "root_device_name", "/dev/sda1"))
            root_volume_size = root.size if root is not None else None
        source = kwargs.get("source_ami")
        if root_volume_size is None and source is not None:
            root_volume_size = source.ebs_snapshot.volume.size
        if root_volume_size is not None:
            self.ebs_snapshot.volume.size = int(root_volume_size)

    amis.Ami.__init__ = ami_init

    def block_device_mappings(self) -> list[dict[str, Any]]:
        return [{"DeviceName": self.root_device_name,
                 "Ebs": {"SnapshotId": self.ebs_snapshot.id, "VolumeSize": self.ebs_snapshot.volume.size,
                         "DeleteOnTermination": False, "VolumeType": "standard"}}]

    amis.Ami.block_device_mappings = property(block_device_mappings)

    original_run = InstanceBackend.run_instances

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        mappings = kwargs.get("block_device_mappings")
        if mappings is None and kwargs.get("launch_template"):
            mappings = self._get_template_from_args(kwargs["launch_template"]).data.get("BlockDeviceMappings")
            template_image = self._get_template_from_args(kwargs["launch_template"]).data.get("ImageId")
            image_id = image_id or template_image
        image = self.amis.get(image_id) if image_id else None
        for mapping in mappings or []:
            ebs = mapping.get("Ebs") or {}
            if ebs.get("VolumeSize") is None:
                continue
            snapshot = None
            if ebs.get("SnapshotId"):
                snapshot = self.snapshots.get(ebs["SnapshotId"])
            elif image is not None and mapping.get("DeviceName") == image.root_device_name:
                snapshot = image.ebs_snapshot
            if snapshot is not None and int(ebs["VolumeSize"]) < snapshot.volume.size:
                raise EC2ClientError(
                    "InvalidBlockDeviceMapping",
                    f"Volume of size {int(ebs['VolumeSize'])}GB is smaller than snapshot '{snapshot.id}', "
                    f"expect size >= {snapshot.volume.size}GB")
        return original_run(self, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances


def install_volume_in_use() -> None:
    """AttachVolume refuses a volume attached to another instance (moto moved the attachment).

    AWS: ``VolumeInUse: vol-... is already attached to an instance`` (aws/aws-sdk-java#1623;
    EC2 API error codes, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_block_store import EBSBackend

    original_attach = EBSBackend.attach_volume

    def attach_volume(self, volume_id, instance_id, device_path, delete_on_termination=False):
        volume = self.get_volume(volume_id)
        attachment = getattr(volume, "attachment", None) if volume else None
        if attachment is not None and attachment.instance.state != "terminated" and \
                not getattr(volume, "multi_attach_enabled", False):
            raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
        return original_attach(self, volume_id, instance_id, device_path, delete_on_termination)

    EBSBackend.attach_volume = attach_volume
