"""``gitlab-cfn lint``: cfn-lint every built template."""

from __future__ import annotations

import argparse
import time

from gitlab_cfn.cli.common import build_option, note, quiet_option
from gitlab_cfn.errors import CheckFailed


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.verify import lint

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
    note(args, summary)
    return 0


def register(sub) -> None:
    lint = sub.add_parser(
        "lint", help="validate every built template with cfn-lint",
        description="Lint every template of a build with cfn-lint, informational checks "
                    "included. Exit 1 on any finding that is not suppressed with a reason.")
    build_option(lint)
    lint.add_argument("--regions", metavar="R1,R2",
                      help="regions to lint for (default: the regions taskcat tests in)")
    lint.add_argument("--jobs", type=int, metavar="N", help="parallel processes (default: cores)")
    quiet_option(lint)
    lint.set_defaults(func=run)
