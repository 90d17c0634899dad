"""Every IAM policy document of every template, analysed offline.

Documents are found in roles (trust and inline policies), IAM policies, bucket
policies and key policies; their intrinsic functions are resolved against a
fake account so that parliament (used through its Python API: its command line
refuses to run without a terminal) sees real ARNs. A document that depends on a
condition (``Fn::If``) is analysed once per branch.

parliament analyses identity and resource policies. Two kinds it does not
model are handled here: a role's trust policy (no Resource element) is checked
to let only an AWS service assume the role; in a KMS key policy ``*`` means the
key itself, so the key's ARN stands in for it before analysis.

Besides parliament's findings, two rules of this project: no ``Allow`` of the
bare ``*`` action, and S3 actions allowed only on ``gl-`` buckets, except
``s3:GetObject`` on the published templates (the ``TemplateBucketName``
parameter) and on Service Catalog's tagged copy of a product template.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from gitlab_cfn.verify.lint import Finding

ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"
PSEUDO = {
    "AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
    "AWS::StackName": "gitlab", "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/gitlab/0a1b2c3d-1111-2222-3333-444455556666",
}
GL_BUCKET = re.compile(r"^arn:aws:s3:::gl-[a-z0-9.*-]+(/.*)?$")
# Where the published templates are read from (the TemplateBucketName parameter).
TEMPLATE_BUCKET = "gitlab-cfn-templates-example"
TEMPLATE_OBJECTS = re.compile(rf"^arn:aws:s3:::{TEMPLATE_BUCKET}/.*$")
# Service Catalog's own copy of a product template: any bucket, objects it tagged.
SC_COPY_TAG = "s3:ExistingObjectTag/servicecatalog:provisioning"


class Resolver:
    """Evaluates the intrinsic functions of a template against a fake account."""

    def __init__(self, template: dict, conditions: dict[str, bool]):
        self.t = template
        self.conditions = conditions

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        resources = self.t.get("Resources", {})
        if name in resources:
            kind = resources[name]["Type"]
            if kind == "AWS::S3::Bucket":
                return self.value(resources[name].get("Properties", {}).get("BucketName", name.lower()))
            if kind == "AWS::SecretsManager::Secret":
                return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
            return f"{name}-physical-id"
        if name.endswith("SecretArn"):
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        if name == "KmsKeyArn":
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-1111-2222-3333-444455556666"
        if name == "RestoreKmsKeyArn":   # an old stack's key (gitlab-cfn restore)
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/9f8e7d6c-1111-2222-3333-444455556666"
        if name == "RestoreBucketsFrom":   # an old stack's bucket suffix (storage.bucket_name)
            return "9f8e7d6c"
        if name == "RestoreBucketsRegion":   # the old buckets' region, restored into another
            return "ca-central-1"
        if name == "TemplateBucketName":
            return TEMPLATE_BUCKET
        if name.endswith("BucketName"):
            return "gl-" + re.sub(r"(?<!^)(?=[A-Z])", "-", name.removesuffix("BucketName")).lower() + f"-{ACCOUNT}-{REGION}-0a1b2c3d"
        return f"{name}-value"

    def get_att(self, name: str, attribute: str) -> Any:
        resource = self.t.get("Resources", {}).get(name, {})
        kind = resource.get("Type", "")
        if attribute == "Arn":
            if kind == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{self.ref(name)}"
            if kind == "AWS::KMS::Key":
                return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-1111-2222-3333-444455556666"
            if kind == "AWS::IAM::Role":
                return f"arn:aws:iam::{ACCOUNT}:role/{name}"
            service = kind.split("::")[1].lower() if "::" in kind else "unknown"
            return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"
        return f"{name}.{attribute}"

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, args), = node.items()
            if fn == "Ref":
                return self.ref(args)
            if fn == "Fn::GetAtt":
                name, attribute = args if isinstance(args, list) else args.split(".", 1)
                return self.get_att(name, attribute)
            if fn == "Fn::Sub":
                text, variables = (args, {}) if isinstance(args, str) else args
                values = {k: self.value(v) for k, v in variables.items()}

                def replace(match):
                    key = match.group(1)
                    if key in values:
                        return str(values[key])
                    if "." in key:
                        return str(self.get_att(*key.split(".", 1)))
                    return str(self.ref(key))
                return re.sub(r"\$\{([^}!]+)\}", replace, text)
            if fn == "Fn::Join":
                sep, parts = args
                return sep.join(str(self.value(p)) for p in self.value(parts))
            if fn == "Fn::Select":
                index, items = args
                return self.value(items)[int(self.value(index))]
            if fn == "Fn::Split":
                sep, text = args
                return str(self.value(text)).split(sep)
            if fn == "Fn::FindInMap":
                m, k1, k2 = (self.value(a) for a in args)
                mapping = self.t.get("Mappings", {}).get(m, {})
                return mapping.get(k1, next(iter(mapping.values()), {})).get(k2)
            if fn == "Fn::If":
                condition, yes, no = args
                return self.value(yes if self.conditions.get(condition, True) else no)
        return {k: self.value(v) for k, v in node.items()}


TRUST, POLICY, KEY = "trust", "policy", "key"
ALLOWLIST = Path(__file__).resolve().parent.parent / "data" / "iam-allowlist.yaml"


@lru_cache(maxsize=None)
def allowlist() -> frozenset[tuple[str, str, str]]:
    """(issue, document, detail) of the parliament findings accepted, with a reason each."""
    entries = yaml.safe_load(ALLOWLIST.read_text())
    return frozenset((e["issue"], doc, detail) for e in entries if e.get("why", "").strip()
                     for doc in e["documents"] for detail in e["details"])


def accepted(label: str, issue: str, detail: str, allowed: frozenset | None = None) -> bool:
    allowed = allowlist() if allowed is None else allowed
    return (issue, label.split(" [", 1)[0], detail) in allowed


def _documents(template: dict) -> list[tuple[str, str, Any]]:
    """(label, kind, raw document) for every policy document in a template."""
    docs = []
    for name, resource in (template.get("Resources") or {}).items():
        kind, props = resource.get("Type"), resource.get("Properties") or {}
        if kind == "AWS::IAM::Role":
            docs.append((f"{name} trust policy", TRUST, props.get("AssumeRolePolicyDocument")))
            for policy in props.get("Policies") or []:
                docs.append((f"{name} policy {policy.get('PolicyName')}", POLICY, policy.get("PolicyDocument")))
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy"):
            docs.append((name, POLICY, props.get("PolicyDocument")))
        elif kind == "AWS::KMS::Key":
            docs.append((f"{name} key policy", KEY, props.get("KeyPolicy")))
    return [(label, kind, doc) for label, kind, doc in docs if doc]


def _conditions_in(node: Any) -> set[str]:
    found = set()
    if isinstance(node, dict):
        if "Fn::If" in node and isinstance(node["Fn::If"], list):
            found.add(node["Fn::If"][0])
        for v in node.values():
            found |= _conditions_in(v)
    elif isinstance(node, list):
        for v in node:
            found |= _conditions_in(v)
    return found


def resolved_documents(template: dict) -> list[tuple[str, str, dict]]:
    out = []
    for label, kind, raw in _documents(template):
        names = sorted(_conditions_in(raw))
        for values in itertools.product([True, False], repeat=len(names)):
            choice = dict(zip(names, values))
            suffix = "".join(f" [{n}={v}]" for n, v in choice.items())
            out.append((label + suffix, kind, Resolver(template, choice).value(raw)))
    return out


def trust_problems(label: str, document: dict) -> list[str]:
    """A role's trust policy lets exactly one AWS service assume the role, and nothing else."""
    problems = []
    for statement in _as_list(document.get("Statement", [])):
        principal = statement.get("Principal")
        services = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if statement.get("Effect") != "Allow" or _as_list(statement.get("Action")) != ["sts:AssumeRole"]:
            problems.append(f"{label}: a trust statement must only allow sts:AssumeRole")
        if not isinstance(principal, dict) or set(principal) != {"Service"} or not all(
                isinstance(s, str) and s.endswith(".amazonaws.com") for s in services):
            problems.append(f"{label}: only AWS services may assume the role (got {principal!r})")
    return problems


