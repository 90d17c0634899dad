"""``gitlab-cfn check``: the security gate."""

from __future__ import annotations

import argparse
import time

from gitlab_cfn.cli.common import build_option, note, quiet_option
from gitlab_cfn.errors import CheckFailed


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.verify.gate import run_gate

    started = time.perf_counter()
    result = run_gate(args.build)
    for finding in result.findings:
        print(finding)
    parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.timings.items())
    summary = (f"checked {result.templates} templates ({result.policies} policy documents) in "
               f"{time.perf_counter() - started:.1f}s [{parts}]: {len(result.findings)} "
               f"finding{'s' if len(result.findings) != 1 else ''}")
    if result.findings:
        raise CheckFailed(summary)
    note(args, summary)
    return 0


def register(sub) -> None:
    check = sub.add_parser(
        "check", help="security gate: checkov, IAM policy analysis, allowlisted skips",
        description="Scan every built template with checkov (offline), analyse every IAM policy "
                    "document with parliament and the project's IAM rules, refuse checkov skips "
                    "that are not allowlisted or carry no reason, and check that every server's "
                    "boot scripts are allowed their AWS calls (IAM, KMS) and can reach what they "
                    "connect to (security groups, routes, network ACLs). Exit 1 on any finding.")
    build_option(check)
    quiet_option(check)
    check.set_defaults(func=run)
