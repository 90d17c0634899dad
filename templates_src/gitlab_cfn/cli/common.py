"""What the subcommands share: options, the AWS endpoint, the quiet note."""

from __future__ import annotations

import argparse
import sys

from gitlab_cfn import __version__
from gitlab_cfn.errors import ConfigError

DEFAULT_BUILD = "build"


def build_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build", metavar="DIR", default=DEFAULT_BUILD,
                        help=f"build folder (default: {DEFAULT_BUILD})")


def stack_options(parser: argparse.ArgumentParser, params_help: str, role_help: str, bucket_help: str) -> None:
    """What a created stack is given: the same options for ``deploy`` and ``restore``."""
    parser.add_argument("--params", metavar="FILE", help=params_help)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter value, over the file's (repeatable)")
    parser.add_argument("--tags", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="tags for the stack and every resource it creates")
    parser.add_argument("--role-arn", metavar="ARN", help=role_help)
    parser.add_argument("--bucket", help=bucket_help)


def location_options(parser: argparse.ArgumentParser, regions_help: str, version_help: str) -> None:
    """Where a build is published: the same options for ``publish`` and ``catalog publish``."""
    parser.add_argument("--bucket", required=True, help="bucket name (per region: <bucket>-<region>)")
    parser.add_argument("--regions", metavar="R1,R2", required=True, help=regions_help)
    parser.add_argument("--prefix", default="gitlab-cfn", help="key prefix (default: gitlab-cfn)")
    parser.add_argument("--version", help=f"{version_help} (default: the package version, {__version__})")
    parser.add_argument("--single-bucket", action="store_true", help="one bucket, in the first region, for all")


def quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def aws_arguments(parser: argparse.ArgumentParser, local: bool = True, one_shot: bool = False) -> None:
    parser.add_argument("--stack-name", required=True, help="CloudFormation stack name")
    parser.add_argument("--region", required=True, help="AWS region")
    if local:
        local_option(parser, one_shot)
    parser.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint (for example a running stand-in)")
    parser.add_argument("--poll-seconds", type=float, default=10, metavar="S", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")


def note(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


def local_option(parser: argparse.ArgumentParser, one_shot: bool = False) -> None:
    extra = "; without one, a stand-in is started for this command only" if one_shot else ""
    parser.add_argument("--local", action="store_true",
                        help=f"use the local AWS stand-in of 'gitlab-cfn standin'{extra}")


class Endpoint:
    """Where the command's AWS calls go.

    ``--endpoint-url URL``: there. ``--local``: the persistent stand-in session of
    ``gitlab-cfn standin`` when one runs; otherwise, for commands that can work alone
    (``one_shot``: deploy, publish, catalog), a stand-in started for the command's
    duration and stopped at its end, also when interrupted."""

    def __init__(self, args: argparse.Namespace, one_shot: bool = False):
        self.args = args
        self.one_shot = one_shot
        self.standin = None

    def __enter__(self):
        from gitlab_cfn.operate.aws import Aws, check_region

        if getattr(self.args, "region", None) is not None:
            check_region(self.args.region)
        for region in (getattr(self.args, "regions", None) or "").split(","):
            if region:
                check_region(region, "--regions")
        if getattr(self.args, "stack_name", None) is not None:
            from gitlab_cfn.operate.deploy import check_stack_name

            check_stack_name(self.args.stack_name)
        if getattr(self.args, "local", False):
            if getattr(self.args, "endpoint_url", None):
                raise ConfigError("--local and --endpoint-url exclude each other")
            from gitlab_cfn.standin import session

            running = session.current()
            if running:
                note(self.args, f"local AWS stand-in at {running['endpoint']} (the session of gitlab-cfn standin)")
                return Aws(endpoint_url=running["endpoint"], standin=True)
            if not self.one_shot:
                raise ConfigError("--local: no local stand-in is running; start one with 'gitlab-cfn standin' "
                                  "(in another terminal) and run this again")
            from gitlab_cfn.standin import StandIn

            self.standin = StandIn()
            try:
                self.standin.start()
                note(self.args, f"local AWS stand-in at {self.standin.endpoint} (stops when this command ends; "
                                "'gitlab-cfn standin' keeps one running)")
                return Aws(endpoint_url=self.standin.endpoint, standin=True)
            except BaseException:  # __exit__ is not called when __enter__ fails
                self.standin.stop()
                raise
        return Aws(endpoint_url=getattr(self.args, "endpoint_url", None))

    def __exit__(self, *exc):
        if self.standin:
            self.standin.stop()


def publish_request(args: argparse.Namespace, **extra):
    """The published location that ``publish`` writes and ``catalog publish`` reads."""
    from gitlab_cfn.operate.aws import check_region
    from gitlab_cfn.operate.publish import PublishRequest

    for region in (args.regions or "").split(","):
        if region:
            check_region(region, "--regions")
    return PublishRequest(
        bucket=args.bucket, regions=[r for r in (args.regions or "").split(",") if r], prefix=args.prefix,
        version=args.version or __version__, single_bucket=args.single_bucket, **extra)
