"""``gitlab-cfn diagram``: the architecture diagram of a build, drawn from its templates."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gitlab_cfn.cli.common import DEFAULT_BUILD, note


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.report import diagram, stack

    import os

    from gitlab_cfn.errors import ConfigError

    started = time.perf_counter()
    root = stack.load(args.build)
    out = args.out or str(Path(args.build) / f"architecture.{args.format}")
    # Checked first, so that a DOT file that cannot be written does not leave the picture alone.
    if args.dot and not (Path(args.dot).parent.is_dir() and os.access(Path(args.dot).parent, os.W_OK)
                         and not Path(args.dot).is_dir()):
        raise ConfigError(f"--dot: cannot write {args.dot}; give a file in an existing, writable folder")
    try:
        path, source = diagram.render(root, out, args.format)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {out} ({exc.strerror or exc}: {exc.filename or out}); give a file "
                          "in a folder that exists or can be created in a writable place") from None
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
