"""``gitlab-cfn standin``: the local AWS stand-in until interrupted."""

from __future__ import annotations

import argparse

from gitlab_cfn.cli.common import note


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.standin import StandIn

    server = StandIn().start()
    print(server.endpoint, flush=True)
    note(args, f"local AWS stand-in running: use --endpoint-url {server.endpoint} "
                f"(AWS_ENDPOINT_URL={server.endpoint}); Ctrl-C stops it")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def register(sub) -> None:
    standin_p = sub.add_parser(
        "standin", help="run the local AWS stand-in until interrupted",
        description="Start the local AWS stand-in (moto with gitlab-cfn's patches) on a free port of "
                    "127.0.0.1, print its URL, and run until Ctrl-C.")
    standin_p.add_argument("-q", "--quiet", action="store_true", help="print only the URL")
    standin_p.set_defaults(func=run)
