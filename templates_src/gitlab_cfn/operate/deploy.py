"""Deploying a build: the same code path against AWS and against the local stand-in.

1. Check the parameter values against the parent template's own constraints
   (types, patterns, allowed values, lengths, evaluable Rules) and report every
   violation before anything is sent.
2. Upload the build to S3 with the key layout the parent's TemplateURLs compute.
3. Create the stack from its TemplateURL, or update it through a change set that
   is shown first and refused when it would replace a resource holding data.
4. Show the parent's and every nested stack's progress while waiting; on failure
   name the first failing resource of the deepest failing nested stack.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitlab_cfn import __version__
from gitlab_cfn.compile import catalog as param_catalog
from gitlab_cfn.compile import config as build_config
from gitlab_cfn.compile.catalog import GITLAB_AMI_PARAMETER
from gitlab_cfn.compile.compiler import product_entries, read_manifest, stack_files
from gitlab_cfn.compile.constraints import violations
from gitlab_cfn.compile.naming import template_url
from gitlab_cfn.errors import CheckFailed, ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate import smtp_upgrade
from gitlab_cfn.operate.bake import VERSION_TAG
from gitlab_cfn.operate.progress import Progress
from gitlab_cfn.verify.replacement import holds_data

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
LOCATION = ("TemplateBucketName", "TemplateKeyPrefix", "TemplateBucketRegion")
TERMINAL_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
TERMINAL_FAILED = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED",
                   "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "UPDATE_FAILED"}
FAILED_EVENT = re.compile(r"(CREATE|UPDATE|DELETE)_FAILED")
EMBEDDED = re.compile(r"Embedded stack (arn:aws[\w-]*:cloudformation:[^ ]+) was not successfully")


# -- parameters ---------------------------------------------------------------------------------

def load_params(path: str | Path | None, inline: list[str] | None = None) -> dict[str, str]:
    """Parameter values from a file and from ``--param Key=Value`` (which win over the file).

    The file is JSON or YAML in one of the shapes the AWS tools use: a mapping
    ``{"Key": "value"}``; ``{"Parameters": {"Key": "value"}}`` (the file of ``aws
    cloudformation deploy --parameter-overrides file://...`` and of taskcat's
    ``parameters``); or CloudFormation's ``[{"ParameterKey": .., "ParameterValue": ..}]``
    (``aws cloudformation create-stack --parameters file://...``). A key given twice
    is refused, in the file and inline."""
    from gitlab_cfn.compile import strict_yaml

    values: dict[str, str] = {}
    if path is not None:
        try:
            data = strict_yaml.load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"--params: cannot read {path}: {exc.strerror}") from None
        except strict_yaml.DuplicateKey as exc:
            raise ConfigError(f"--params: {path}: {exc.problem}; each parameter may be given once") from None
        except (yaml.YAMLError, UnicodeDecodeError):
            raise ConfigError(f"--params: {path} is neither JSON nor YAML") from None
        if isinstance(data, dict) and set(data) == {"Parameters"} and isinstance(data["Parameters"], dict):
            data = data["Parameters"]
        if isinstance(data, list):
            if not all(isinstance(p, dict) and "ParameterKey" in p and "ParameterValue" in p for p in data):
                raise ConfigError("--params: a list must hold {ParameterKey, ParameterValue} items")
            keys = [str(p["ParameterKey"]) for p in data]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise ConfigError(f"--params: {path}: ParameterKey {', '.join(twice)} given twice; "
                                  "each parameter may be given once")
            data = {str(p["ParameterKey"]): p["ParameterValue"] for p in data}
        if not isinstance(data, dict):
            raise ConfigError(f"--params: {path} must be a mapping of parameter names to values, "
                              '{"Parameters": {...}}, or a [{ParameterKey, ParameterValue}] list')
        values = {str(k): _text(str(k), v, "--params") for k, v in data.items()}
    seen: set[str] = set()
    for item in inline or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param: {item!r} is not KEY=VALUE (for example --param DomainName=gitlab.example.com)")
        if key in seen:
            raise ConfigError(f"--param: {key} given twice; each parameter may be given once")
        seen.add(key)
        values[key] = value
    return values


def _text(name: str, value: Any, source: str = "--params") -> str:
    """A parameter value as CloudFormation takes it: a string (a list joins with commas)."""
    if isinstance(value, list):
        if any(isinstance(v, (dict, list)) for v in value):
            raise ConfigError(f"{source}: {name}: a list of mappings or lists; a parameter value is a string "
                              "or a list of strings (joined with commas)")
        return ",".join(_text(name, v, source) for v in value)
    if isinstance(value, dict):
        raise ConfigError(f"{source}: {name}: a mapping; a parameter value is a string, a number "
                          "or a list of strings")
    if value is None:
        raise ConfigError(f"{source}: {name}: no value; give a string (\"\" for an empty one)")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _rule_value(node: Any, params: dict[str, str]) -> Any:
    if isinstance(node, dict) and len(node) == 1:
        (fn, args), = node.items()
        if fn == "Ref":
            return params.get(args)
        if fn == "Fn::Equals":
            a, b = (_rule_value(x, params) for x in args)
            return None if a is None or b is None else a == b
        if fn == "Fn::Not":
            inner = _rule_value(args[0] if isinstance(args, list) else args, params)
            return None if inner is None else not inner
        if fn in ("Fn::And", "Fn::Or"):
            values = [_rule_value(x, params) for x in args]
            if None in values:
                return None
            return all(values) if fn == "Fn::And" else any(values)
        if fn == "Fn::Contains":
            items, item = args
            items = [_rule_value(i, params) for i in items]
            item = _rule_value(item, params)
            return None if item is None or None in items else item in items
        return None
    return node


def check_params(template: dict, params: dict[str, str], az_count: int | None = None,
                 elsewhere: set[str] = frozenset(), region: str | None = None) -> list[str]:
    """Every way the values break the parent template's constraints; empty when they fit.

    ``elsewhere``: names whose values come from elsewhere (the stack's previous values,
    the SSM image parameter); they count as given and are not checked here."""
    definitions = template.get("Parameters", {})
    problems = [f"{name}: not a parameter of this template (allowed: {', '.join(sorted(definitions))})"
                for name in params if name not in definitions]
    values = {}
    for name, definition in definitions.items():
        if name in params:
            value = params[name]
        elif name in elsewhere:
            continue
        elif "Default" in definition:
            value = str(definition["Default"])
        else:
            problems.append(f"{name}: required, no value given ({definition.get('Description', '')})")
            continue
        values[name] = value
        problems += violations(name, definition, value)
        if definition.get("Type") == "List<AWS::EC2::AvailabilityZone::Name>":
            zones = [z.strip() for z in value.split(",") if z.strip()]
            bad = [z for z in zones if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d[a-z]", z)]
            if bad:
                problems.append(f"{name}: not Availability Zone names: {', '.join(bad)}")
            # An Availability Zone name is its region's name and a letter (eu-west-1a).
            other = [z for z in zones if z not in bad and region and z[:-1] != region]
            if other:
                problems.append(f"{name}: {', '.join(other)} not in region {region}; give zones of {region} "
                                f"({region}a, {region}b, ...)")
            if az_count and len(zones) != az_count:
                problems.append(f"{name}: exactly {az_count} Availability Zones are needed (got {len(zones)})")
            if len(set(zones)) != len(zones):
                problems.append(f"{name}: each Availability Zone may be given once")
    for rule_name, rule in (template.get("Rules") or {}).items():
        # A rule applies only when its RuleCondition holds (CloudFormation User Guide, "Template rules").
        if "RuleCondition" in rule and _rule_value(rule["RuleCondition"], values) is not True:
            continue
        for assertion in rule.get("Assertions", []):
            if _rule_value(assertion["Assert"], values) is False:
                problems.append(f"{rule_name}: {assertion.get('AssertDescription', 'rule not satisfied')}")
    return problems


# -- upload -------------------------------------------------------------------------------------

def ensure_bucket(s3, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied"):
            raise ConfigError(f"--bucket: no access to bucket {bucket}") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def upload_build(s3, build_dir: Path, bucket: str, prefix: str) -> list[str]:
    """Upload the GitLab stack's templates under ``<prefix>templates/``, and the files that
    go with them (the boot bundle, under ``<prefix>scripts/``); return the templates' keys."""
    manifest = read_manifest(build_dir)
    for entry in stack_files(manifest):
        s3.put_object(Bucket=bucket, Key=f"{prefix}{entry['path']}", Body=(build_dir / entry["path"]).read_bytes(),
                      ContentType="application/gzip")
    keys = []
    for entry in product_entries(manifest).values():
        key = f"{prefix}{entry['path']}"
        s3.put_object(Bucket=bucket, Key=key, Body=(build_dir / entry["path"]).read_bytes(),
                      ContentType="application/x-yaml")
        keys.append(key)
    return keys


def build_digest(manifest: dict) -> str:
    """12 hex digits that change whenever any template of the build changes."""
    import hashlib

    joined = "".join(f"{name}:{e['sha256']}" for name, e in sorted(product_entries(manifest).items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


# -- watching -----------------------------------------------------------------------------------

@dataclass
class StackState:
    name: str
    status: str
    complete: int
    total: int

    def line(self) -> str:
        return f"{self.name:<48} {self.status:<28} {self.complete}/{self.total} resources"


def _stack_state(cfn, stack_id: str) -> tuple[StackState, list[str]]:
    stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    try:
        resources = cfn.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
    except Exception:  # a stack being created may not list resources yet
        resources = []
    done = sum(1 for r in resources if r.get("ResourceStatus", "").endswith("_COMPLETE"))
    children = [r["PhysicalResourceId"] for r in resources
                if r["ResourceType"] == "AWS::CloudFormation::Stack" and r.get("PhysicalResourceId")]
    return StackState(stack["StackName"], stack["StackStatus"], done, len(resources)), children


def stack_states(cfn, stack_id: str) -> list[StackState]:
    states, queue = [], [stack_id]
    while queue:
        current = queue.pop(0)
        try:
            state, children = _stack_state(cfn, current)
        except Exception:
            continue
        states.append(state)
        queue += children
    return states


def nested_resources(cfn, stack_id: str) -> list[tuple[str, dict]]:
    """(stack id, resource summary) of every resource of a stack and its nested stacks, parent first."""
    found, queue = [], [stack_id]
    while queue:
        current = queue.pop(0)
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=current):
            for r in page["StackResourceSummaries"]:
                found.append((current, r))
                if r["ResourceType"] == "AWS::CloudFormation::Stack" and r.get("PhysicalResourceId"):
                    queue.append(r["PhysicalResourceId"])
    return found


class Watcher:
    """Redraws every stack's status on a terminal; prints a line per change otherwise."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.shown: dict[str, str] = {}
        self.drawn = 0

    def show(self, states: list[StackState]) -> None:
        if self.progress.quiet:
            return
        stream = self.progress.stream
        if self.progress.live:
            if self.drawn:
                stream.write(f"\x1b[{self.drawn}F\x1b[J")
            for state in states:
                stream.write(state.line() + "\n")
            self.drawn = len(states)
            stream.flush()
            return
        for state in states:
            line = state.line()
            if self.shown.get(state.name) != line:
                self.progress.done(line)
                self.shown[state.name] = line


def wait(cfn, stack_id: str, progress: Progress, poll: float, timeout: float) -> str:
    watcher = Watcher(progress)
    deadline = time.monotonic() + timeout
    while True:
        states = stack_states(cfn, stack_id)
        watcher.show(states)
        status = states[0].status if states else "UNKNOWN"
        if status in TERMINAL_OK or status in TERMINAL_FAILED:
            return status
        if time.monotonic() > deadline:
            raise CheckFailed(f"stack {stack_id} still {status} after {timeout / 60:.0f} minutes")
        time.sleep(poll)


@dataclass
class Failure:
    stack: str
    logical_id: str
    resource_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.logical_id} ({self.resource_type}) in stack {self.stack}: {self.reason}"


def first_failure(cfn, stack_id: str) -> Failure | None:
    """The first failing resource, following failed nested stacks down to the deepest one."""
    seen = set()
    failure = None
    while stack_id and stack_id not in seen:
        seen.add(stack_id)
        events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
        events = sorted(enumerate(events), key=lambda p: (p[1].get("Timestamp"), -p[0]))
        stack_name = next((e["StackName"] for _, e in events), stack_id)
        candidates = [e for _, e in events if FAILED_EVENT.fullmatch(e.get("ResourceStatus", ""))
                      and e.get("LogicalResourceId") != e.get("StackName")
                      and "cancelled" not in (e.get("ResourceStatusReason") or "")]
        if not candidates:
            break
        event = candidates[0]
        failure = Failure(stack_name, event["LogicalResourceId"], event.get("ResourceType", ""),
                          event.get("ResourceStatusReason") or "")
        nested = EMBEDDED.search(failure.reason)
        if event.get("ResourceType") == "AWS::CloudFormation::Stack":
            stack_id = nested.group(1) if nested else event.get("PhysicalResourceId")
        else:
            break
    return failure


# -- deploy -------------------------------------------------------------------------------------

@dataclass
class DeployRequest:
    stack_name: str
    region: str
    build_dir: Path = Path("build")
    params: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    prefix: str | None = None
    allow_replace: set[str] = field(default_factory=set)
    assume_yes: bool = False
    # Only ``upgrade`` moves the servers to another GitLab version (see version_guard).
    version_change: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    role_arn: str | None = None
    poll: float = 10.0
    timeout: float = 120 * 60


@dataclass
class DeployResult:
    stack_id: str
    status: str
    outputs: dict[str, str]
    changes: list[dict] = field(default_factory=list)
    reused: dict[str, str] = field(default_factory=dict)   # previous values an update kept


def _parent_template(build_dir: Path) -> tuple[dict, dict]:
    manifest = read_manifest(build_dir)
    path = build_dir / manifest["templates"]["main"]["path"]
    return yaml.safe_load(path.read_text()), manifest


def _existing(cfn, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def image_parameters(template: dict) -> list[str]:
    """Parameters filled from the SSM image parameter when not given: image ids named ``*AmiId``."""
    return [name for name, d in (template.get("Parameters") or {}).items()
            if d.get("Type") == "AWS::EC2::Image::Id" and name.endswith("AmiId")]


def image_parameter_name(template: dict, params: dict[str, str]) -> str:
    """The SSM parameter the stack's GitLab image comes from: ``GitLabAmiId`` as given,
    else its default, else the one ``bake-ami`` writes."""
    given = params.get("GitLabAmiId")
    definition = (template.get("Parameters") or {}).get("GitLabAmiId", {})
    if given and str(definition.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
        return given
    return definition.get("Default", GITLAB_AMI_PARAMETER) if "Default" in definition else GITLAB_AMI_PARAMETER


def _ssm_image(aws: Aws, region: str, names: list[str], parameter: str = GITLAB_AMI_PARAMETER) -> str:
    from botocore.exceptions import ClientError

    try:
        return aws.client("ssm", region).get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
            raise
    raise ConfigError(f"{', '.join(names)}: not given, and SSM parameter {parameter} does not exist "
                      f"in {region}; bake an image first (gitlab-cfn bake-ami) or give the image id in --params")


def check_ssm_parameters(aws: Aws, region: str, definitions: dict, params: dict[str, str]) -> None:
    """Every SSM parameter a parameter of SSM type names exists, before anything is uploaded.

    CloudFormation resolves them when the stack is created or updated and fails the
    whole operation on a missing one ("Parameters [NAME] referenced by template have
    types not supported by CloudFormation" / "Unable to fetch parameters"; User Guide,
    "Specify existing resources at runtime with CloudFormation-supplied parameter types")."""
    from botocore.exceptions import ClientError

    ssm = None
    for name, definition in definitions.items():
        if not str(definition.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
            continue
        source = params.get(name) or definition.get("Default")
        if not source:
            continue
        ssm = ssm or aws.client("ssm", region)
        try:
            ssm.get_parameter(Name=source)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise
            raise ConfigError(f"{name}: SSM parameter {source} does not exist in {region}; nothing was uploaded; "
                              "bake an image first (gitlab-cfn bake-ami) or give another parameter name "
                              f"(--param {name}=/path/of/parameter)") from None


def image_version(ec2, image: str) -> str | None:
    """The GitLab version an image was baked with (its tag), or None (not ours, or gone)."""
    from botocore.exceptions import ClientError

    try:
        images = ec2.describe_images(ImageIds=[image])["Images"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
            return None
        raise
    tags = {t["Key"]: t["Value"] for t in (images[0].get("Tags") or [])} if images else {}
    return tags.get(VERSION_TAG)


def version_guard(aws: Aws, region: str, existing: dict, template: dict, params: dict[str, str],
                  progress: Progress) -> None:
    """Refuse an update that would move the GitLab servers to another GitLab version.

    ``GitLabAmiId`` is an SSM parameter type: CloudFormation reads the parameter again on
    every update, even with UsePreviousValue (CloudFormation User Guide, "Parameters",
    SSM parameter types). After a bake, any deploy would roll the servers onto the new
    version without upgrading Gitaly first or running the post-deployment migrations
    afterwards; that is ``gitlab-cfn upgrade``'s work.
    """
    if "GitLabAmiId" not in (template.get("Parameters") or {}):
        return
    running = {p["ParameterKey"]: p for p in existing.get("Parameters", [])}.get("GitLabAmiId", {})
    before = running.get("ResolvedValue")
    if not before:
        return
    name = params.get("GitLabAmiId") or running.get("ParameterValue") or GITLAB_AMI_PARAMETER
    after = _ssm_image(aws, region, ["GitLabAmiId"], name)
    if after == before:
        return
    ec2 = aws.client("ec2", region)
    old, new = image_version(ec2, before), image_version(ec2, after)
    if old and new and old != new:
        raise ConfigError(f"GitLabAmiId: SSM parameter {name} now names {after} (GitLab {new}), the stack runs "
                          f"{before} (GitLab {old}); nothing was changed; move GitLab with gitlab-cfn upgrade "
                          f"--stack-name {existing['StackName']} --region {region} --gitlab-version {new}")
    what = f"GitLab {new}, as before" if old and new else "GitLab version unknown: the image has no " \
                                                            f"{VERSION_TAG} tag"
    progress.done(f"GitLabAmiId: {name} now names {after} ({what}); the GitLab servers will roll onto it")


@dataclass
class ResourceChange:
    """One row of a (nested) change set."""

    stack: str          # the tier (``main`` for the parent)
    action: str
    logical_id: str
    type: str
    replacement: str
    physical_id: str = ""
    causes: list[str] = field(default_factory=list)
    holds_data: bool = False
    allowed: bool = False

    @property
    def name(self) -> str:
        return f"{self.stack}:{self.logical_id}"

    @property
    def loses_data(self) -> bool:
        """Replaced (surely or possibly) or removed, and it holds data."""
        return self.holds_data and (self.action == "Remove" or self.replacement in ("True", "Conditional"))

    def line(self) -> str:
        replacement = {"True": "REPLACED", "Conditional": "MAY BE REPLACED"}.get(self.replacement, "")
        marks = [m for m in (replacement, "holds data" if self.holds_data else "",
                             "allowed" if self.allowed and self.loses_data else "") if m]
        mark = f" [{', '.join(marks)}]" if marks else ""
        why = f": {'; '.join(self.causes)}" if self.causes else ""
        return f"{self.stack}: {self.action:<7} {self.logical_id} ({self.type}){mark}{why}"

    def as_dict(self) -> dict:
        return {"stack": self.stack, "action": self.action, "logical_id": self.logical_id, "type": self.type,
                "replacement": self.replacement, "causes": self.causes, "holds_data": self.holds_data}


def _causes(details: list[dict]) -> list[str]:
    """What changes and why, from a change's Details: ``DBName (create-only, changed)``."""
    found: list[str] = []
    for detail in details:
        target = detail.get("Target") or {}
        what = target.get("Name") or target.get("Attribute", "")
        source, causing = detail.get("ChangeSource", ""), detail.get("CausingEntity")
        if source == "Automatic":
            continue
        if source == "ParameterReference":
            why = f"parameter {causing}"
        elif source in ("ResourceReference", "ResourceAttribute"):
            why = f"refers to {causing}"
        elif source == "DirectModification" and detail.get("Evaluation") == "Dynamic":
            continue
        else:
            why = "changed"
        requires = {"Always": "create-only, ", "Conditionally": "may replace, "}.get(target.get("RequiresRecreation"), "")
        text = f"{what} ({requires}{why})"
        if text not in found:
            found.append(text)
    return found


def change_set_rows(cfn, change_set_id: str, allow: set[str], tier: str = "main") -> list[ResourceChange]:
    """Every resource change of a change set and of the nested change sets it names, depth first.

    On AWS a change set created with IncludeNestedStacks lists only the nested
    stacks at the root; each one's changes are in its own change set
    (``ResourceChange.ChangeSetId``; botocore cloudformation service model,
    "Change sets for nested stacks" in the CloudFormation User Guide)."""
    from gitlab_cfn.compile.naming import TIERS
    from gitlab_cfn.compile.naming import stack_id as tier_stack_id

    tiers = {tier_stack_id(t): t for t in TIERS}
    rows: list[ResourceChange] = []
    token = None
    while True:
        kwargs = {"ChangeSetName": change_set_id}
        if token:
            kwargs["NextToken"] = token
        page = cfn.describe_change_set(**kwargs)
        for change in page.get("Changes", []):
            rc = change.get("ResourceChange", {})
            logical, kind = rc.get("LogicalResourceId", ""), rc.get("ResourceType", "")
            nested = rc.get("ChangeSetId")
            if kind == "AWS::CloudFormation::Stack" and nested:
                child = tiers.get(logical, logical)
                rows += change_set_rows(cfn, nested, allow, child)
                continue
            row = ResourceChange(tier, rc.get("Action", ""), logical, kind, rc.get("Replacement") or "False",
                                 rc.get("PhysicalResourceId") or "", _causes(rc.get("Details") or []),
                                 holds_data(logical, kind))
            row.allowed = logical in allow or row.name in allow
            rows.append(row)
        token = page.get("NextToken")
        if not token:
            return rows


def change_summary(rows: list[ResourceChange]) -> str:
    """``3 Add, 2 Modify (1 replaced), 0 Remove in 2 stacks (app, cache)``."""
    n = {a: sum(1 for r in rows if r.action == a) for a in ("Add", "Modify", "Remove")}
    replaced = sum(1 for r in rows if r.replacement in ("True", "Conditional"))
    stacks = list(dict.fromkeys(r.stack for r in rows))
    return (f"{n['Add']} Add, {n['Modify']} Modify ({replaced} replaced or maybe), {n['Remove']} Remove "
            f"in {len(stacks)} stack{'s' if len(stacks) != 1 else ''} ({', '.join(stacks)})")


def confirm(question: str, assume_yes: bool, stdin=None, stream=None) -> bool:
    """y/N on a terminal; ``--yes`` for scripts; without either, refuse (bad input)."""
    import sys

    stdin = stdin or sys.stdin
    stream = stream or sys.stderr
    if assume_yes:
        return True
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        raise ConfigError("--yes: no terminal to confirm the update on; nothing was changed; "
                          "review the changes above and run again with --yes")
    stream.write(f"{question} [y/N] ")
    stream.flush()
    answer = stdin.readline().strip().lower()
    if not (hasattr(stream, "isatty") and stream.isatty()):
        stream.write(f"{answer}\n")  # the answer was echoed on the terminal, not here
        stream.flush()
    return answer in ("y", "yes")


FAILED_CREATE = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED")

# CloudFormation API reference: CreateStack StackName ("must start with an alphabetical character
# and can't be longer than 128 characters", [a-zA-Z][-a-zA-Z0-9]*), Tag (Key 1-128, Value 0-256,
# "aws:" reserved, at most 50 tags), RoleARN (20-2048 characters, an IAM role).
STACK_NAME = re.compile(r"[a-zA-Z][-a-zA-Z0-9]{0,127}")
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
RESERVED_TAG = "gitlab-cfn:version"


def check_stack_name(name: str, flag: str = "--stack-name") -> None:
    if not STACK_NAME.fullmatch(name or ""):
        raise ConfigError(f"{flag}: {name!r} is not a CloudFormation stack name (a letter, then letters, "
                          "digits and hyphens, at most 128 characters)")


def parse_tags(items: list[str]) -> dict[str, str]:
    """``--tags K=V ...`` as a mapping; refuses what CloudFormation refuses."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tags: {item!r} is not KEY=VALUE (for example --tags team=platform)")
        if key in tags:
            raise ConfigError(f"--tags: {key} given twice; each tag key may be given once")
        if len(key) > 128 or len(value) > 256:
            raise ConfigError(f"--tags: {key[:40]}: a key has 1-128 characters and a value at most 256")
        if key.lower().startswith("aws:") or key == RESERVED_TAG:
            raise ConfigError(f"--tags: {key}: keys starting with aws: and {RESERVED_TAG} are reserved")
        tags[key] = value
    if len(tags) > 49:
        raise ConfigError(f"--tags: {len(tags)} tags; at most 49 (CloudFormation takes 50, one is {RESERVED_TAG})")
    return tags


def check_request(request: DeployRequest) -> None:
    check_stack_name(request.stack_name)
    if request.role_arn is not None and not ROLE_ARN.fullmatch(request.role_arn):
        raise ConfigError(f"--role-arn: {request.role_arn!r} is not an IAM role ARN "
                          "(arn:aws:iam::123456789012:role/NAME)")


def cleanup_command(request: DeployRequest) -> str:
    return f"gitlab-cfn destroy --stack-name {request.stack_name} --region {request.region} --confirm {request.stack_name}"


def deploy(request: DeployRequest, aws: Aws, progress: Progress) -> DeployResult:
    template, manifest = _parent_template(request.build_dir)
    # A changed build gets a new prefix: CloudFormation updates nested stacks only
    # when their TemplateURL (or parameters) change, not when the object behind
    # an unchanged URL does.
    prefix = request.prefix if request.prefix is not None else \
        f"gitlab-cfn/{request.stack_name}/{build_digest(manifest)}/"
    location = {"TemplateBucketName": request.bucket or "gitlab-cfn-bucket", "TemplateKeyPrefix": prefix,
                "TemplateBucketRegion": request.region}
    definitions = template.get("Parameters") or {}
    # Checked before anything is sent to AWS; every violation is reported. Values not
    # given may come from the running stack (an update) or the SSM image parameter.
    not_given = {name for name in definitions if name not in request.params and name not in location}
    az_count = manifest.get("config", {}).get("az_count")
    check_request(request)
    problems = check_params(template, {**request.params, **location}, az_count, elsewhere=not_given,
                            region=request.region)
    _raise_problems(problems)

    cfn = aws.client("cloudformation", request.region)
    existing = _existing(cfn, request.stack_name)
    if existing and existing["StackStatus"] in FAILED_CREATE:
        raise ConfigError(f"--stack-name: {request.stack_name} is {existing['StackStatus']} (a failed create or "
                          f"delete); nothing was changed; clean up with: {cleanup_command(request)}")
    previous = {p["ParameterKey"] for p in (existing or {}).get("Parameters", [])}
    reused = sorted(not_given & previous)
    size = manifest.get("config", {}).get("size", "poc")
    resized: dict[str, str] = {}
    carried: dict[str, str] = {}
    if existing:
        resized = size_defaults(existing, definitions, reused, size, az_count)
        for name, value in resized.items():
            before = _previous_values(existing)[name]
            progress.done(f"size {_stack_size(existing)} -> {size}: {name} {before} -> {value} "
                          f"(the size's default; give --param {name}={before} to keep it)")
        reused = [name for name in reused if name not in resized]
        _raise_problems(reused_problems(existing, definitions, reused))
        # A stack whose servers read the user's SMTP secret by name keeps it (operate/smtp_upgrade.py).
        carried, line = smtp_upgrade.keep_legacy_secret(aws, request.region, request.stack_name,
                                                        _previous_values(existing), definitions, request.params)
        if line:
            progress.done(line)
    images = [name for name in image_parameters(template) if name in not_given and name not in previous]
    filled: dict[str, str] = {}
    if images:
        source = image_parameter_name(template, request.params)
        value = _ssm_image(aws, request.region, images, source)
        filled = {name: value for name in images}
        for name in images:
            progress.done(f"{name} = {value} (not given: the image SSM parameter {source} names it)")
    _raise_problems(check_params(template, {**request.params, **location, **filled}, az_count,
                                 elsewhere=set(reused)))
    bucket = request.bucket or f"gitlab-cfn-{request.region}-{_account(aws, request.region)}"
    params = {**request.params, **resized, **carried, **filled, **location, "TemplateBucketName": bucket}
    if existing:
        guard(cfn, existing["StackId"], request, progress)
        if not request.version_change:
            version_guard(aws, request.region, existing, template, request.params, progress)

    check_ssm_parameters(aws, request.region, definitions, request.params)

    s3 = aws.client("s3", request.region)
    ensure_bucket(s3, bucket, request.region)
    keys = upload_build(s3, request.build_dir, bucket, prefix)
    progress.done(f"uploaded {len(keys)} templates to s3://{bucket}/{prefix}templates/")

    url = template_url(bucket, request.region, prefix)
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(params.items())]
    tags = [{"Key": k, "Value": v} for k, v in sorted(request.tags.items())] + \
        [{"Key": "gitlab-cfn:version", "Value": __version__}, {"Key": SIZE_TAG, "Value": size}]
    role = {"RoleARN": request.role_arn} if request.role_arn else {}
    changes: list[dict] = []
    kept: dict[str, str] = {}
    if existing is None:
        # Termination protection on: a stack holding a GitLab instance is deleted only by
        # ``gitlab-cfn destroy`` (which turns it off in the open) or on purpose in the console.
        stack_id = cfn.create_stack(StackName=request.stack_name, TemplateURL=url, Parameters=parameters,
                                    Capabilities=CAPABILITIES, OnFailure="ROLLBACK", Tags=tags,
                                    EnableTerminationProtection=True, **role)["StackId"]
        progress.done(f"creating stack {request.stack_name} (termination protection on)")
    else:
        stack_id = existing["StackId"]
        if reused:
            progress.done(reused_line(existing, definitions, reused))
        kept = {p["ParameterKey"]: p.get("ParameterValue", "") for p in existing.get("Parameters", [])
                if p["ParameterKey"] in reused}
        parameters += [{"ParameterKey": k, "UsePreviousValue": True} for k in reused]
        name = f"gitlab-cfn-{int(time.time())}"
        change_set = cfn.create_change_set(StackName=request.stack_name, ChangeSetName=name, TemplateURL=url,
                                           Parameters=parameters, Capabilities=CAPABILITIES,
                                           ChangeSetType="UPDATE", IncludeNestedStacks=True, Tags=tags,
                                           **role)["Id"]
        status, reason = _wait_change_set(cfn, change_set, request.poll)
        if status != "CREATE_COMPLETE":
            cfn.delete_change_set(ChangeSetName=change_set)
            if "didn't contain changes" in reason or "No updates" in reason:
                progress.done(f"stack {request.stack_name}: no changes")
                return DeployResult(stack_id, existing["StackStatus"], _outputs(cfn, stack_id), [], kept)
            raise CheckFailed(f"change set for {request.stack_name} failed: {reason}")
        rows = change_set_rows(cfn, change_set, request.allow_replace)
        if not rows:
            cfn.delete_change_set(ChangeSetName=change_set)
            progress.done(f"stack {request.stack_name}: no changes")
            return DeployResult(stack_id, existing["StackStatus"], _outputs(cfn, stack_id), [], kept)
        for row in rows:
            progress.done(f"change: {row.line()}")
        progress.done(f"change set: {change_summary(rows)}")
        changes = [row.as_dict() for row in rows]
        blocking = [row for row in rows if row.loses_data and not row.allowed]
        if blocking:
            cfn.delete_change_set(ChangeSetName=change_set)
            named = "; ".join(f"{r.name} would be {'deleted' if r.action == 'Remove' else 'replaced'}"
                              + ("" if r.replacement == "True" or r.action == "Remove" else " (conditionally)")
                              + (f" ({', '.join(r.causes)})" if r.causes else "") for r in blocking)
            raise CheckFailed(f"the change set would lose data: {named}; nothing was changed; "
                              "allow it with --allow-replace TIER:LOGICAL_ID")
        try:
            accepted = confirm(f"execute these {len(rows)} changes to stack {request.stack_name}?",
                               request.assume_yes)
        except ConfigError:
            cfn.delete_change_set(ChangeSetName=change_set)
            raise
        if not accepted:
            cfn.delete_change_set(ChangeSetName=change_set)
            raise CheckFailed(f"the update of {request.stack_name} was not confirmed; nothing was changed")
        cfn.execute_change_set(ChangeSetName=change_set)
        progress.done(f"updating stack {request.stack_name} ({len(rows)} changes)")

    status = wait(cfn, stack_id, progress, request.poll, request.timeout)
    if status not in TERMINAL_OK:
        failure = first_failure(cfn, stack_id)
        what = str(failure) if failure else "no failing resource was reported"
        if status in FAILED_CREATE:
            left = "what could not be deleted is kept" if status != "ROLLBACK_COMPLETE" else "nothing is left running"
            raise CheckFailed(f"stack {request.stack_name} is {status}: {what}; {left}; "
                              f"clean up with: {cleanup_command(request)}")
        raise CheckFailed(f"stack {request.stack_name} is {status}: {what}")
    if existing is not None:
        for line in left_behind(cfn, stack_id):
            progress.done(f"left behind: {line}")
    return DeployResult(stack_id, status, _outputs(cfn, stack_id), changes,
                        kept if existing is not None else {})


# The size a stack was last deployed at (config ``size``); a stack without it predates the
# sizes, so it was built as the proof of concept.
SIZE_TAG = "gitlab-cfn:size"


def _stack_size(existing: dict) -> str:
    return next((t["Value"] for t in existing.get("Tags", []) if t["Key"] == SIZE_TAG), "poc")


def _previous_values(existing: dict) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in existing.get("Parameters", [])}


def size_defaults(existing: dict, definitions: dict, reused: list[str], size: str,
                  az_count: int | None) -> dict[str, str]:
    """A move to another size: the parameters the size sets (instance types, classes,
    counts) take the new size's defaults instead of the stack's previous values, unless
    the operator had changed them from the old size's default (then the operator's value
    stays). Without this, a stack moved from poc to 3k would keep poc's types and a
    burstable cache node."""
    before = _stack_size(existing)
    if before == size or before not in build_config.sizes.NAMES:
        return {}
    old_defaults = {name: spec.default for name, spec in param_catalog.parameters(
        build_config.from_dict({"size": before, "az_count": az_count or 2})).items()}
    values = _previous_values(existing)
    changed = {}
    for name in reused:
        new = definitions.get(name, {}).get("Default")
        old = old_defaults.get(name)
        if new is None or old is None or str(new) == str(old) or definitions[name].get("NoEcho"):
            continue
        if values.get(name) == str(old):
            changed[name] = str(new)
    return changed


def reused_problems(existing: dict, definitions: dict, reused: list[str]) -> list[str]:
    """Previous values an update would keep that the new template no longer accepts.

    CloudFormation checks a reused value against the new template's constraints and fails
    the change set (an IOPS figure under a new minimum, an instance type no longer
    offered); said here, before anything is uploaded, with the flag that fixes it."""
    values = _previous_values(existing)
    problems = []
    for name in reused:
        definition = definitions.get(name, {})
        if definition.get("NoEcho") or name not in values:
            continue
        for problem in violations(name, definition, values[name]):
            problems.append(f"{problem} (the stack's previous value, which this update would keep; "
                            f"give --param {name}=VALUE)")
    return problems


def reused_line(existing: dict, definitions: dict, reused: list[str]) -> str:
    """Which previous values an update keeps: every name, and the value of each one that is
    not the template's default (those still at their default are counted)."""
    before = {p["ParameterKey"]: p.get("ParameterValue", "") for p in existing.get("Parameters", [])}
    named = [k for k in reused if "Default" not in definitions.get(k, {})
             or str(definitions[k]["Default"]) != before.get(k)]
    rest = len(reused) - len(named)
    values = [f"{k}={before.get(k, '')}" for k in named] + ([f"{rest} at their default"] if rest else [])
    return f"reusing the stack's previous values of {', '.join(reused)} ({'; '.join(values)})"


def left_behind(cfn, stack_id: str) -> list[str]:
    """Old resources the last update could not delete (DELETE_FAILED while cleaning up).

    CloudFormation finishes an update even when it cannot delete what it replaced, for
    example a database whose deletion protection is on: the old resource keeps running,
    outside the stack, until someone deletes it."""
    found, queue, seen = [], [stack_id], set()
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        try:
            _, children = _stack_state(cfn, current)
            events = cfn.describe_stack_events(StackName=current)["StackEvents"]
        except Exception:  # a stack gone meanwhile
            continue
        queue += children
        events = [e for _, e in sorted(enumerate(events), key=lambda p: (p[1].get("Timestamp"), -p[0]))]
        starts = [i for i, e in enumerate(events) if e.get("ResourceStatus") == "UPDATE_IN_PROGRESS"
                  and e.get("LogicalResourceId") == e.get("StackName")]
        for event in events[starts[-1] if starts else 0:]:
            if event.get("ResourceStatus") == "DELETE_FAILED":
                found.append(f"{event['LogicalResourceId']} ({event.get('ResourceType', '')}) "
                             f"{event.get('PhysicalResourceId', '')} in stack {event.get('StackName', '')}: "
                             f"{event.get('ResourceStatusReason', '')}")
    return found


def _raise_problems(problems: list[str]) -> None:
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} parameter problem{'s' if len(problems) > 1 else ''}:\n  "
                          + "\n  ".join(problems))


