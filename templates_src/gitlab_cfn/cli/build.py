"""``gitlab-cfn build``: compile the templates into a build folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gitlab_cfn.cli.common import DEFAULT_BUILD, note, quiet_option


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.compile import compiler, config

    started = time.perf_counter()
    from gitlab_cfn.errors import ConfigError

    cfg = config.load(args.config)
    try:
        manifest = compiler.write_build(cfg, args.out)   # written in a staging folder, swapped in at the end
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else args.out
        raise ConfigError(f"--out: cannot write {args.out} ({exc.strerror or exc}: {where}); give a folder "
                          "that can be created in a writable place") from None
    elapsed = time.perf_counter() - started
    templates = manifest["templates"]
    if not args.quiet:
        for name, entry in templates.items():
            print(f"{Path(args.out) / entry['path']}  {entry['resources']} resources")
    resources = sum(e["resources"] for e in templates.values())
    note(args, f"built {len(templates)} templates ({resources} resources, "
                f"{cfg.az_count} AZs) in {elapsed:.2f}s")
    return 0


def register(sub) -> None:
    build = sub.add_parser(
        "build", help="compile the templates into a build folder",
        description="Compile the parent and nested templates, and write them with "
                    "manifest.json. The previous build is replaced only when the new one "
                    "is complete.")
    build.add_argument("--config", metavar="FILE",
                       help="YAML build config (all keys optional; see docs/configuration.md)")
    build.add_argument("--out", metavar="DIR", default=DEFAULT_BUILD,
                       help=f"build folder (default: {DEFAULT_BUILD})")
    quiet_option(build)
    build.set_defaults(func=run)
