"""``gitlab-cfn catalog``: the Service Catalog product."""

from __future__ import annotations

import argparse

from gitlab_cfn.cli.common import Endpoint, location_options, note, publish_request


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from gitlab_cfn.operate import portfolio
    from gitlab_cfn.operate.progress import Progress

    request = portfolio.CatalogRequest(portfolio_stack=args.portfolio_stack, publish=publish_request(args),
                                       deprecate_older=args.deprecate_older)
    with Endpoint(args) as aws:
        results = portfolio.add_version(request, aws, Progress(quiet=args.quiet))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, sort_keys=True))
    else:
        print(portfolio.table(results), end="")
    added = sum(r.added for r in results)
    note(args, f"version {request.publish.version}: added in {added} of {len(results)} regions")
    return 0


def register(sub) -> None:
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
    location_options(catalog_publish, "regions of the portfolio stacks", "published version to add")
    catalog_publish.add_argument("--deprecate-older", action="store_true",
                                 help="mark every other version deprecated (running products keep working)")
    catalog_publish.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint, e.g. a running stand-in")
    catalog_publish.add_argument("--json", action="store_true", help="print the result as JSON")
    catalog_publish.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    catalog_publish.set_defaults(func=run)
