"""``gitlab-cfn diagram``: the architecture diagram of a build, drawn from its templates."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gitlab_cfn.cli.common import DEFAULT_BUILD, note


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.report import diagram, stack

    started = time.perf_counter()
    root = stack.load(args.build)
    out = args.out or str(Path(args.build) / f"architecture.{args.format}")
    path, source = diagram.render(root, out, args.format)
    if args.dot:
        Path(args.dot).write_text(source)
    note(args, f"wrote {path} in {time.perf_counter() - started:.2f}s")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "diagram", help="draw the architecture of a build (diagrams over Graphviz)",
        description="Draw the VPC, Availability Zones, subnets, load balancers, Auto Scaling groups, "
                    "servers, RDS, ElastiCache, S3 and the security groups' flows of a build, from its "
                    "templates. Needs Graphviz's dot (make build installs it).")
    p.add_argument("--build", metavar="DIR", default=DEFAULT_BUILD, help=f"build folder (default: {DEFAULT_BUILD})")
    p.add_argument("--format", choices=("png", "svg"), default="png", help="png (default) or svg")
    p.add_argument("--out", metavar="FILE", help="output file (default: <build>/architecture.<format>)")
    p.add_argument("--dot", metavar="FILE", help="also write the Graphviz DOT source")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)
