"""``gitlab-cfn upgrade``: GitLab's zero-downtime upgrade of a deployed stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from gitlab_cfn.cli.common import Endpoint, aws_arguments, build_option, note


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.operate import upgrade
    from gitlab_cfn.operate.progress import Progress

    request = upgrade.UpgradeRequest(
        stack_name=args.stack_name, region=args.region, gitlab_version=args.gitlab_version,
        build_dir=Path(args.build), yes=args.yes, bucket=args.bucket, prefix=args.prefix,
        poll=args.poll_seconds, allow_replace=set(args.allow_replace))
    with Endpoint(args) as aws:
        result = upgrade.upgrade(request, aws, Progress(quiet=args.quiet))
    if args.json:
        print(upgrade.as_json(result))
    else:
        print(f"GitLab {result.current} -> {result.target}: image {result.image}; repository servers "
              f"{', '.join(result.repository_servers)} upgraded in place; post-deployment migrations on "
              f"{result.migrations_on}; stack {result.status}")
    note(args, f"stack {args.stack_name}: GitLab {result.target}")
    return 0


def register(sub) -> None:
    upgrade_p = sub.add_parser(
        "upgrade", help="upgrade GitLab on a deployed stack, one minor version at a time, without downtime",
        description="GitLab's zero-downtime upgrade: check the step (one minor version, no downgrade) and the "
                    "image (the stack's image parameter must name an image of the target version: run bake-ami first), "
                    "PostgreSQL 17 for GitLab 19 and the SSM agents, ask once, upgrade the Gitaly servers in place through SSM Run Command, roll the GitLab servers "
                    "through a change set (regular migrations only), then run the post-deployment "
                    "migrations once. Progress and exit codes as deploy.")
    aws_arguments(upgrade_p)
    upgrade_p.add_argument("--gitlab-version", required=True, metavar="X.Y.Z", help="the GitLab version to run")
    upgrade_p.add_argument("--bucket", help="template bucket, as given to deploy (default: gitlab-cfn-<region>-<account>)")
    upgrade_p.add_argument("--prefix", help="key prefix in the bucket, as given to deploy")
    build_option(upgrade_p)
    upgrade_p.add_argument("--yes", action="store_true", help="upgrade without asking (needed without a terminal)")
    upgrade_p.add_argument("--allow-replace", action="append", default=[], metavar="LOGICAL_ID",
                           help="accept an update that replaces this data resource (repeatable)")
    upgrade_p.set_defaults(func=run)
