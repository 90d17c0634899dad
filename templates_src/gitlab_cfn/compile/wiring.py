"""The parent template: one nested stack per tier, wired by name.

Every parameter of every child is fed from exactly one place, looked up by
name: the parent stack's name (``ParentStackName``), the output of the same
name of another tier, or the parent parameter of the same name declared from
the catalog. A child parameter with no source, two tiers producing one output,
or a tier reading an output of a stack that may not exist is a build error,
so a wiring mistake never reaches CloudFormation.

Template URLs are built as the AWS Quick Starts build them:
``https://<bucket>.s3.<region>.<URLSuffix>/<prefix>templates/<tier>.template.yaml``.
"""

from __future__ import annotations

import itertools

from troposphere import (
    Equals,
    GetAtt,
    Join,
    Not,
    Or,
    Output,
    Parameter,
    Ref,
    Sub,
    Template,
    cloudformation,
)

from gitlab_cfn.compile.catalog import GROUPS, SSM_TYPE_PREFIX, ParamSpec, restore_rules
from gitlab_cfn.compile.config import BuildConfig
from gitlab_cfn.compile.naming import PARENT_STACK_NAME, stack_id, template_key
from gitlab_cfn.compile.tier import Tier

LOCATION_PARAMETERS = ("TemplateBucketName", "TemplateKeyPrefix", "TemplateBucketRegion")


class WiringError(Exception):
    """The tiers do not fit together: a bug in the compiler, not in the user's input."""


# Where the published templates are, from the location parameters (for Fn::Sub).
PUBLISHED = "https://${TemplateBucketName}.s3.${TemplateBucketRegion}.${AWS::URLSuffix}/${TemplateKeyPrefix}"


def template_url(tier: str) -> Sub:
    return Sub(PUBLISHED + template_key(tier))


def _producers(tiers: list[Tier]) -> dict[str, Tier]:
    producers: dict[str, Tier] = {}
    for tier in tiers:
        for name in tier.outputs:
            if name in producers:
                raise WiringError(f"output {name} is produced by both {producers[name].name} and {tier.name}")
            producers[name] = tier
    return producers


def _rules(cfg: BuildConfig, declared: set[str]) -> dict:
    rules = {}
    if "RemoteAccessCIDR" in declared:
        rules["BastionNotOpenToTheWorld"] = {"Assertions": [{
            "Assert": Not(Equals(Ref("RemoteAccessCIDR"), "0.0.0.0/0")),
            "AssertDescription": "RemoteAccessCIDR must not be 0.0.0.0/0: give the range administrators connect from.",
        }]}
    if {"EmailSender", "EmailSmtpSecretArn"} <= declared:
        # A given SMTP secret replaces the credentials the stack makes for a sender (compile/email.py).
        rules["SmtpSecretNeedsSender"] = {"Assertions": [{
            "Assert": Or(Equals(Ref("EmailSmtpSecretArn"), ""), Not(Equals(Ref("EmailSender"), ""))),
            "AssertDescription": "EmailSmtpSecretArn needs EmailSender: give the sender, or leave the secret empty.",
        }]}
    subnets = [f"{kind}Subnet{i}Cidr" for i in range(1, cfg.az_count + 1) for kind in ("Public", "Private")]
    rules["SubnetCidrsDistinct"] = {"Assertions": [
        {
            "Assert": Not(Equals(Ref(a), Ref(b))),
            "AssertDescription": f"{a} and {b} must be different CIDR blocks.",
        }
        for a, b in itertools.combinations(subnets, 2)
    ]}
    rules.update(restore_rules(declared))
    return rules


def _interface(specs: dict[str, ParamSpec], declared: list[str]) -> dict:
    groups = []
    for group in GROUPS:
        names = [n for n in specs if n in declared and specs[n].group == group]
        if names:
            groups.append({"Label": {"default": group}, "Parameters": names})
    labels = {n: {"default": specs[n].label} for n in specs if n in declared}
    return {"AWS::CloudFormation::Interface": {"ParameterGroups": groups, "ParameterLabels": labels}}


