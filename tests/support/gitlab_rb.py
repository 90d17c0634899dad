"""Checks a rendered gitlab.rb against the Linux package's own gitlab.rb template.

Every setting a gitlab.rb assigns must exist in the template (commented out as
``# key['sub'] = ...``), so a typo such as ``gitlab_rail['db_host']`` is caught
before an instance boots. Symbol keys of a hash setting (``gitaly['configuration']
= { listen_addr: ... }``) must appear in that setting's documented block too.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gitlab.rb.template"
ASSIGNMENT = re.compile(r"^(?P<key>[a-z_]+(?:\['[a-z_]+'\])+)\s*=\s*(?P<value>.*)$")
CALL = re.compile(r"^(?P<name>[a-z_]+)[ (]")
SYMBOL_KEY = re.compile(r"\b([a-z_]+):\s")


def _documented(template: str) -> tuple[set[str], set[str], dict[str, str]]:
    keys, calls, blocks = set(), set(), {}
    lines = template.splitlines()
    for i, line in enumerate(lines):
        text = line.lstrip("#").strip()
        m = ASSIGNMENT.match(text)
        if m:
            key = m.group("key")
            # Every prefix is a setting too: gitlab_rails['object_store']['objects']...
            parts = re.findall(r"\['[a-z_]+'\]", key)
            base = key[: key.index("[")]
            for n in range(1, len(parts) + 1):
                keys.add(base + "".join(parts[:n]))
            if m.group("value").rstrip().endswith("{"):
                block = []
                for follow in lines[i + 1:]:
                    if not follow.startswith("#") or follow.lstrip("#").strip() == "}":
                        break
                    block.append(follow)
                blocks[key] = "\n".join(block)
            continue
        m = CALL.match(text)
        if m and line.startswith(("# ", "#", text[:1])):
            calls.add(m.group("name"))
    return keys, calls, blocks


def unknown_settings(rendered: str, template: str | None = None) -> list[str]:
    """The settings a rendered gitlab.rb uses that the template does not document."""
    template = TEMPLATE.read_text() if template is None else template
    keys, calls, blocks = _documented(template)
    unknown = []
    lines = rendered.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or line.startswith((" ", "}", "]")):
            continue
        m = ASSIGNMENT.match(stripped)
        if m:
            key = m.group("key")
            if key not in keys:
                unknown.append(key)
            elif key in blocks and m.group("value").rstrip().endswith("{"):
                body = []
                for follow in lines[i + 1:]:
                    if follow.startswith("}"):
                        break
                    body.append(follow)
                for symbol in SYMBOL_KEY.findall("\n".join(body)):
                    if not re.search(rf"#\s+{symbol}:", blocks[key]):
                        unknown.append(f"{key}[:{symbol}]")
            continue
        m = CALL.match(stripped)
        if m and m.group("name") in calls:
            continue
        unknown.append(stripped.split()[0])
    return unknown
