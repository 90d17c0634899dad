#!/usr/bin/env python3
"""Derive, from the Linux package's gitlab.rb templates, the settings each GitLab version knows.

The tests check every gitlab.rb the boot scripts render against the settings of
every supported GitLab version (``gitlab_cfn.compile.versions``). They cannot
read GitLab's templates (a user's clone has no ``../shared``), so this script
reduces each template to the facts the check needs and the repo keeps them in
``templates_src/gitlab_cfn/data/gitlab-rb-settings.json``:

- ``keys``: every documented setting and each of its prefixes
  (``gitlab_rails['object_store']['objects']`` ...), from the commented
  ``# key['sub'] = value`` lines;
- ``calls``: documented top-level calls (``external_url`` ...);
- ``symbols``: for a setting documented as a hash (``gitaly['configuration'] = {``),
  the symbol keys its documented block names (``listen_addr`` ...);
- ``beyond_template`` (with ``--omnibus``): symbol keys GitLab documents elsewhere for a hash
  the package passes whole to its service (``BEYOND_TEMPLATE``), kept for a version only when
  that version's cookbook is seen doing so.

Templates are read from a folder of ``<version>.template`` files (default:
``../shared/reference/gitlab-rb``) and, with ``--omnibus GIT_DIR``, from a clone of
omnibus-gitlab at its ``<version>+ee.0`` tags for versions the folder lacks.

    python3 scripts/derive_gitlab_rb_keys.py [--templates DIR] [--omnibus GIT_DIR] VERSION...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "templates_src" / "gitlab_cfn" / "data" / "gitlab-rb-settings.json"
TEMPLATE_PATH = "files/gitlab-config-template/gitlab.rb.template"
ASSIGNMENT = re.compile(r"^(?P<key>[a-z_]+(?:\['[a-z_]+'\])+)\s*=\s*(?P<value>.*)$")
CALL = re.compile(r"^(?P<name>[a-z_]+)[ (]")
SYMBOL_KEY = re.compile(r"#\s+([a-z_]+):\s")


# Symbol keys GitLab documents outside gitlab.rb.template, for a hash setting the package writes
# whole into its service's configuration file: setting -> (symbols, cookbook checks, source).
# A version gets them only if each (path, text) of the checks is in its cookbook at <version>+ee.0.
BEYOND_TEMPLATE = {
    "gitaly['configuration']": (
        ["backup", "go_cloud_url"],
        [("files/gitlab-cookbooks/gitaly/templates/default/gitaly-config.toml.erb", "<%= Tomlib.dump(@configuration) %>"),
         ("files/gitlab-cookbooks/gitaly/recipes/enable.rb", "configuration: node.dig('gitaly', 'configuration').merge(")],
        "https://docs.gitlab.com/administration/gitaly/configure_gitaly/#configure-server-side-backups "
        "(gitaly['configuration'] = { backup: { go_cloud_url: 's3://<bucket>?region=<region>' } })",
    ),
}


def beyond_template(version: str, omnibus: Path) -> dict:
    found = {}
    for setting, (symbols, checks, source) in BEYOND_TEMPLATE.items():
        passed = True
        for path, text in checks:
            shown = subprocess.run(["git", "--git-dir", str(omnibus), "show", f"{version}+ee.0:{path}"],
                                   capture_output=True, text=True)
            passed = passed and shown.returncode == 0 and text in shown.stdout
        if passed:
            found[setting] = {"symbols": sorted(symbols), "source": source,
                              "passed_whole_by": [f"omnibus-gitlab {version}+ee.0:{path}" for path, _ in checks]}
    return found


def documented(template: str) -> dict:
    keys, calls, symbols = set(), set(), {}
    lines = template.splitlines()
    for i, line in enumerate(lines):
        text = line.lstrip("#").strip()
        m = ASSIGNMENT.match(text)
        if m:
            key = m.group("key")
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
                symbols.setdefault(key, set()).update(SYMBOL_KEY.findall("\n".join(block)))
            continue
        # A documented call: commented out (``# roles [...]``) or live, as the template's
        # one uncommented line, ``external_url 'GENERATED_EXTERNAL_URL'``.
        m = CALL.match(text)
        if m and (line.startswith("#") or line == text):
            calls.add(m.group("name"))
    return {"keys": sorted(keys), "calls": sorted(calls),
            "symbols": {k: sorted(v) for k, v in sorted(symbols.items())}}


def read_template(version: str, folder: Path, omnibus: Path | None) -> tuple[str, str]:
    path = folder / f"{version}.template"
    if path.is_file():
        return path.read_text(), f"gitlab-rb/{version}.template (omnibus-gitlab {version}+ee.0)"
    if omnibus is None:
        raise SystemExit(f"{path} is missing; give --omnibus GIT_DIR to read tag {version}+ee.0")
    shown = subprocess.run(["git", "--git-dir", str(omnibus), "show", f"{version}+ee.0:{TEMPLATE_PATH}"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"omnibus-gitlab has no {TEMPLATE_PATH} at {version}+ee.0: {shown.stderr.strip()}")
    return shown.stdout, f"omnibus-gitlab {version}+ee.0:{TEMPLATE_PATH}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", metavar="VERSION", help="e.g. 18.11.11 19.3.0")
    parser.add_argument("--templates", type=Path, default=REPO.parent / "shared" / "reference" / "gitlab-rb")
    parser.add_argument("--omnibus", type=Path, help="a git dir of omnibus-gitlab, for versions not in --templates")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = {}
    for version in args.versions:
        text, source = read_template(version, args.templates, args.omnibus)
        data[version] = {"source": source, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                         **documented(text)}
        if args.omnibus is not None:
            data[version]["beyond_template"] = beyond_template(version, args.omnibus)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: " + ", ".join(f"{v} ({len(d['keys'])} keys)" for v, d in data.items()),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
