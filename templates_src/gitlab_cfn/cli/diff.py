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

    from gitlab_cfn.operate import plan
    from gitlab_cfn.verify.replacement import _load

    allow = set(args.allow)
    notice = None   # what deploy will do beyond the templates' changes
    if args.stack_name or args.local or args.endpoint_url or args.region:
        if args.against or args.old or args.new:
            raise ConfigError("diff: --stack-name compares the deployed stack with --build; "
                              "give no OLD NEW or --against with it")
        if not (args.stack_name and args.region):
            raise ConfigError("diff: --stack-name and --region name the deployed stack to compare with --build")
        from gitlab_cfn.cli.common import Endpoint
        from gitlab_cfn.operate.deploy import _existing, deployed_templates

        from gitlab_cfn.compile.compiler import product_entries, read_manifest
        from gitlab_cfn.compile.naming import MAIN
        from gitlab_cfn.compile.naming import stack_id as tier_stack_id

        folder = _build_dir(args.build, "--build")
        new = {tier: t for tier, t in _load(folder).items() if tier in product_entries(read_manifest(folder))}
        with Endpoint(args) as aws:
            cfn = aws.client("cloudformation", args.region)
            existing = _existing(cfn, args.stack_name)
            if existing is None:
                raise ConfigError(f"--stack-name: no stack {args.stack_name} in {args.region}")
            old = deployed_templates(cfn, existing["StackId"])
            from gitlab_cfn.operate import smtp_upgrade

            previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in existing.get("Parameters", [])}
            notice = smtp_upgrade.diff_line(aws, args.region, args.stack_name, previous,
                                            new.get(MAIN, {}).get("Parameters") or {})
        # A nested stack the parent creates only under a condition (the DNS stack, with a hosted
        # zone) is not there when its condition was false: not an addition of the build.
        resources = new.get(MAIN, {}).get("Resources") or {}
        for tier in [t for t in new if t not in old]:
            if resources.get(tier_stack_id(tier), {}).get("Condition"):
                del new[tier]
        rows = plan.plan(old, new, allow, args.region)
    elif args.against:
        if args.old or args.new:
            raise ConfigError("diff: give OLD and NEW build folders, or --against GIT_REF, not both")
        with tempfile.TemporaryDirectory(prefix="gitlab-cfn-diff-") as workdir:
            old_dir = build_revision(args.against, args.config, Path(workdir))
            rows = plan.plan(_load(old_dir), _load(_build_dir(args.build, "--build")), allow)
    else:
        if not (args.old and args.new):
            raise ConfigError("diff: give OLD and NEW build folders, --against GIT_REF, or --stack-name and --region")
        rows = plan.plan(_load(_build_dir(args.old, "OLD")), _load(_build_dir(args.new, "NEW")), allow)

    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(plan.text(rows), end="")
    if notice:
        print(notice, file=sys.stderr if args.json else sys.stdout)
    refused = plan.refusal(rows, "--allow")
    if refused:
        raise CheckFailed(refused)
    note(args, plan.summary(rows))
    return 0


def _build_dir(path: str, what: str) -> Path:
    folder = Path(path)
    if not (folder / "manifest.json").is_file():
        raise ConfigError(f"{what}: {path} is not a build folder (no manifest.json; make one with gitlab-cfn build)")
    return folder


def register(sub) -> None:
    diff = sub.add_parser(
        "diff", help="list every change an update would make: added, modified, replaced, deleted",
        description="Compare two builds, a git revision with --build, or the stack deployed as --stack-name "
                    "with --build, template by template, and list every resource an update would add, modify "
                    "(naming the properties), replace (type or create-only property changed, or in cascade) or "
                    "delete. Exit 1 if a replaced or deleted one holds data (databases, caches, buckets, keys, "
                    "secrets, volumes, the Gitaly server) and is not allowed with --allow.")
    diff.add_argument("old", nargs="?", metavar="OLD", help="build folder of the deployed version")
    diff.add_argument("new", nargs="?", metavar="NEW", help="build folder of the new version")
    diff.add_argument("--against", metavar="GIT_REF", help="build this revision as OLD, and compare with --build")
    diff.add_argument("--build", metavar="DIR", default=DEFAULT_BUILD,
                      help="NEW with --against or --stack-name (default: build)")
    diff.add_argument("--config", metavar="FILE", help="config for building the --against revision")
    diff.add_argument("--stack-name", help="compare the templates this deployed stack runs with --build")
    diff.add_argument("--region", help="region of --stack-name")
    diff.add_argument("--local", action="store_true", help="use the persistent local stand-in (gitlab-cfn standin)")
    diff.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint (for example a running stand-in)")
    diff.add_argument("--allow", action="append", default=[], metavar="TIER:LOGICAL_ID",
                      help="accept replacing or deleting this data resource (repeatable)")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.add_argument("-q", "--quiet", action="store_true", help="no summary on success")
    diff.set_defaults(func=run)