def _mark_shared_parameters(tiers: list[Tier], specs: dict[str, ParamSpec], feeds: dict[str, list[str]]) -> None:
    """Tell each child which of its parameters change for other reasons than its own:
    SSM-typed in the parent (resolved again on every update) or passed to several
    stacks. A child template alone cannot see this; lint rule E9010 reads it to refuse
    a server holding data that such a parameter would replace."""
    for tier in tiers:
        shared = {}
        for name in tier.user_params:
            reasons = []
            if specs[name].type.startswith(SSM_TYPE_PREFIX):
                reasons.append(f"SSM-typed: {specs[name].type}")
            others = [t for t in feeds.get(name, []) if t != tier.name]
            if others:
                reasons.append(f"also passed to {', '.join(others)}")
            if reasons:
                shared[name] = "; ".join(reasons)
        if shared:
            tier.template.set_metadata({"gitlab-cfn": {"shared-parameters": shared}})


def build_parent(cfg: BuildConfig, tiers: list[Tier], specs: dict[str, ParamSpec]) -> Template:
    parent = Template(Description=(
        "gitlab-cfn: self-managed GitLab on AWS (VPC, load balancer, RDS PostgreSQL, "
        "ElastiCache Redis, S3, Gitaly, Auto Scaling group). Needs CAPABILITY_IAM and "
        "CAPABILITY_AUTO_EXPAND."))
    parent.set_version("2010-09-09")
    producers = _producers(tiers)
    declared: list[str] = []

    def declare(name: str) -> None:
        if name not in declared:
            declared.append(name)

    for name in LOCATION_PARAMETERS:
        declare(name)

    stacks = {}
    feeds: dict[str, list[str]] = {}   # parent parameter -> the tiers it is passed to
    for tier in tiers:
        values = {}
        for name, child_param in tier.template.parameters.items():
            if name == PARENT_STACK_NAME:
                values[name] = Ref("AWS::StackName")
            elif name in producers:
                source = producers[name]
                if source is tier:
                    raise WiringError(f"{tier.name}: parameter {name} is fed by its own output")
                if source.skip_when:
                    raise WiringError(f"{tier.name}: reads {name} from {source.name}, which may not exist")
                values[name] = GetAtt(stack_id(source.name), f"Outputs.{name}")
            elif name in specs:
                declare(name)
                feeds.setdefault(name, []).append(tier.name)
                ref = Ref(name)
                values[name] = Join(",", ref) if specs[name].type.startswith("List<") else ref
            else:
                raise WiringError(f"{tier.name}: parameter {name} has no source")
        stack = cloudformation.Stack(
            stack_id(tier.name), TemplateURL=template_url(tier.name), Parameters=values,
            # The stack itself may go; what it holds does not: every data resource
            # inside a child carries its own Retain or Snapshot policy.
            DeletionPolicy="Delete", UpdateReplacePolicy="Delete")
        if tier.skip_when:
            condition, param, empty = tier.skip_when
            declare(param)
            parent.add_condition(condition, Not(Equals(Ref(param), empty)))
            stack.Condition = condition
        stacks[tier.name] = parent.add_resource(stack)

    _mark_shared_parameters(tiers, specs, feeds)
    order = {name: i for i, name in enumerate(specs)}
    for name in sorted(declared, key=lambda n: order[n]):
        parent.add_parameter(Parameter(name, **specs[name].as_properties()))
    parent.set_metadata(_interface(specs, declared))
    for name, rule in _rules(cfg, set(declared)).items():
        parent.add_rule(name, rule)

    for tier in tiers:
        for name, description in tier.public_outputs.items():
            output = Output(name, Description=description,
                            Value=GetAtt(stacks[tier.name], f"Outputs.{name}"))
            if tier.skip_when:
                output.Condition = tier.skip_when[0]
            parent.add_output(output)
    return parent
