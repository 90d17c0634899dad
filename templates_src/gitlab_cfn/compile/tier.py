"""A nested template under construction, and what it declares to the parent.

A tier is a function ``build(tier: Tier) -> None`` that adds resources to a
``Tier``. Inside it, values come from three places only:

- ``tier.param(name)``: a user-facing parameter from ``catalog`` (the parent
  declares the same parameter and passes it down);
- ``tier.input(name)``: the output of the same name of another tier;
- the build config, ``tier.cfg``, for choices that change the template's shape.

What the tier produces for others is ``tier.output(name, value)``; outputs
marked ``public`` are repeated by the parent for the person who launched it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from troposphere import AWSObject, Output, Parameter, Ref, Template

from gitlab_cfn.compile.catalog import ParamSpec
from gitlab_cfn.compile.config import BuildConfig
from gitlab_cfn.compile.naming import PARENT_STACK_NAME, input_type

STATEFUL_POLICIES = ("Retain", "Snapshot")


@dataclass
class Tier:
    name: str
    cfg: BuildConfig
    specs: dict[str, ParamSpec]
    description: str = ""
    template: Template = field(init=False)
    user_params: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    public_outputs: dict[str, str] = field(default_factory=dict)
    # Condition (name, parent parameter, value that disables the tier).
    skip_when: tuple[str, str, str] | None = None

    def __post_init__(self):
        self.template = Template(Description=self.description or f"gitlab-cfn {self.name} tier")
        self.template.set_version("2010-09-09")

    # -- values in -------------------------------------------------------------------
    def param(self, name: str) -> Ref:
        """A user-facing parameter, defined in the catalog."""
        if name not in self.template.parameters:
            spec = self.specs.get(name)
            if spec is None:
                raise KeyError(f"{self.name}: parameter {name!r} is not in the catalog for this build")
            self.template.add_parameter(Parameter(name, **spec.for_child().as_properties()))
            self.user_params.append(name)
        return Ref(name)

    def input(self, name: str, description: str = "") -> Ref:
        """A value produced by another tier's output of the same name."""
        if name not in self.template.parameters:
            self.template.add_parameter(Parameter(
                name, Type=input_type(name),
                Description=description or f"{name}, passed in by the parent stack."))
            self.inputs.append(name)
        return Ref(name)

    def stack_name(self) -> Ref:
        """The parent stack's name: prefixes Name tags and descriptions."""
        return self.input(PARENT_STACK_NAME, "Name of the parent stack, for tags.")

    # -- resources -------------------------------------------------------------------
    def add(self, resource: AWSObject) -> AWSObject:
        return self.template.add_resource(resource)

    def keep(self, resource: AWSObject, policy: str = "Retain") -> AWSObject:
        """Add a resource that holds data: never lost to a stack update or deletion."""
        if policy not in STATEFUL_POLICIES:
            raise ValueError(f"policy must be one of {STATEFUL_POLICIES}")
        resource.DeletionPolicy = policy
        resource.UpdateReplacePolicy = policy
        return self.add(resource)

    # -- values out ------------------------------------------------------------------
    def output(self, name: str, value: Any, description: str, public: bool = False) -> None:
        self.template.add_output(Output(name, Value=value, Description=description))
        if public:
            self.public_outputs[name] = description

    @property
    def outputs(self) -> list[str]:
        return list(self.template.outputs)


def gitlab_roles(tier: Tier) -> list:
    """The roles of the GitLab servers that read the services' secrets (database, Redis,
    Gitaly): the application servers', and the Sidekiq servers' when they have their own."""
    roles = [tier.input("InstanceRoleName")]
    if tier.cfg.sidekiq_group:
        roles.append(tier.input("SidekiqRoleName"))
    return roles


def suppress(resource: AWSObject, rule: str, reason: str) -> None:
    """Silence one cfn-lint rule on one resource, with the reason written beside it.

    ``lint`` refuses a suppression that has no reason, so every silenced finding
    is explained in the template a reviewer reads.
    """
    if not reason.strip():
        raise ValueError("a suppression needs a reason")
    metadata = getattr(resource, "Metadata", None) or {}
    ignored = metadata.setdefault("cfn-lint", {}).setdefault("config", {}).setdefault("ignore_checks", [])
    ignored.append(rule)
    metadata.setdefault("gitlab-cfn", {}).setdefault("suppressions", {})[rule] = reason
    resource.Metadata = metadata


def scanner_skip(resource: AWSObject, check: str, reason: str) -> None:
    """Skip one checkov check on one resource, with the reason beside it.

    ``gitlab-cfn check`` accepts the skip only if the check and the resource are
    on the allowlist (``gitlab_cfn/data/checkov-allowlist.yaml``).
    """
    if not reason.strip():
        raise ValueError("a scanner skip needs a reason")
    metadata = getattr(resource, "Metadata", None) or {}
    metadata.setdefault("checkov", {}).setdefault("skip", []).append({"id": check, "comment": reason})
    resource.Metadata = metadata


def generated_secret(tier: Tier, logical_id: str, what: str, tag: str, key: str = "token", length: int = 64,
                     username: str | None = None) -> AWSObject:
    """A kept secret ``{[username,] <key>: <letters and digits>}`` generated by Secrets
    Manager, encrypted with the stack's key. Letters and digits only: safe in RDS, in
    gitlab.rb and in a URL."""
    import json

    from troposphere import Sub, secretsmanager

    from gitlab_cfn.compile.naming import tags

    return tier.keep(secretsmanager.Secret(
        logical_id,
        Description=Sub(f"GitLab {what} of stack ${{ParentStackName}}"),
        KmsKeyId=tier.input("KmsKeyArn"),
        GenerateSecretString=secretsmanager.GenerateSecretString(
            SecretStringTemplate=json.dumps({"username": username} if username else {}),
            GenerateStringKey=key,
            PasswordLength=length,
            ExcludePunctuation=True,
        ),
        Tags=tags(tag),
    ))


def token_secret(tier: Tier, logical_id: str, what: str, tag: str) -> AWSObject:
    """``{"token": <64 letters and digits>}``: for AUTH tokens and shared service secrets."""
    return generated_secret(tier, logical_id, what, tag)
