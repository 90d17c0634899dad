"""E9010: a server holding data is never replaced by a parameter that changes for another reason.

A stateful instance (one with an attached data volume, or named in the
replacement guard's ``DATA_INSTANCES``) is replaced when one of its create-only
properties changes (the registry schema's ``createOnlyProperties`` of
AWS::EC2::Instance: ``ImageId``, ``KeyName``, ``LaunchTemplate``, ``SubnetId``...),
and its ``LaunchTemplate`` changes whenever its launch template gets a new version.
CloudFormation creates the replacement while the data volume is still attached to
the old instance, so the update fails. Such properties must not hang on

- an SSM-typed parameter (``AWS::SSM::Parameter::Value<...>``): CloudFormation
  resolves it again on every update, so a new value in the SSM parameter replaces
  the server during an unrelated update;
- a parameter that other resources use too (a change meant for them replaces
  this server); in a nested template, the parent records which of its parameters
  are SSM-typed or feed several stacks in ``Metadata: gitlab-cfn: shared-parameters``.

The parent stack's name (``ParentStackName``), which never changes for a stack,
may be used anywhere. A server may share a parameter with other resources of its
template only where its own metadata explains why, parameter by parameter, under
``gitlab-cfn: shared-by-design`` (the servers of a Gitaly Cluster outnumbering the
AZs share a subnet of the network stack); an empty reason does not count, and the
SSM-typed and parent-shared checks still apply.
"""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.compile.naming import PARENT_STACK_NAME
from gitlab_cfn.verify.lint_rules._helpers import ref_name

SSM_TYPE = "AWS::SSM::Parameter::Value<"
INSTANCE = "AWS::EC2::Instance"


def _create_only(resource_type: str) -> list[str]:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return [p.removeprefix("/properties/") for p in schema.get("createOnlyProperties", [])]


def _refs(value) -> set[str]:
    from gitlab_cfn.refs import references

    return {name for name, attr in references(value) if attr is None}


class StatefulInstancePinned(CloudFormationLintRule):
    id = "E9010"
    shortdesc = "Servers holding data are not replaced by shared or SSM-typed parameters"
    description = ("The create-only properties of an instance with an attached data volume, and the launch template "
                   "it launches from, refer to no SSM-typed parameter and to no parameter used elsewhere")
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-instance.html"
    tags = ["gitlab-cfn", "ec2", "replacement"]

    def match(self, cfn):
        from gitlab_cfn.verify.replacement import DATA_INSTANCES

        matches = []
        parameters = cfn.template.get("Parameters", {}) or {}
        shared = ((cfn.template.get("Metadata") or {}).get("gitlab-cfn") or {}).get("shared-parameters") or {}
        resources = cfn.template.get("Resources", {}) or {}
        create_only = _create_only(INSTANCE)
        for name, resource in cfn.get_resources([INSTANCE]).items():
            props = resource.get("Properties", {}) or {}
            if not props.get("Volumes") and name not in DATA_INSTANCES:
                continue
            sources: dict[str, set[str]] = {}   # parameter -> properties it reaches
            for prop in create_only:
                if prop in props:
                    for ref in _refs(props[prop]):
                        sources.setdefault(ref, set()).add(prop)
            spec = props.get("LaunchTemplate")
            template = ref_name(spec.get("LaunchTemplateId")) if isinstance(spec, dict) else None
            if template in resources:
                for ref in _refs((resources[template].get("Properties") or {}).get("LaunchTemplateData")):
                    sources.setdefault(ref, set()).add(f"LaunchTemplate (version of {template})")
            own = {name, template}
            explained = ((resource.get("Metadata") or {}).get("gitlab-cfn") or {}).get("shared-by-design") or {}
            for param in sorted(p for p in sources if p in parameters and p != PARENT_STACK_NAME):
                props_named = ", ".join(sorted(sources[param]))
                why = None
                if str(parameters[param].get("Type", "")).startswith(SSM_TYPE):
                    why = "an SSM-typed parameter, resolved again on every update"
                elif param in shared:
                    why = f"shared in the parent stack ({shared[param]})"
                else:
                    users = sorted(other for other, res in resources.items()
                                   if other not in own and param in _refs(res))
                    if users and not str(explained.get(param) or "").strip():
                        why = f"also used by {', '.join(users)}"
                if why:
                    matches.append(RuleMatch(
                        ["Resources", name, "Properties"],
                        f"{name} holds data and its {props_named} hangs on parameter {param}, {why}: a new value "
                        "would replace the server with its data volume attached; give it a parameter of its own, "
                        "pinned"))
        return matches
