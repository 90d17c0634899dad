"""``gitlab-cfn``: the command line.

Exit codes: 0 success, 1 a check failed (lint findings), 2 bad input (a config
field, a missing file, a bad argument). Results go to standard output, progress
and errors to standard error, errors as one line ``gitlab-cfn: error: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import CheckFailed, ConfigError, GitlabCfnError

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


def _cmd_check(args: argparse.Namespace) -> int:
    from .security.gate import run_gate

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
    _note(args, summary)
    return 0


def _build_revision(ref: str, config_file: str | None, workdir: Path) -> Path:
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


def _cmd_diff(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from .security.replacement import diff_builds

    if args.against:
        if args.old or args.new:
            raise ConfigError("diff: give OLD and NEW build folders, or --against GIT_REF, not both")
        with tempfile.TemporaryDirectory(prefix="gitlab-cfn-diff-") as workdir:
            old = _build_revision(args.against, args.config, Path(workdir))
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
    _note(args, summary)
    return 0


class _Endpoint:
    """--local starts the stand-in for the command's duration; --endpoint-url uses one."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.standin = None

    def __enter__(self):
        from .aws import Aws

        if getattr(self.args, "local", False):
            if self.args.endpoint_url:
                raise ConfigError("--local and --endpoint-url exclude each other")
            from .standin import StandIn

            self.standin = StandIn().start()
            _note(self.args, f"local AWS stand-in at {self.standin.endpoint} (stops when this command ends)")
            return Aws(endpoint_url=self.standin.endpoint)
        return Aws(endpoint_url=self.args.endpoint_url)

    def __exit__(self, *exc):
        if self.standin:
            self.standin.stop()


def _cmd_deploy(args: argparse.Namespace) -> int:
    from . import deploy, local
    from .progress import Progress

    build = Path(args.build)
    params = deploy.load_params(args.params)
    request = deploy.DeployRequest(stack_name=args.stack_name, region=args.region, build_dir=build,
                                   params=params, bucket=args.bucket, prefix=args.prefix,
                                   allow_replace=set(args.allow_replace), poll=args.poll_seconds)
    progress = Progress(quiet=args.quiet)
    with _Endpoint(args) as aws:
        if args.local:
            template, manifest = deploy._parent_template(build)
            filled = local.fill(aws, args.region, template, params, manifest["config"]["az_count"])
            for name, value in filled.items():
                progress.done(f"local value {name} = {value}")
            request.params = {**filled, **params}
        result = deploy.deploy(request, aws, progress)
    if args.json:
        print(deploy.as_json(result))
    else:
        print(deploy.outputs_table(result.outputs))
    _note(args, f"stack {args.stack_name}: {result.status}")
    return 0


def _cmd_destroy(args: argparse.Namespace) -> int:
    import json

    from .destroy import destroy
    from .progress import Progress

    if args.confirm != args.stack_name:
        raise ConfigError(f"--confirm: repeat the stack name to delete it (--confirm {args.stack_name}); "
                          "its data is kept (buckets, key, secrets) or snapshotted (database, volumes)")
    with _Endpoint(args) as aws:
        result = destroy(args.stack_name, args.region, aws, Progress(quiet=args.quiet), args.poll_seconds)
    if args.json:
        print(json.dumps([item.__dict__ for item in result.kept], indent=2))
    else:
        for item in result.kept:
            print(item.line())
    missing = [k for k in result.kept if not k.found]
    _note(args, f"stack {args.stack_name}: {result.status}; {len(result.kept) - len(missing)} data resources "
                f"kept" + (f", {len(missing)} not found" if missing else ""))
    return 0


def _publish_request(args: argparse.Namespace, **extra):
    """The published location that ``publish`` writes and ``catalog publish`` reads."""
    from .publish import PublishRequest

    return PublishRequest(
        bucket=args.bucket, regions=[r for r in (args.regions or "").split(",") if r], prefix=args.prefix,
        version=args.version or __version__, single_bucket=args.single_bucket, **extra)