def deployed_templates(cfn, stack_id: str) -> dict[str, dict]:
    """The templates a deployed stack runs, keyed by tier (``main`` is the parent)."""
    from gitlab_cfn.compile.naming import MAIN, TIERS
    from gitlab_cfn.compile.naming import stack_id as tier_stack_id

    by_logical = {tier_stack_id(t): t for t in TIERS}
    stacks = {MAIN: stack_id}
    stacks.update({by_logical[r["LogicalResourceId"]]: r["PhysicalResourceId"]
                   for _, r in nested_resources(cfn, stack_id)
                   if r["ResourceType"] == "AWS::CloudFormation::Stack" and r["LogicalResourceId"] in by_logical
                   and r.get("PhysicalResourceId")})
    found = {}
    for tier, sid in stacks.items():
        body = cfn.get_template(StackName=sid)["TemplateBody"]
        found[tier] = body if isinstance(body, dict) else yaml.safe_load(body)
    return found


def guard(cfn, stack_id: str, request: DeployRequest, progress: Progress) -> None:
    """Refuse an update that would replace or delete data, before anything changes.

    Compares the templates the stack runs with the build (the replacement guard of
    ``gitlab-cfn diff``): this sees into nested stacks on AWS and on the stand-in alike.
    """
    from gitlab_cfn.verify.replacement import diff_loaded

    manifest = read_manifest(request.build_dir)
    new = {tier: yaml.safe_load((request.build_dir / e["path"]).read_text())
           for tier, e in product_entries(manifest).items()}
    changes = diff_loaded(deployed_templates(cfn, stack_id), new, request.allow_replace, request.region)
    for change in changes:
        progress.done(f"{change.template}: {change}")
    blocking = [c for c in changes if c.blocking]
    if blocking:
        named = "; ".join(f"{c.name} would be {'deleted' if c.action == 'delete' else 'replaced'} "
                          f"({', '.join(c.reasons)})" for c in blocking)
        raise CheckFailed(f"the update would lose data: {named}; nothing was changed; "
                          "allow it with --allow-replace TIER:LOGICAL_ID")


def _wait_change_set(cfn, change_set: str, poll: float) -> tuple[str, str]:
    for _ in range(360):
        described = cfn.describe_change_set(ChangeSetName=change_set)
        status = described["Status"]
        if status in ("CREATE_COMPLETE", "FAILED"):
            return status, described.get("StatusReason", "")
        time.sleep(min(poll, 5))
    return "TIMEOUT", "the change set was not ready after 30 minutes"


def _outputs(cfn, stack_id: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _account(aws: Aws, region: str) -> str:
    return aws.client("sts", region).get_caller_identity()["Account"]


def outputs_table(outputs: dict[str, str]) -> str:
    width = max((len(k) for k in outputs), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in sorted(outputs.items()))


def as_json(result: DeployResult) -> str:
    return json.dumps({"stack_id": result.stack_id, "status": result.status, "outputs": result.outputs,
                       "changes": result.changes, "reused": result.reused}, indent=2, sort_keys=True)
