"""``gitlab-cfn diff``: what an update between two builds would replace or delete."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gitlab_cfn.cli.common import DEFAULT_BUILD, note
from gitlab_cfn.errors import CheckFailed, ConfigError


def build_revision(ref: str, config_file: str | None, workdir: Path) -> Path:
    """Build the templates of a git revision, with the current environment."""
    import subprocess

    def git(*cmd, **kwargs):
        return subprocess.run(["git", *cmd], capture_output=True, **kwargs)

    top = git("rev-parse", "--show-toplevel", text=True)
    if top.returncode != 0:
        raise ConfigError("--against: not inside a git checkout")
    root = top.stdout.strip()
    if git("-C", root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise ConfigError(f"--against: {ref!r} is not a commit of this repository")
    source = workdir / "source"
    source.mkdir()
    archive = git("-C", root, "archive", "--format=tar", ref)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    out = workdir / "build"
    command = [sys.executable, "-m", "gitlab_cfn", "build", "-q", "--out", str(out)]
    if config_file:
        command += ["--config", str(Path(config_file).resolve())]
    built = subprocess.run(command, cwd=source, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(source / "templates_src")})
    if built.returncode != 0:
        raise CheckFailed(f"--against: building {ref} failed: {built.stderr.strip().splitlines()[-1:]}")
    return out


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from gitlab_cfn.verify.replacement import diff_builds

    if args.against:
        if args.old or args.new:
            raise ConfigError("diff: give OLD and NEW build folders, or --against GIT_REF, not both")
        with tempfile.TemporaryDirectory(prefix="gitlab-cfn-diff-") as workdir:
            old = build_revision(args.against, args.config, Path(workdir))
            changes = diff_builds(old, args.build, set(args.allow))
    else:
        if not (args.old and args.new):
            raise ConfigError("diff: give OLD and NEW build folders, or --against GIT_REF")
        changes = diff_builds(args.old, args.new, set(args.allow))

    if args.json:
        print(json.dumps([c.__dict__ for c in changes], indent=2))
    else:
        template = None
        for change in changes:
            if change.template != template:
                template = change.template
                print(f"{template}.template.yaml")
            print(f"  {change}")
    blocking = [c for c in changes if c.blocking]
    counts = {action: sum(1 for c in changes if c.action == action) for action in ("replace", "may replace", "delete")}
    summary = (f"{counts['replace']} replaced, {counts['may replace']} may be replaced, {counts['delete']} deleted; "
               f"{sum(c.holds_data for c in changes)} hold data, {sum(c.data_loss for c in changes)} without "
               "Retain or Snapshot")
    if blocking:
        named = "; ".join(f"{c.name} would be {'deleted' if c.action == 'delete' else 'replaced'} "
                          f"({', '.join(c.reasons)})" + (" with DATA LOSS" if c.data_loss else "")
                          for c in blocking)
        raise CheckFailed(f"{named}: it holds data; allow it with --allow TIER:LOGICAL_ID ({summary})")
    note(args, summary)
    return 0


def register(sub) -> None:
    diff = sub.add_parser(
        "diff", help="list what an update between two builds would replace or delete",
        description="Compare two builds, template by template, and list the resources an update "
                    "would replace (type or create-only property changed, or in cascade) or delete. "
                    "Exit 1 if one of them holds data (databases, caches, buckets, keys, secrets, "
                    "volumes, the Gitaly server) and is not allowed with --allow.")
    diff.add_argument("old", nargs="?", metavar="OLD", help="build folder of the deployed version")
    diff.add_argument("new", nargs="?", metavar="NEW", help="build folder of the new version")
    diff.add_argument("--against", metavar="GIT_REF", help="build this revision as OLD, and compare with --build")
    diff.add_argument("--build", metavar="DIR", default=DEFAULT_BUILD, help="NEW with --against (default: build)")
    diff.add_argument("--config", metavar="FILE", help="config for building the --against revision")
    diff.add_argument("--allow", action="append", default=[], metavar="TIER:LOGICAL_ID",
                      help="accept replacing or deleting this data resource (repeatable)")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.add_argument("-q", "--quiet", action="store_true", help="no summary on success")
    diff.set_defaults(func=run)