def _cmd_publish(args: argparse.Namespace) -> int:
    import json

    from .publish import launch_table, publish
    from .progress import Progress

    request = _publish_request(args, force=args.force, build_dir=Path(args.build), stack_name=args.stack_name)
    with _Endpoint(args) as aws:
        if args.local:
            for bucket, region in dict.fromkeys(request.bucket_for(r) for r in request.regions):
                from .deploy import ensure_bucket

                ensure_bucket(aws.client("s3", region), bucket, region)
        result = publish(request, aws, Progress(quiet=args.quiet))
    table = launch_table(request, result)
    (Path(args.build) / "launch.md").write_text(table)
    if args.json:
        print(json.dumps({"version": request.version, "key_prefix": request.key_prefix, "links": result.links,
                          "portfolio_links": result.portfolio_links,
                          "template_urls": result.urls, "uploaded": result.uploaded,
                          "skipped": result.skipped}, indent=2, sort_keys=True))
    else:
        print(table, end="")
    _note(args, f"published {request.version}: {len(result.uploaded)} uploaded, {len(result.skipped)} unchanged; "
                f"links in {Path(args.build) / 'launch.md'}")
    return 0


def _cmd_catalog_publish(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from . import portfolio
    from .progress import Progress

    request = portfolio.CatalogRequest(portfolio_stack=args.portfolio_stack, publish=_publish_request(args),
                                       deprecate_older=args.deprecate_older)
    with _Endpoint(args) as aws:
        results = portfolio.add_version(request, aws, Progress(quiet=args.quiet))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, sort_keys=True))
    else:
        print(portfolio.table(results), end="")
    added = sum(r.added for r in results)
    _note(args, f"version {request.publish.version}: added in {added} of {len(results)} regions")
    return 0


def _cmd_standin(args: argparse.Namespace) -> int:
    from .standin import StandIn

    server = StandIn().start()
    print(server.endpoint, flush=True)
    _note(args, f"local AWS stand-in running: use --endpoint-url {server.endpoint} "
                f"(AWS_ENDPOINT_URL={server.endpoint}); Ctrl-C stops it")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _build_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", metavar="DIR", default=DEFAULT_BUILD,
                        help=f"build folder (default: {DEFAULT_BUILD})")


def _location_options(parser: argparse.ArgumentParser, regions_help: str, version_help: str) -> None:
    """Where a build is published: the same options for ``publish`` and ``catalog publish``."""
    parser.add_argument("--bucket", required=True, help="bucket name (per region: <bucket>-<region>)")
    parser.add_argument("--regions", metavar="R1,R2", required=True, help=regions_help)
    parser.add_argument("--prefix", default="gitlab-cfn", help="key prefix (default: gitlab-cfn)")
    parser.add_argument("--version", help=f"{version_help} (default: the package version, {__version__})")
    parser.add_argument("--single-bucket", action="store_true", help="one bucket, in the first region, for all")


