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
