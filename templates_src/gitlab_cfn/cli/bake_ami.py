"""``gitlab-cfn bake-ami``: bake the GitLab AMI and publish its id."""

from __future__ import annotations

import argparse

from gitlab_cfn.compile.catalog import GITLAB_AMI_PARAMETER


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.operate import bake
    from gitlab_cfn.operate.aws import Aws, check_region
    from gitlab_cfn.operate.progress import Progress

    if args.local:
        raise ConfigError("--local: the stand-in cannot bake an image (its builder never runs GitLab's install "
                          "script, so bake-ami would wait --timeout minutes for nothing); on the stand-in, "
                          "deploy --local names a demo image in the SSM parameter instead")
    check_region(args.region)
    for region in (args.copy_to or "").split(","):
        if region:
            check_region(region, "--copy-to")

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


def register(sub) -> None:
    bake_ami = sub.add_parser(
        "bake-ami", help="bake the GitLab AMI and publish its id to SSM in each region",
        description="Launch a builder from GitLab's AMI for a version (or Ubuntu LTS plus the "
                    "GitLab package), wait for its install script, create and tag the image, copy "
                    "it to other regions and write each region's image id to an SSM parameter. "
                    "The builder is terminated whatever happens.")
    bake_ami.add_argument("--gitlab-version", required=True, metavar="X.Y.Z", help="GitLab version, e.g. 19.3.0 (supported: 18.11.x to 19.3.x)")
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
    bake_ami.add_argument("--local", action="store_true", help="refused: the stand-in cannot bake an image")
    bake_ami.add_argument("--json", action="store_true", help="print the result as JSON")
    bake_ami.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    bake_ami.set_defaults(func=run)
