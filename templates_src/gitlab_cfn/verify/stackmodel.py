"""A built stack as CloudFormation would see it: nested stacks wired, values resolved.

The templates of a build are nested: a secret made in the database stack reaches the
application servers' user data through an output, the parent stack and a parameter, and
the policy granting it names the role through another output. The access and network
checks need to know that the ``DB_SECRET_ARN`` a server reads *is* the secret a policy
grants, so every value is resolved here across the stacks to a stand-in physical value,
the same wherever it travels:

- secrets, buckets, parameters, roles, instance profiles and keys get ARNs and names in a
  fake account (``ACCOUNT``, ``REGION``), unique per stack and logical id;
- every other resource a token ``<stack>/<LogicalId>`` (``Ref``) or
  ``<stack>/<LogicalId>#<Attribute>`` (``Fn::GetAtt``), which ``owner`` maps back;
- ports of RDS and ElastiCache endpoints are the resource's ``Port`` or the engine's default.

Parameters of the parent take their defaults, or a placeholder (``PLACEHOLDERS``) when they
have none; conditions are evaluated, and resources whose condition is false do not exist.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gitlab_cfn.errors import GitlabCfnError

ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"
ROOT_STACK = "gitlab"
# Parameters of the parent without a default.
PLACEHOLDERS = {
    "AvailabilityZones": ["us-east-1a", "us-east-1b", "us-east-1c"],
    "TemplateBucketName": "gitlab-cfn-templates-example",
    "TemplateBucketRegion": REGION,
    "DomainName": "gitlab.example.com",
    "GitSshCIDR": "203.0.113.0/24",
    "RemoteAccessCIDR": "198.51.100.0/24",
}
# Default ports of endpoints whose template sets none (RDS: engine defaults,
# docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html, "Port").
ENGINE_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379, "valkey": 6379}
NO_VALUE = object()


class ModelError(GitlabCfnError):
    pass


@dataclass
class Stack:
    name: str                    # stand-in stack name: gitlab, gitlab-DatabaseStack, ...
    file: str                    # templates/<file>
    template: dict
    parent: "Stack | None" = None
    logical_id: str = ""         # the AWS::CloudFormation::Stack resource in the parent
    params: dict[str, Any] = field(default_factory=dict)
    passed: dict[str, Any] = field(default_factory=dict)
    _conditions: dict[str, bool] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, dict]:
        return self.template.get("Resources") or {}


class Model:
    """Every stack of a build, and the resolution of any value in any of them."""

    def __init__(self, templates: dict[str, dict]):
        """``templates``: file name (``main.template.yaml``) -> decoded template."""
        self.templates = templates
        self.stacks: dict[str, Stack] = {}
        self.owners: dict[str, tuple[str, str]] = {}
        self._props: dict[tuple[str, str], dict] = {}
        self._refs: dict[str, tuple[Stack, str]] | None = None
        self._by_type: dict[str, list] | None = None
        main = [f for f, t in templates.items() if any(
            r.get("Type") == "AWS::CloudFormation::Stack" for r in (t.get("Resources") or {}).values())]
        if len(main) != 1:
            raise ModelError(f"expected one parent template, found {sorted(main)}")
        self.root = self._add(Stack(ROOT_STACK, main[0], templates[main[0]]))
        for name, param in (self.root.template.get("Parameters") or {}).items():
            if "Default" in param:
                value = param["Default"]
                self.root.params[name] = value.split(",") if _is_list(param) and isinstance(value, str) else value
            elif name in PLACEHOLDERS:
                self.root.params[name] = PLACEHOLDERS[name]
            else:
                self.root.params[name] = f"{name.lower()}-value"
        self._children(self.root)
        self._by_type = self._refs = None   # indexes start once every stack is known

    def _add(self, stack: Stack) -> Stack:
        self.stacks[stack.name] = stack
        return stack

    def _children(self, parent: Stack) -> None:
        for logical, resource in parent.resources.items():
            if resource.get("Type") != "AWS::CloudFormation::Stack" or not self.exists(parent, logical):
                continue
            url = json.dumps(resource["Properties"]["TemplateURL"])
            file = re.search(r"templates/([\w.-]+\.yaml)", url)
            if not file or file.group(1) not in self.templates:
                raise ModelError(f"{parent.file}: {logical}: nested template not in the build ({url})")
            child = self._add(Stack(f"{parent.name}-{logical}", file.group(1), self.templates[file.group(1)],
                                    parent, logical))
            child.passed = resource["Properties"].get("Parameters") or {}
            self._children(child)

    # -- conditions -------------------------------------------------------
    def condition(self, stack: Stack, name: str) -> bool:
        if name not in stack._conditions:
            stack._conditions[name] = bool(self.value(stack, stack.template["Conditions"][name]))
        return stack._conditions[name]

    def exists(self, stack: Stack, logical: str) -> bool:
        condition = stack.resources[logical].get("Condition")
        return condition is None or self.condition(stack, condition)

    def resources(self, kind: str | None = None) -> list[tuple[Stack, str, dict]]:
        """(stack, logical id, resource) of every resource that exists, of one type or all."""
        if self._by_type is None:
            self._by_type = {}
            for stack in self.stacks.values():
                for logical, resource in stack.resources.items():
                    if self.exists(stack, logical):
                        self._by_type.setdefault(resource.get("Type"), []).append((stack, logical, resource))
        if kind is None:
            return [r for found in self._by_type.values() for r in found]
        return list(self._by_type.get(kind, ()))

    def props(self, stack: Stack, logical: str) -> dict:
        """The resolved properties of a resource (resolved once: do not change the result)."""
        key = (stack.name, logical)
        if key not in self._props:
            self._props[key] = self.value(stack, stack.resources[logical].get("Properties") or {})
        return self._props[key]

    # -- values -----------------------------------------------------------
    def token(self, stack: Stack, logical: str) -> str:
        token = f"{stack.name}/{logical}"
        self.owners[token] = (stack.name, logical)
        return token

    def owner(self, value: str) -> tuple[Stack, str] | None:
        """The resource a token (or a token#attribute) stands for."""
        base = str(value).split("#", 1)[0]
        if base in self.owners:
            name, logical = self.owners[base]
            return self.stacks[name], logical
        if self._refs is None:
            self._refs = {}
            for stack, logical, _ in self.resources():
                ref = self.ref(stack, logical)
                if isinstance(ref, str):
                    self._refs.setdefault(ref, (stack, logical))
        return self._refs.get(value)

    def ref(self, stack: Stack, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack.name, "AWS::NoValue": NO_VALUE,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack.name}/0a1b2c3d",
        }
        if name in pseudo:
            return pseudo[name]
        if name in stack.params:
            return stack.params[name]
        declared = (stack.template.get("Parameters") or {}).get(name)
        if declared is not None and stack.parent is not None:
            if name in stack.passed:
                value = self.value(stack.parent, stack.passed[name])
            elif "Default" in declared:
                value = declared["Default"]
            else:
                raise ModelError(f"{stack.file}: parameter {name} has no value: {stack.parent.file} passes none")
            if _is_list(declared) and isinstance(value, str):
                value = value.split(",")
            stack.params[name] = value
            return value
        resource = stack.resources.get(name)
        if resource is None:
            raise ModelError(f"{stack.file}: Ref to {name}, which is neither a parameter nor a resource")
        if not self.exists(stack, name):
            return NO_VALUE
        kind = resource["Type"]
        physical = f"{stack.name}-{name}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{physical}-AbCdEf"
        if kind == "AWS::S3::Bucket":
            props = resource.get("Properties") or {}
            return self.value(stack, props["BucketName"]) if "BucketName" in props else physical.lower()
        if kind == "AWS::SSM::Parameter":
            props = resource.get("Properties") or {}
            return self.value(stack, props["Name"]) if "Name" in props else physical
        if kind in ("AWS::IAM::Role", "AWS::IAM::InstanceProfile", "AWS::KMS::Key"):
            return physical
        if kind in ("AWS::IAM::ManagedPolicy",):
            return f"arn:aws:iam::{ACCOUNT}:policy/{physical}"
        return self.token(stack, name)

    def get_att(self, stack: Stack, name: str, attribute: str) -> Any:
        resource = stack.resources.get(name)
        if resource is None:
            raise ModelError(f"{stack.file}: Fn::GetAtt of {name}, which is not a resource")
        kind = resource["Type"]
        if kind == "AWS::CloudFormation::Stack" and attribute.startswith("Outputs."):
            child = self.stacks[f"{stack.name}-{name}"]
            output = (child.template.get("Outputs") or {}).get(attribute.split(".", 1)[1])
            if output is None:
                raise ModelError(f"{stack.file}: {name}.{attribute}: {child.file} has no such output")
            return self.value(child, output["Value"])
        props = resource.get("Properties") or {}
        path = (stack.resources[name].get("Properties") or {}).get("Path", "/")
        if attribute == "Arn":
            if kind == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{self.ref(stack, name)}"
            if kind == "AWS::KMS::Key":
                return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.ref(stack, name)}"
            if kind == "AWS::IAM::Role":
                return f"arn:aws:iam::{ACCOUNT}:role{self.value(stack, path)}{self.ref(stack, name)}"
            if kind == "AWS::IAM::InstanceProfile":
                return f"arn:aws:iam::{ACCOUNT}:instance-profile{self.value(stack, path)}{self.ref(stack, name)}"
            if kind == "AWS::SecretsManager::Secret":
                return self.ref(stack, name)
        if kind == "AWS::EC2::SecurityGroup" and attribute == "GroupId":
            return self.ref(stack, name)
        if attribute.endswith(".Port") or attribute == "Port":
            if "Port" in props:
                return int(self.value(stack, props["Port"]))
            engine = str(self.value(stack, props.get("Engine", ""))).lower()
            if engine in ENGINE_PORTS:
                return ENGINE_PORTS[engine]
            raise ModelError(f"{stack.file}: {name}.{attribute}: no Port and no known engine default")
        return f"{self.token(stack, name)}#{attribute}"

    def value(self, stack: Stack, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(stack, n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, args), = node.items()
            if fn == "Ref":
                return self.ref(stack, args)
            if fn == "Fn::GetAtt":
                name, attribute = args if isinstance(args, list) else args.split(".", 1)
                return self.get_att(stack, name, attribute)
            if fn == "Fn::Sub":
                text, variables = (args, {}) if isinstance(args, str) else args
                values = {k: self.value(stack, v) for k, v in variables.items()}

                def replace(match: re.Match) -> str:
                    key = match.group(1)
                    if key in values:
                        return str(values[key])
                    if "." in key:
                        return str(self.get_att(stack, *key.split(".", 1)))
                    return str(self.ref(stack, key))
                return re.sub(r"\$\{([^}!]+)\}", replace, text).replace("${!", "${")
            if fn == "Fn::Join":
                sep, parts = args
                return sep.join(str(p) for p in self.value(stack, parts))
            if fn == "Fn::Select":
                index, items = args
                return self.value(stack, items)[int(self.value(stack, index))]
            if fn == "Fn::Split":
                sep, text = args
                return str(self.value(stack, text)).split(sep)
            if fn == "Fn::Base64":
                return self.value(stack, args)
            if fn == "Fn::GetAZs":
                return list(PLACEHOLDERS["AvailabilityZones"])
            if fn == "Fn::FindInMap":
                m, k1, k2 = (self.value(stack, a) for a in args)
                return stack.template["Mappings"][m][k1][k2]
            if fn == "Fn::If":
                condition, yes, no = args
                return self.value(stack, yes if self.condition(stack, condition) else no)
            if fn == "Fn::Equals":
                a, b = (self.value(stack, a) for a in args)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.value(stack, args[0])
            if fn == "Fn::And":
                return all(self.value(stack, a) for a in args)
            if fn == "Fn::Or":
                return any(self.value(stack, a) for a in args)
            if fn == "Condition":
                return self.condition(stack, args)
            if fn.startswith("Fn::"):
                raise ModelError(f"{stack.file}: {fn} is not modelled")
        out = {}
        for k, v in node.items():
            v = self.value(stack, v)
            if v is not NO_VALUE:
                out[k] = v
        return out


def _is_list(param: dict) -> bool:
    kind = param.get("Type", "")
    return kind.startswith("List<") or kind == "CommaDelimitedList"

