"""Checks a rendered gitlab.rb against the settings a GitLab release documents.

The facts come from ``versions.settings()`` (``data/gitlab-rb-settings.json``,
derived by ``scripts/derive_gitlab_rb_keys.py`` from the Linux package's
``gitlab.rb.template`` of each release standing for a supported minor). Every
setting a gitlab.rb assigns must be documented there, so a typo such as
``gitlab_rail['db_host']`` or a key the release does not know yet
(``gitlab_rails['nginx'][...]`` before 19.3's template) is caught before an
instance boots. Symbol keys of a hash setting (``gitaly['configuration'] = {
listen_addr: ... }``) must appear in that setting's documented block too.
"""

from __future__ import annotations

import re

from gitlab_cfn.compile import versions

ASSIGNMENT = re.compile(r"^(?P<key>[a-z_]+(?:\['[a-z_]+'\])+)\s*=\s*(?P<value>.*)$")
CALL = re.compile(r"^(?P<name>[a-z_]+)[ (]")
SYMBOL_KEY = re.compile(r"\b([a-z_]+):\s")


def release_for(version: str) -> str:
    """The release whose template stands for VERSION's minor (``19.3.0-ee`` -> ``19.3.0``)."""
    parsed = versions.check_supported(version.split("-", 1)[0], "installed GitLab version")
    return versions.SETTINGS_RELEASE[parsed[:2]]


def documented_symbols(facts: dict) -> dict[str, set[str]]:
    """Per hash setting, the symbol keys the release documents: its gitlab.rb template's block,
    and those GitLab documents elsewhere for a hash the release's cookbook passes whole to its
    service (``beyond_template``: Gitaly's ``backup: { go_cloud_url: }``, configure_gitaly.md)."""
    symbols = {key: set(names) for key, names in facts["symbols"].items()}
    for key, beyond in facts.get("beyond_template", {}).items():
        symbols.setdefault(key, set()).update(beyond["symbols"])
    return symbols


def unknown_settings(rendered: str, release: str | None = None) -> list[str]:
    """The settings a rendered gitlab.rb uses that RELEASE's template does not document.

    Without RELEASE: those undocumented in any supported release (a file that
    must be valid on every version, such as a Gitaly server's).
    """
    if release is None:
        found: list[str] = []
        for each in versions.SETTINGS_RELEASE.values():
            found += [k for k in unknown_settings(rendered, each) if k not in found]
        return found
    facts = versions.settings()[release]
    # external_url is the one call the template sets uncommented (GENERATED_EXTERNAL_URL).
    keys, calls = set(facts["keys"]), set(facts["calls"]) | {"external_url"}
    symbols = documented_symbols(facts)
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
            elif key in symbols and m.group("value").rstrip().endswith("{"):
                body = []
                for follow in lines[i + 1:]:
                    if follow.startswith("}"):
                        break
                    body.append(follow)
                for symbol in SYMBOL_KEY.findall("\n".join(body)):
                    if symbol not in symbols[key]:
                        unknown.append(f"{key}[:{symbol}]")
            continue
        m = CALL.match(stripped)
        if m and m.group("name") in calls:
            continue
        unknown.append(stripped.split()[0])
    return unknown
