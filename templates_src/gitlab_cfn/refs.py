"""What a CloudFormation value refers to, and values compared as data.

Pure functions over template data, with no dependency beyond the standard
library, so that every part of the package can use them: the replacement guard
and the lint rules (``verify``) and the stand-in (``standin``, which runs in its
own virtual environment) follow references the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any


def canonical(value: Any) -> str:
    """A value as text that is equal exactly when the data is (key order aside)."""
    return json.dumps(value, sort_keys=True, default=str)


def references(value: Any) -> set[tuple[str, str | None]]:
    """(name, attribute or None) of every Ref, GetAtt and ${} in a value."""
    found: set[tuple[str, str | None]] = set()
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            found.add((value["Ref"], None))
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            name, attr = target if isinstance(target, list) else str(target).split(".", 1)
            found.add((name, attr))
        if "Fn::Sub" in value:
            args = value["Fn::Sub"]
            text = args[0] if isinstance(args, list) else args
            local = set(args[1]) if isinstance(args, list) and len(args) > 1 else set()
            for var in re.findall(r"\$\{([^}!]+)\}", str(text)):
                name, _, attr = var.partition(".")
                if name not in local:
                    found.add((name, attr or None))
        for v in value.values():
            found |= references(v)
    elif isinstance(value, list):
        for v in value:
            found |= references(v)
    return found