def _key_as_resource(document: dict, key_arn: str) -> dict:
    """In a key policy, Resource "*" is the key itself."""
    statements = []
    for statement in _as_list(document.get("Statement", [])):
        statement = dict(statement)
        if statement.get("Resource") in ("*", ["*"]):
            statement["Resource"] = key_arn
        statements.append(statement)
    return {**document, "Statement": statements}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def project_rules(label: str, document: dict) -> list[str]:
    problems = []
    for statement in _as_list(document.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        actions = [a for a in _as_list(statement.get("Action", [])) if isinstance(a, str)]
        if "*" in actions:
            problems.append(f"{label}: allows the '*' action")
        s3_actions = [a for a in actions if a.lower().startswith("s3:")]
        if s3_actions and "Principal" not in statement:
            read_only = {a.lower() for a in s3_actions} == {"s3:getobject"}
            tagged_copy = SC_COPY_TAG in (statement.get("Condition") or {}).get("StringEquals", {})
            for resource in _as_list(statement.get("Resource", [])):
                if isinstance(resource, str) and GL_BUCKET.match(resource):
                    continue
                if read_only and isinstance(resource, str) and (
                        TEMPLATE_OBJECTS.match(resource) or (tagged_copy and resource == "arn:aws:s3:::*/*")):
                    continue
                problems.append(f"{label}: S3 actions on {resource!r}, which is not a gl- bucket "
                                "(only s3:GetObject may read the published templates or Service Catalog's copy)")
    return problems


def analyse(path: str, source: str | dict, documents: list[tuple[str, str, dict]] | None = None,
            allowed: frozenset | None = None) -> list[Finding]:
    """Findings for a template (text or decoded), or for its already resolved documents."""
    from parliament import analyze_policy_string

    from gitlab_cfn.verify.checkov import decoded

    if documents is None:
        documents = resolved_documents(decoded(source))
    findings = []
    for label, kind, document in documents:
        if kind == TRUST:
            for problem in trust_problems(label, document):
                findings.append(Finding(path, 1, 1, "GLC011", "error", problem))
            continue
        if kind == KEY:
            document = _key_as_resource(document, f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-1111-2222-3333-444455556666")
        for problem in project_rules(label, document):
            findings.append(Finding(path, 1, 1, "GLC010", "error", problem))
        policy = analyze_policy_string(json.dumps(document), ignore_private_auditors=True)
        for f in policy.findings:
            if accepted(label, f.issue, str(f.detail), allowed):
                continue
            findings.append(Finding(path, 1, 1, f"PARLIAMENT:{f.issue}", "error", f"{label}: {f.detail}"))
    return findings
