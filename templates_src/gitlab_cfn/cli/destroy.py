"""``gitlab-cfn destroy``: delete the stack and report what its data became."""

from __future__ import annotations

import argparse

from gitlab_cfn.cli.common import Endpoint, aws_arguments, note
from gitlab_cfn.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    import json

    from gitlab_cfn.operate.destroy import destroy
    from gitlab_cfn.operate.progress import Progress

    if args.confirm != args.stack_name:
        raise ConfigError(f"--confirm: repeat the stack name to delete it (--confirm {args.stack_name}); "
                          "its data is kept (buckets, key, secrets) or snapshotted (database, volumes)")
    with Endpoint(args) as aws:
        result = destroy(args.stack_name, args.region, aws, Progress(quiet=args.quiet), args.poll_seconds)
    if args.json:
        print(json.dumps([item.__dict__ for item in result.kept], indent=2))
    else:
        for item in result.kept:
            print(item.line())
    missing = [k for k in result.kept if not k.found]
    note(args, f"stack {args.stack_name}: {result.status}; {len(result.kept) - len(missing)} data resources "
                f"kept" + (f", {len(missing)} not found" if missing else ""))
    return 0


def register(sub) -> None:
    destroy_p = sub.add_parser(
        "destroy", help="delete the stack and report what its data became",
        description="Delete the stack. Buckets, the KMS key and secrets are retained; the database "
                    "and the Gitaly volume end in final snapshots (the database's deletion protection "
                    "is turned off first). Each is then looked up and reported.")
    aws_arguments(destroy_p)
    destroy_p.add_argument("--confirm", metavar="STACK_NAME", help="the stack name again, to confirm")
    destroy_p.set_defaults(func=run)
