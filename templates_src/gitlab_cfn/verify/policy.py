"""IAM policy evaluation for one request, offline: the decision AWS would take.

Written here because none of the maintained evaluators fits (checked 2026-12):
moto's ``moto.iam.access_control`` ignores unknown condition operators and missing keys
(a condition it cannot read allows) and turns a failed condition into a Deny, so it
accepts what AWS refuses; principalmapper (AGPL-3.0, last release 2022) and iam-ape
(GPL-3.0) do not go with this MIT package; policyuniverse and policy_sentry parse and
write policies but do not decide requests; parliament lints documents.

The logic follows "Policy evaluation logic"
(docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html), for a
role and a resource of its own account:

1. an explicit ``Deny`` in any identity or resource policy that applies refuses;
2. for a KMS key, the key policy must allow, the role itself or the account (``root``),
   which then delegates to IAM: "Unless the key policy explicitly allows it, you cannot
   use IAM policies to allow access to a KMS key"
   (docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html);
3. otherwise an ``Allow`` in an identity policy, or in a resource policy naming the role.

Statements: ``Action``/``NotAction`` (case-insensitive, ``*`` and ``?``),
``Resource``/``NotResource`` (case-sensitive), ``Principal`` in resource policies, and the
condition operators of ``OPERATORS`` with ``...IfExists`` and the ``ForAllValues:`` /
``ForAnyValue:`` set prefixes. A key missing from the request context fails its condition
(``IfExists`` passes, ``Null`` tests it); an operator not listed is an error, never a pass.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable

from gitlab_cfn.errors import GitlabCfnError


class PolicyError(GitlabCfnError):
    pass


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return bool(_glob(pattern, ignore_case).match(value))


def _list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _arn_like(pattern: str, value: str) -> bool:
    # ArnLike compares the six colon-separated parts, each a glob
    # (docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_ARN).
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(_like(a, b) for a, b in zip(p, v))


def _number(a: str, b: str, op: Callable[[float, float], bool]) -> bool:
    try:
        return op(float(b), float(a))
    except ValueError:
        return False


OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, got: want == got,
    "StringNotEquals": lambda want, got: want != got,
    "StringEqualsIgnoreCase": lambda want, got: want.lower() == got.lower(),
    "StringNotEqualsIgnoreCase": lambda want, got: want.lower() != got.lower(),
    "StringLike": lambda want, got: _like(want, got),
    "StringNotLike": lambda want, got: not _like(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnNotEquals": lambda want, got: want != got,
    "ArnLike": _arn_like,
    "ArnNotLike": lambda want, got: not _arn_like(want, got),
    "Bool": lambda want, got: str(want).lower() == str(got).lower(),
    "NumericEquals": lambda want, got: _number(want, got, lambda g, w: g == w),
    "NumericLessThan": lambda want, got: _number(want, got, lambda g, w: g < w),
    "NumericGreaterThan": lambda want, got: _number(want, got, lambda g, w: g > w),
}
# Negated operators hold when no value matches (every value differs).
NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _condition_holds(operator: str, key: str, wanted: Any, context: dict[str, Any]) -> bool:
    name, qualifier = operator, None
    if ":" in name:
        qualifier, name = name.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise PolicyError(f"condition operator {operator} is not known")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    present = key in context and context[key] is not None
    if name == "Null":
        return (str(_list(wanted)[0]).lower() == "true") == (not present)
    if name not in OPERATORS:
        raise PolicyError(f"condition operator {operator} is not modelled by the access check")
    if not present:
        return if_exists or qualifier == "ForAllValues"   # ForAllValues over no values is true
    test = OPERATORS[name]
    wanted = [str(w) for w in _list(wanted)]
    got = [str(g) for g in _list(context[key])]

    def one(value: str) -> bool:
        if name in NEGATED:
            return all(test(w, value) for w in wanted)
        return any(test(w, value) for w in wanted)
    if qualifier == "ForAllValues":
        return all(one(g) for g in got)
    if qualifier == "ForAnyValue":
        return any(one(g) for g in got)
    if len(got) != 1:
        raise PolicyError(f"{operator} on multivalued key {key}: use ForAllValues or ForAnyValue")
    return one(got[0])


def statement_applies(statement: dict, action: str, resource: str, context: dict[str, Any],
                      principal: str | None = None, account: str | None = None) -> bool:
    """Whether a statement covers the request (its effect aside)."""
    if "Action" in statement:
        if not any(_like(a, action, True) for a in _list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_like(a, action, True) for a in _list(statement["NotAction"])):
            return False
    else:
        raise PolicyError("a statement without Action or NotAction")
    if "Resource" in statement or "NotResource" in statement:
        patterns = _list(statement.get("Resource", statement.get("NotResource")))
        for p in patterns:
            if "${" in str(p):
                raise PolicyError(f"policy variable in resource {p!r} is not modelled")
        matched = any(_like(str(p), resource) for p in patterns)
        if matched != ("Resource" in statement):
            return False
    if principal is not None and not principal_matches(statement.get("Principal"), principal, account):
        return False
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, wanted in keys.items():
            if not _condition_holds(operator, key, wanted, context):
                return False
    return True


def principal_matches(element: Any, principal: str, account: str | None) -> bool:
    """A resource policy's Principal names the role itself, or its account, or everyone."""
    if element == "*":
        return True
    if not isinstance(element, dict):
        return False
    for arn in _list(element.get("AWS")):
        if arn == "*" or arn == principal or arn in (account, f"arn:aws:iam::{account}:root"):
            return True
    return False


def _names_role(element: Any, principal: str) -> bool:
    return isinstance(element, dict) and principal in _list(element.get("AWS"))


def authorize(principal: str, account: str, action: str, resource: str, context: dict[str, Any],
              identity: list[tuple[str, dict]], resource_policies: list[tuple[str, dict]],
              key_policy_required: bool = False) -> tuple[bool, str]:
    """(allowed, why) for a role ``principal`` of ``account`` asking ``action`` on ``resource``."""
    def statements(doc: dict) -> list[dict]:
        return _list(doc.get("Statement"))

    for label, doc in identity:
        for s in statements(doc):
            if s.get("Effect") == "Deny" and statement_applies(s, action, resource, context):
                return False, f"explicit Deny in {label}"
    for label, doc in resource_policies:
        for s in statements(doc):
            if s.get("Effect") == "Deny" and statement_applies(s, action, resource, context, principal, account):
                return False, f"explicit Deny in {label}"
    resource_allow_role = resource_allow_account = False
    for label, doc in resource_policies:
        for s in statements(doc):
            if s.get("Effect") == "Allow" and statement_applies(s, action, resource, context, principal, account):
                if _names_role(s.get("Principal"), principal):
                    resource_allow_role = True
                else:
                    resource_allow_account = True
    if key_policy_required:
        if not resource_policies:
            return False, "no key policy found for the key"
        if resource_allow_role:
            return True, "the key policy names the role"
        if not resource_allow_account:
            return False, f"the key policy ({resource_policies[0][0]}) allows neither the role nor the account"
    elif resource_allow_role:
        return True, "a resource policy names the role"
    for label, doc in identity:
        for s in statements(doc):
            if s.get("Effect") == "Allow" and statement_applies(s, action, resource, context):
                return True, f"allowed by {label}"
    return False, "no identity policy of the role allows it (implicit deny)"