def _quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def _aws_arguments(parser: argparse.ArgumentParser, local: bool = True) -> None:
    parser.add_argument("--stack-name", required=True, help="CloudFormation stack name")
    parser.add_argument("--region", required=True, help="AWS region")
    if local:
        parser.add_argument("--local", action="store_true",
                            help="run against a local AWS stand-in started for this command")
    parser.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint (for example a running stand-in)")
    parser.add_argument("--poll-seconds", type=float, default=10, metavar="S", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")


def _cmd_bake_ami(args: argparse.Namespace) -> int:
    from . import bake
    from .aws import Aws
    from .progress import Progress

    request = bake.BakeRequest(
        gitlab_version=args.gitlab_version,
        region=args.region,
        copy_regions=tuple(r for r in (args.copy_to or "").split(",") if r),
        edition=args.edition,
        source=args.source,
        instance_type=args.instance_type,
        subnet_id=args.subnet_id,
        ssm_parameter=args.ssm_parameter,
        timeout=args.timeout * 60,
        poll=args.poll_seconds,
    )
    result = bake.bake(request, Aws(endpoint_url=args.endpoint_url), Progress(quiet=args.quiet))
    if args.json:
        print(bake.as_json(result))
    else:
        for region, image in result.images.items():
            print(f"{region}\t{image}")
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
    _quiet_option(build)
    build.set_defaults(func=_cmd_build)

    lint = sub.add_parser(
        "lint", help="validate every built template with cfn-lint",
        description="Lint every template of a build with cfn-lint, informational checks "
                    "included. Exit 1 on any finding that is not suppressed with a reason.")
    _build_option(lint)
    lint.add_argument("--regions", metavar="R1,R2",
                      help="regions to lint for (default: the regions taskcat tests in)")
    lint.add_argument("--jobs", type=int, metavar="N", help="parallel processes (default: cores)")
    _quiet_option(lint)
    lint.set_defaults(func=_cmd_lint)

    check = sub.add_parser(
        "check", help="security gate: checkov, IAM policy analysis, allowlisted skips",
        description="Scan every built template with checkov (offline), analyse every IAM policy "
                    "document with parliament and the project's IAM rules, and refuse checkov skips "
                    "that are not allowlisted or carry no reason. Exit 1 on any finding.")
    _build_option(check)
    _quiet_option(check)
    check.set_defaults(func=_cmd_check)

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
    diff.set_defaults(func=_cmd_diff)

    deploy_p = sub.add_parser(
        "deploy", help="upload the build and create or update the stack, showing progress",
        description="Check the parameters against the template, upload the build to S3, create the "
                    "stack (or update it through a change set, shown first and refused when it would "
                    "replace a data resource), show progress, and print the outputs. On failure, name "
                    "the first failing resource of the deepest failing nested stack and exit 1.")
    _aws_arguments(deploy_p)
    deploy_p.add_argument("--params", metavar="FILE", help="parameter values: JSON or YAML mapping, or "
                                                          "CloudFormation's ParameterKey/ParameterValue list")
    deploy_p.add_argument("--bucket", help="template bucket (default: gitlab-cfn-<region>-<account>, created if missing)")
    deploy_p.add_argument("--prefix", help="key prefix in the bucket (default: gitlab-cfn/<stack name>/<build digest>/, new for every changed build)")
    _build_option(deploy_p)
    deploy_p.add_argument("--allow-replace", action="append", default=[], metavar="LOGICAL_ID",
                          help="accept an update that replaces this data resource (repeatable)")
    deploy_p.set_defaults(func=_cmd_deploy)

    destroy_p = sub.add_parser(
        "destroy", help="delete the stack and report what its data became",
        description="Delete the stack. Buckets, the KMS key and secrets are retained; the database "
                    "and the Gitaly volume end in final snapshots (the database's deletion protection "
                    "is turned off first). Each is then looked up and reported.")
    _aws_arguments(destroy_p, local=False)
    destroy_p.add_argument("--confirm", metavar="STACK_NAME", help="the stack name again, to confirm")
    destroy_p.set_defaults(func=_cmd_destroy, local=False)

    publish_p = sub.add_parser(
        "publish", help="upload the build under a versioned prefix and print Launch Stack links",
        description="Upload the build to S3 under <prefix>/<version>/ in the layout the parent's "
                    "TemplateURLs compute (one bucket per region, <bucket>-<region>, or --single-bucket), "
                    "skip objects already published, never overwrite a published version unless --force, "
                    "and print (and write to build/launch.md) a quick-create console link per region.")
    _location_options(publish_p, "regions to publish for", "version folder")
    publish_p.add_argument("--force", action="store_true", help="overwrite a version published with other content")
    _build_option(publish_p)
    publish_p.add_argument("--stack-name", default="gitlab", help="stack name the links suggest (default: gitlab)")
    publish_p.add_argument("--local", action="store_true", help="publish to a local AWS stand-in (buckets created)")
    publish_p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint, e.g. a running stand-in")
    publish_p.add_argument("--json", action="store_true", help="print the result as JSON")
    publish_p.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    publish_p.set_defaults(func=_cmd_publish)

    catalog_p = sub.add_parser(
        "catalog", help="manage the Service Catalog product",
        description="Manage the GitLab product of a portfolio stack (service-catalog.template.yaml).")
    catalog_sub = catalog_p.add_subparsers(dest="catalog_command", metavar="COMMAND", required=True)
    catalog_publish = catalog_sub.add_parser(
        "publish", help="add a published version to the product",
        description="Add the version published by 'gitlab-cfn publish' to the product of the portfolio stack, "
                    "in each region, as a new provisioning artifact; optionally deprecate the older ones. "
                    "Every region is checked before any changes.")
    catalog_publish.add_argument("--portfolio-stack", required=True, metavar="NAME",
                                 help="name of the stack launched from service-catalog.template.yaml")
    _location_options(catalog_publish, "regions of the portfolio stacks", "published version to add")
    catalog_publish.add_argument("--deprecate-older", action="store_true",
                                 help="mark every other version deprecated (running products keep working)")
    catalog_publish.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint, e.g. a running stand-in")
    catalog_publish.add_argument("--json", action="store_true", help="print the result as JSON")
    catalog_publish.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    catalog_publish.set_defaults(func=_cmd_catalog_publish)

    standin_p = sub.add_parser(
        "standin", help="run the local AWS stand-in until interrupted",
        description="Start the local AWS stand-in (moto with gitlab-cfn's patches) on a free port of "
                    "127.0.0.1, print its URL, and run until Ctrl-C.")
    standin_p.add_argument("-q", "--quiet", action="store_true", help="print only the URL")
    standin_p.set_defaults(func=_cmd_standin)

    from .catalog import GITLAB_AMI_PARAMETER

    bake_ami = sub.add_parser(
        "bake-ami", help="bake the GitLab AMI and publish its id to SSM in each region",
        description="Launch a builder from GitLab's AMI for a version (or Ubuntu LTS plus the "
                    "GitLab package), wait for its install script, create and tag the image, copy "
                    "it to other regions and write each region's image id to an SSM parameter. "
                    "The builder is terminated whatever happens.")
    bake_ami.add_argument("--gitlab-version", required=True, metavar="X.Y.Z", help="GitLab version, e.g. 18.5.1")
    bake_ami.add_argument("--region", required=True, help="region the image is built in")
    bake_ami.add_argument("--copy-to", metavar="R1,R2", help="regions the image is copied to")
    bake_ami.add_argument("--edition", default="ee", help="ee (default) or ce")
    bake_ami.add_argument("--source", default="gitlab-ami",
                          help="gitlab-ami (GitLab's published AMI, default) or ubuntu (Ubuntu LTS + package)")
    bake_ami.add_argument("--instance-type", default="c5.xlarge", help="builder instance type (default c5.xlarge)")
    bake_ami.add_argument("--subnet-id", help="subnet with internet access for the builder (default: default VPC)")
    bake_ami.add_argument("--ssm-parameter", default=GITLAB_AMI_PARAMETER,
                          help=f"SSM parameter receiving the image id (default {GITLAB_AMI_PARAMETER})")
    bake_ami.add_argument("--timeout", type=float, default=45, metavar="MINUTES",
                          help="how long to wait for the builder and each image (default 45)")
    bake_ami.add_argument("--poll-seconds", type=float, default=15, metavar="S", help=argparse.SUPPRESS)
    bake_ami.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint, e.g. a local stand-in")
    bake_ami.add_argument("--json", action="store_true", help="print the result as JSON")
    bake_ami.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    bake_ami.set_defaults(func=_cmd_bake_ami)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except GitlabCfnError as exc:
        print(f"gitlab-cfn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # AWS said no, or could not be reached: one line, not a traceback
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, (BotoCoreError, ClientError)):
            raise
        print(f"gitlab-cfn: error: AWS: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gitlab-cfn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
