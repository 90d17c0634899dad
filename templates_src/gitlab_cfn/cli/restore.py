"""``gitlab-cfn restore``: a new stack from the data a deleted stack left behind."""

from __future__ import annotations

import argparse
from pathlib import Path

from gitlab_cfn.cli.common import Endpoint, aws_arguments, build_option, note, stack_options


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.operate import deploy, local
    from gitlab_cfn.operate.progress import Progress
    from gitlab_cfn.operate.restore import restore

    build = Path(args.build)
    params = deploy.load_params(args.params, args.param)
    request = deploy.DeployRequest(stack_name=args.stack_name, region=args.region, build_dir=build,
                                   params=params, bucket=args.bucket, tags=deploy.parse_tags(args.tags),
                                   role_arn=args.role_arn, poll=args.poll_seconds)
    progress = Progress(quiet=args.quiet)
    template, manifest = deploy._parent_template(build)   # a missing build fails before anything starts
    deploy.check_request(request)
    deploy.check_stack_name(args.source, "--from")
    if args.from_region is not None:
        from gitlab_cfn.operate.aws import check_region
        check_region(args.from_region, "--from-region")
    with Endpoint(args) as aws:
        def fill(given: dict[str, str]) -> dict[str, str]:
            filled = local.fill(aws, args.region, template, given, manifest["config"]["az_count"])
            for name, value in filled.items():
                progress.done(f"local value {name} = {value}")
            return filled

        _, _, result = restore(args.source, request, aws, progress, dry_run=args.dry_run,
                               fill=fill if args.local else None, from_region=args.from_region)
    if result is None:
        return 0
    if args.json:
        print(deploy.as_json(result))
    else:
        print(deploy.outputs_table(result.outputs))
    note(args, f"stack {args.stack_name}: {result.status} (restored from {args.source})")
    return 0


def register(sub) -> None:
    restore_p = sub.add_parser(
        "restore", help="create a new stack from a deleted stack's snapshots, buckets, key and secrets",
        description="Find what the deleted stack --from left (its record is kept by CloudFormation for 90 "
                    "days): the final database snapshot, the latest snapshot of each Gitaly volume, the "
                    "retained buckets, KMS key, database secret, gitlab-secrets.json and SSH host keys. "
                    "Check that each exists and is usable before creating anything (a missing one: one line "
                    "naming it, exit 2), show the plan, then create --stack-name with gitlab-cfn deploy and "
                    "the restore parameters: the database restored from the snapshot (its password kept), "
                    "the Gitaly volumes from theirs, GitLab on the old buckets, the old secrets seeded; the "
                    "database's PostgreSQL major is the snapshot's, sizes at least the snapshots' and IOPS "
                    "checked against them; the old buckets' access logs are pointed at the new log bucket. "
                    "A stack that was itself restored is restored from the first stack's buckets and key "
                    "(carried forward from its parameters). "
                    "With --from-region, the old stack was in that region: its snapshots and secrets are "
                    "copied into --region first (docs/operations.md, Restoring).")
    aws_arguments(restore_p)
    restore_p.add_argument("--from", dest="source", required=True, metavar="OLD_STACK",
                           help="name of the deleted stack whose data the new one starts from")
    restore_p.add_argument("--from-region", metavar="REGION",
                           help="region of the deleted stack, when it is not --region: its database and "
                                "volume snapshots and its secrets are copied into --region (kept), its "
                                "buckets used where they are")
    restore_p.add_argument("--dry-run", action="store_true",
                           help="find and check the old stack's data, show the plan, create nothing")
    stack_options(restore_p, params_help="parameter values of the new stack, as for deploy",
                  role_help="IAM role CloudFormation assumes to create the stack",
                  bucket_help="template bucket (default: gitlab-cfn-<region>-<account>)")
    build_option(restore_p)
    restore_p.set_defaults(func=run)
