"""``gitlab-cfn catalog``: the Service Catalog product."""

from __future__ import annotations

import argparse

from gitlab_cfn.cli.common import Endpoint, local_option, location_options, note, publish_request


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from gitlab_cfn.operate import portfolio
    from gitlab_cfn.operate.progress import Progress

    request = portfolio.CatalogRequest(portfolio_stack=args.portfolio_stack, publish=publish_request(args),
                                       deprecate_older=args.deprecate_older)
    with Endpoint(args, one_shot=True) as aws:
        results = portfolio.add_version(request, aws, Progress(quiet=args.quiet))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, sort_keys=True))
    else:
        print(portfolio.table(results), end="")
    added = sum(r.added for r in results)
    note(args, f"version {request.publish.version}: added in {added} of {len(results)} regions")
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from gitlab_cfn.operate import portfolio
    from gitlab_cfn.operate.progress import Progress

    request = portfolio.PortfolioRequest(stack_name=args.portfolio_stack, publish=publish_request(args),
                                         principal_arn=args.principal_arn, portfolio_name=args.portfolio_name,
                                         provider_name=args.provider_name, poll=args.poll_seconds)
    with Endpoint(args, one_shot=True) as aws:
        results = portfolio.deploy_portfolio(request, aws, Progress(quiet=args.quiet))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, sort_keys=True))
    else:
        for result in results:
            for key, value in sorted(result.outputs.items()):
                print(f"{result.region}  {key:<16} {value}")
    created = sum(r.created for r in results)
    note(args, f"portfolio stack {args.portfolio_stack}: created in {created} of {len(results)} regions")
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
    local_option(catalog_publish)
    catalog_publish.add_argument("--json", action="store_true", help="print the result as JSON")
    catalog_publish.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    catalog_publish.set_defaults(func=run)

    catalog_deploy = catalog_sub.add_parser(
        "deploy", help="create the portfolio stack from a published version",
        description="Create the Service Catalog portfolio stack (service-catalog.template.yaml, as published by "
                    "'gitlab-cfn publish') in each region, with termination protection, and print its outputs. "
                    "A portfolio stack already complete is left as it is.")
    catalog_deploy.add_argument("--portfolio-stack", default="gitlab-portfolio", metavar="NAME",
                                help="name of the portfolio stack (default: gitlab-portfolio)")
    catalog_deploy.add_argument("--principal-arn", required=True, metavar="ARN",
                                help="IAM role or group whose members may launch GitLab from the portfolio")
    catalog_deploy.add_argument("--portfolio-name", help="display name of the portfolio (default: GitLab)")
    catalog_deploy.add_argument("--provider-name", help="provider shown to the teams (default: Platform engineering)")
    location_options(catalog_deploy, "regions to create the portfolio stack in", "published version it offers first")
    catalog_deploy.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint, e.g. a running stand-in")
    local_option(catalog_deploy, one_shot=True)
    catalog_deploy.add_argument("--poll-seconds", type=float, default=10, metavar="S", help=argparse.SUPPRESS)
    catalog_deploy.add_argument("--json", action="store_true", help="print the result as JSON")
    catalog_deploy.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    catalog_deploy.set_defaults(func=run_deploy)
