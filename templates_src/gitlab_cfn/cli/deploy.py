"""``gitlab-cfn deploy``: upload the build and create or update the stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from gitlab_cfn.cli.common import Endpoint, aws_arguments, build_option, note, stack_options


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.operate import deploy, local
    from gitlab_cfn.operate.progress import Progress

    build = Path(args.build)
    params = deploy.load_params(args.params, args.param)
    request = deploy.DeployRequest(stack_name=args.stack_name, region=args.region, build_dir=build,
                                   params=params, bucket=args.bucket, prefix=args.prefix,
                                   allow_replace=set(args.allow_replace), assume_yes=args.yes,
                                   tags=deploy.parse_tags(args.tags), role_arn=args.role_arn,
                                   poll=args.poll_seconds)
    progress = Progress(quiet=args.quiet)
    template, manifest = deploy._parent_template(build)   # a missing build fails before anything starts
    deploy.check_request(request)
    with Endpoint(args, one_shot=True) as aws:
        if args.local:
            running = deploy._existing(aws.client("cloudformation", args.region), args.stack_name)
            previous = {p["ParameterKey"] for p in (running or {}).get("Parameters", [])}
            filled = local.fill(aws, args.region, template, params, manifest["config"]["az_count"], skip=previous)
            for name, value in filled.items():
                progress.done(f"local value {name} = {value}")
            request.params = {**filled, **params}
        result = deploy.deploy(request, aws, progress)
    if args.json:
        print(deploy.as_json(result))
    else:
        print(deploy.outputs_table(result.outputs))
    note(args, f"stack {args.stack_name}: {result.status}")
    return 0


def register(sub) -> None:
    deploy_p = sub.add_parser(
        "deploy", help="upload the build and create or update the stack, showing progress",
        description="Check the parameters against the template, upload the build to S3, create the "
                    "stack (or update it through a change set: every resource change of every nested "
                    "stack is shown, an update that would replace or delete a data resource is refused, "
                    "and the rest is executed once confirmed), show progress, and print the outputs. "
                    "Parameters not given keep their previous values on an update; image ids (*AmiId) "
                    "not given come from the image SSM parameter at creation. On failure, name the "
                    "first failing resource of the deepest failing nested stack and exit 1. "
                    "A new stack gets termination protection (destroy turns it off).")
    aws_arguments(deploy_p, one_shot=True)
    stack_options(deploy_p,
                  params_help="parameter values: a JSON or YAML mapping, {\"Parameters\": {...}} (aws "
                              "cloudformation deploy, taskcat), or a ParameterKey/ParameterValue list",
                  role_help="IAM role CloudFormation assumes to create and update the stack",
                  bucket_help="template bucket (default: gitlab-cfn-<region>-<account>, created if missing)")
    deploy_p.add_argument("--prefix", help="key prefix in the bucket (default: gitlab-cfn/<stack name>/<build digest>/, new for every changed build)")
    build_option(deploy_p)
    deploy_p.add_argument("--allow-replace", action="append", default=[], metavar="LOGICAL_ID",
                          help="accept an update that replaces or deletes this data resource, as LOGICAL_ID "
                               "or TIER:LOGICAL_ID (repeatable)")
    deploy_p.add_argument("--yes", action="store_true",
                          help="execute the update's change set without asking (for scripts; without a "
                               "terminal and without --yes an update is refused)")
    deploy_p.set_defaults(func=run)
