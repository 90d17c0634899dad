"""What the stack's Lambda functions ask of AWS, and whether their roles may (part of GLC020).

A function's inline code (``Code.ZipFile``) is read for its boto3 calls: the names bound to
``boto3.client("<service>")`` and the methods called on them. Each call is mapped by
``FUNCTION_CALLS`` to the IAM request it makes on the resource named by the properties of the
custom resources that invoke the function (``ServiceToken``), and the request is decided
against the function's role and the resource's policies, as ``access`` does for the servers.
A call that ``FUNCTION_CALLS`` does not know is a finding. The function's own logging (its
``LoggingConfig.LogGroup``) is a request of its role as well.

IAM actions of the calls: CreateAccessKey, ListAccessKeys and DeleteAccessKey act on the user
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html);
PutSecretValue on the secret, and with a customer managed key ``kms:GenerateDataKey`` through
Secrets Manager (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Callable

from gitlab_cfn.verify import policy as iam_policy
from gitlab_cfn.verify.stackmodel import ACCOUNT, REGION, Model, Stack


@dataclass(frozen=True)
class FunctionCall:
    service: str
    method: str
    line: int


def code_calls(code: str) -> list[FunctionCall]:
    """Every ``<client>.<method>(...)`` call on a client made by ``boto3.client("<service>")``."""
    tree = ast.parse(code)
    clients: dict[str, str] = {}

    def client_service(node: ast.AST) -> str | None:
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "client"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "boto3"
                and node.args and isinstance(node.args[0], ast.Constant)):
            return str(node.args[0].value)
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (zip(target.elts, node.value.elts) if isinstance(target, ast.Tuple)
                         and isinstance(node.value, ast.Tuple) else [(target, node.value)])
                for name, value in pairs:
                    service = client_service(value)
                    if service and isinstance(name, ast.Name):
                        clients[name.id] = service
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in clients):
            calls.append(FunctionCall(clients[node.func.value.id], node.func.attr, node.lineno))
    return sorted(set(calls), key=lambda c: c.line)


class Unresolved(Exception):
    pass


def _user_arn(model: Model, props: dict) -> str:
    name = props.get("UserName")
    for stack, logical, _ in model.resources("AWS::IAM::User"):
        if model.ref(stack, logical) == name:
            path = model.props(stack, logical).get("Path") or "/"
            return f"arn:aws:iam::{ACCOUNT}:user{path}{name}"
    raise Unresolved(f"UserName {name!r} is not a user of the stack")


def _on_user(action: str) -> Callable:
    return lambda model, props: [(action, _user_arn(model, props), ())]


def _secret_put(model: Model, props: dict) -> list:
    arn = props.get("SecretArn")
    found = model.owner(str(arn))
    if not found:
        raise Unresolved(f"SecretArn {arn!r} is not a secret of the stack")
    out = [("secretsmanager:PutSecretValue", arn, ())]
    key = model.props(*found).get("KmsKeyId")
    if key:
        out.append(("kms:GenerateDataKey", key, (("kms:ViaService", f"secretsmanager.{REGION}.amazonaws.com"),
                                                 ("kms:EncryptionContext:SecretARN", arn))))
    return out


# (service, boto3 method) -> the requests (action, resource, context) from the custom resource's properties.
FUNCTION_CALLS: dict[tuple[str, str], Callable[[Model, dict], list]] = {
    ("iam", "create_access_key"): _on_user("iam:CreateAccessKey"),
    ("iam", "list_access_keys"): _on_user("iam:ListAccessKeys"),
    ("iam", "delete_access_key"): _on_user("iam:DeleteAccessKey"),
    ("secretsmanager", "put_secret_value"): _secret_put,
}


@dataclass
class FunctionDecision:
    function: str                 # <template file>:<logical id>
    action: str
    resource: str
    allowed: bool
    reason: str


def _role(model: Model, arn: Any) -> tuple[Stack, str] | None:
    for stack, logical, _ in model.resources("AWS::IAM::Role"):
        if model.get_att(stack, logical, "Arn") == arn:
            return stack, logical
    return None


def check(model: Model, role_policies: Callable, resource_policies: Callable) -> tuple[list[FunctionDecision], list[str]]:
    """Every inline function's requests decided; the problems (unmapped calls, unknown resources)."""
    decisions, problems = [], []
    for stack, logical, _ in model.resources("AWS::Lambda::Function"):
        props = model.props(stack, logical)
        code = (props.get("Code") or {}).get("ZipFile")
        where = f"{stack.file}:{logical}"
        if not code:
            problems.append(f"{where}: code not inline; the access check cannot read its calls")
            continue
        arn = model.get_att(stack, logical, "Arn")
        invocations = [model.props(s, l) for s, l, r in model.resources()
                       if r.get("Type", "").startswith("Custom::") or r.get("Type") == "AWS::CloudFormation::CustomResource"
                       if model.props(s, l).get("ServiceToken") == arn]
        role = _role(model, props.get("Role"))
        if role is None:
            problems.append(f"{where}: its Role is not a role of the stack")
            continue
        documents, more = role_policies(model, *role)
        problems += [f"{where}: {p}" for p in more]
        requests = []
        for call in code_calls(code):
            mapped = FUNCTION_CALLS.get((call.service, call.method))
            if mapped is None:
                problems.append(f"{where} line {call.line}: {call.service}.{call.method} is not mapped to IAM actions "
                                "(add it to FUNCTION_CALLS in gitlab_cfn/verify/function_access.py)")
                continue
            for invocation in invocations:
                try:
                    requests += [(f"{call.service}.{call.method} (line {call.line})", *r) for r in mapped(model, invocation)]
                except Unresolved as exc:
                    problems.append(f"{where} line {call.line}: {exc}")
        group = (props.get("LoggingConfig") or {}).get("LogGroup")
        owner = model.owner(str(group)) if group else None
        if owner:            # Ref of a log group of the stack: its name
            group = model.props(*owner).get("LogGroupName") or group
        if group:
            stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2026/01/01/[$LATEST]0123"
            requests += [("its logs", a, stream, ()) for a in ("logs:CreateLogStream", "logs:PutLogEvents")]
        principal = model.get_att(*role, "Arn")
        unique = {(a, r, c): why for why, a, r, c in reversed(requests)}
        for (action, resource, context), why in reversed(unique.items()):
            full = {"aws:SecureTransport": "true", "aws:PrincipalArn": principal, "aws:PrincipalAccount": ACCOUNT,
                    "aws:RequestedRegion": REGION, "aws:PrincipalType": "AssumedRole", **dict(context)}
            try:
                allowed, reason = iam_policy.authorize(
                    principal, ACCOUNT, action, resource, full, documents,
                    [(label, doc) for label, doc, _ in resource_policies(model, resource)],
                    key_policy_required=resource.startswith("arn:aws:kms:"))
            except iam_policy.PolicyError as exc:
                problems.append(f"{where}: {why}: {exc}")
                continue
            decisions.append(FunctionDecision(where, action, resource, allowed, reason))
            if not allowed:
                problems.append(f"{where}: {why}: {action} on {resource} is denied: {reason}")
    return decisions, problems
