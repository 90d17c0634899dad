"""Checks a parameter value against the template's own constraints, as CloudFormation would.

Used to prove that every default of the parent template is valid, and to check
a parameter file before anything is sent to AWS.
"""

from __future__ import annotations

import re
from typing import Any


def violations(name: str, definition: dict, value: Any) -> list[str]:
    """Every way ``value`` breaks the constraints of parameter ``name``; empty if it fits."""
    problems = []
    ptype = definition.get("Type", "String")
    values = [v.strip() for v in str(value).split(",")] if ptype.startswith("List<") or ptype == "CommaDelimitedList" else [str(value)]
    for item in values:
        if ptype == "Number":
            try:
                number = float(item)
            except ValueError:
                problems.append(f"{name}: must be a number (got {item!r})")
                continue
            if "MinValue" in definition and number < float(definition["MinValue"]):
                problems.append(f"{name}: must be at least {definition['MinValue']} (got {item})")
            if "MaxValue" in definition and number > float(definition["MaxValue"]):
                problems.append(f"{name}: must be at most {definition['MaxValue']} (got {item})")
        allowed = definition.get("AllowedValues")
        if allowed is not None and item not in [str(a) for a in allowed]:
            problems.append(f"{name}: must be one of {', '.join(map(str, allowed))} (got {item!r})")
        pattern = definition.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, item) is None:
            hint = definition.get("ConstraintDescription", f"must match {pattern}")
            problems.append(f"{name}: {hint} (got {item!r})")
        if "MinLength" in definition and len(item) < int(definition["MinLength"]):
            problems.append(f"{name}: must be at least {definition['MinLength']} characters")
        if "MaxLength" in definition and len(item) > int(definition["MaxLength"]):
            problems.append(f"{name}: must be at most {definition['MaxLength']} characters")
    return problems
