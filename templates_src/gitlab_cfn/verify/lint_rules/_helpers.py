"""Small readers shared by the rules: intrinsic-aware value checks."""

from __future__ import annotations

from typing import Any


def literal_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def leading_text(value: Any) -> str | None:
    """The literal text a string value starts with, through Join and Sub; None if unknown."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, args), = value.items()
        if fn == "Fn::Join" and isinstance(args, list) and len(args) == 2 and isinstance(args[1], list):
            sep, parts = args
            text = ""
            for i, part in enumerate(parts):
                if i:
                    text += sep
                if not isinstance(part, str):
                    return text + (leading_text(part) or "")
                text += part
            return text
        if fn == "Fn::Sub":
            template = args[0] if isinstance(args, list) else args
            if isinstance(template, str):
                return template.split("${", 1)[0]
    return None


def is_dynamic_secret_reference(value: Any) -> bool:
    """``{{resolve:secretsmanager:...}}`` as a string or through Sub/Join."""
    text = value if isinstance(value, str) else None
    if isinstance(value, dict) and len(value) == 1:
        (fn, args), = value.items()
        if fn == "Fn::Sub":
            text = args[0] if isinstance(args, list) else args
        elif fn == "Fn::Join" and isinstance(args, list) and len(args) == 2:
            text = "".join(p for p in args[1] if isinstance(p, str))
    return isinstance(text, str) and text.startswith("{{resolve:secretsmanager:")


def ref_name(value: Any) -> str | None:
    """The name in ``{"Ref": name}``; None for anything else."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("Ref"), str):
        return value["Ref"]
    return None


def duration_seconds(value: Any) -> int | None:
    """Seconds of an ISO 8601 duration such as PT1H30M (CreationPolicy, PauseTime); None if not one."""
    import re

    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds
