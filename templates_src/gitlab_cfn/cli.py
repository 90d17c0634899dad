"""``gitlab-cfn``: the command line.

Exit codes: 0 success, 1 a check failed (lint findings), 2 bad input (a config
field, a missing file, a bad argument). Results go to standard output, progress
and errors to standard error, errors as one line ``gitlab-cfn: error: ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import CheckFailed, GitlabCfnError

DEFAULT_BUILD = "build"


def _cmd_build(args: argparse.Namespace) -> int:
    from . import compiler, config

    started = time.perf_counter()
    cfg = config.load(args.config)
    manifest = compiler.write_build(cfg, args.out)
    elapsed = time.perf_counter() - started
    templates = manifest["templates"]
    if not args.quiet:
        for name, entry in templates.items():
            print(f"{Path(args.out) / entry['path']}  {entry['resources']} resources")
    resources = sum(e["resources"] for e in templates.values())
    _note(args, f"built {len(templates)} templates ({resources} resources, "
                f"{cfg.az_count} AZs) in {elapsed:.2f}s")
    return 0


def _cmd_lint(args: argparse.Namespace) -> int:
    from . import lint

    started = time.perf_counter()
    regions = tuple(args.regions.split(",")) if args.regions else lint.REGIONS
    findings, count = lint.lint_build(args.build, regions=regions, jobs=args.jobs)
    for finding in findings:
        print(finding)
    elapsed = time.perf_counter() - started
    summary = (f"linted {count} templates in {len(regions)} regions in {elapsed:.1f}s: "
               f"{len(findings)} finding{'s' if len(findings) != 1 else ''}")
    if findings:
        raise CheckFailed(summary)
    _note(args, summary)
    return 0


def _note(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="gitlab-cfn",
        description="Compile self-managed GitLab on AWS into nested CloudFormation templates.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    build = sub.add_parser(
        "build", help="compile the templates into a build folder",
        description="Compile the parent and nested templates, and write them with "
                    "manifest.json. The previous build is replaced only when the new one "
                    "is complete.")
    build.add_argument("--config", metavar="FILE",
                       help="YAML build config (all keys optional; see docs/configuration.md)")
    build.add_argument("--out", metavar="DIR", default=DEFAULT_BUILD,
                       help=f"build folder (default: {DEFAULT_BUILD})")
    build.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    build.set_defaults(func=_cmd_build)

    lint = sub.add_parser(
        "lint", help="validate every built template with cfn-lint",
        description="Lint every template of a build with cfn-lint, informational checks "
                    "included. Exit 1 on any finding that is not suppressed with a reason.")
    lint.add_argument("--build", metavar="DIR", default=DEFAULT_BUILD,
                      help=f"build folder (default: {DEFAULT_BUILD})")
    lint.add_argument("--regions", metavar="R1,R2",
                      help="regions to lint for (default: the regions taskcat tests in)")
    lint.add_argument("--jobs", type=int, metavar="N", help="parallel processes (default: cores)")
    lint.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    lint.set_defaults(func=_cmd_lint)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except GitlabCfnError as exc:
        print(f"gitlab-cfn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gitlab-cfn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
