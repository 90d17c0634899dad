"""``gitlab-cfn publish``: versioned upload and Launch Stack links."""

from __future__ import annotations

import argparse
from pathlib import Path

from gitlab_cfn.cli.common import (
    Endpoint,
    build_option,
    location_options,
    note,
    publish_request,
)


def run(args: argparse.Namespace) -> int:
    import json

    from gitlab_cfn.operate.progress import Progress
    from gitlab_cfn.operate.publish import launch_table, publish

    request = publish_request(args, force=args.force, build_dir=Path(args.build), stack_name=args.stack_name)
    with Endpoint(args, one_shot=True) as aws:
        if args.local:
            for bucket, region in dict.fromkeys(request.bucket_for(r) for r in request.regions):
                from gitlab_cfn.operate.deploy import ensure_bucket

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
    note(args, f"published {request.version}: {len(result.uploaded)} uploaded, {len(result.skipped)} unchanged; "
                f"links in {Path(args.build) / 'launch.md'}")
    return 0


def register(sub) -> None:
    publish_p = sub.add_parser(
        "publish", help="upload the build under a versioned prefix and print Launch Stack links",
        description="Upload the build to S3 under <prefix>/<version>/ in the layout the parent's "
                    "TemplateURLs compute (one bucket per region, <bucket>-<region>, or --single-bucket), "
                    "skip objects already published, never overwrite a published version unless --force, "
                    "and print (and write to build/launch.md) a quick-create console link per region.")
    location_options(publish_p, "regions to publish for", "version folder")
    publish_p.add_argument("--force", action="store_true", help="overwrite a version published with other content")
    build_option(publish_p)
    publish_p.add_argument("--stack-name", default="gitlab", help="stack name the links suggest (default: gitlab)")
    publish_p.add_argument("--local", action="store_true",
                           help="publish to the local AWS stand-in of 'gitlab-cfn standin' (buckets created); "
                                "without one, a stand-in started for this command only")
    publish_p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint, e.g. a running stand-in")
    publish_p.add_argument("--json", action="store_true", help="print the result as JSON")
    publish_p.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    publish_p.set_defaults(func=run)
