"""``gitlab-cfn standin``: the local AWS stand-in until interrupted, as a session for ``--local``."""

from __future__ import annotations

import argparse
import os

from gitlab_cfn.cli.common import note


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.standin import StandIn, session

    running = session.current()
    if running:
        raise ConfigError(f"a local stand-in already runs at {running['endpoint']} (gitlab-cfn standin, process "
                          f"{running['pid']}); stop it first, or set GITLAB_CFN_STANDIN_SESSION to another file "
                          "for a second one")
    server = StandIn()
    try:
        server.start()
        where = session.write(server.endpoint, os.getpid())   # the process to stop (kill PID)
        print(f"AWS_ENDPOINT_URL={server.endpoint}", flush=True)
        for name, value in session.CREDENTIALS.items():
            print(f"{name}={value}", flush=True)
        note(args, f"local AWS stand-in running (session {where}): add --local to any gitlab-cfn command, "
                    f"or use the lines above with the aws CLI and boto3; demo values deploy --local fills in "
                    f"(certificate, key pair, image parameter, buckets) are kept until it stops; Ctrl-C stops it")
        server.process.wait()
        if not getattr(server, "stopping", False):
            note(args, "the local AWS stand-in exited")
    except KeyboardInterrupt:
        pass
    finally:
        session.remove(server.endpoint)
        server.stop()
    return 0


def register(sub) -> None:
    standin_p = sub.add_parser(
        "standin", help="run the local AWS stand-in until interrupted (the session --local uses)",
        description="Start the local AWS stand-in (moto with gitlab-cfn's patches) on a free port of "
                    "127.0.0.1, print its endpoint and fake credentials (as KEY=VALUE lines for the shell), "
                    "and run until Ctrl-C. While it runs, --local of every command uses it.")
    standin_p.add_argument("-q", "--quiet", action="store_true", help="print only the endpoint and credentials")
    standin_p.set_defaults(func=run)
