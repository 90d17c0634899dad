"""``gitlab-cfn``: the command line, one module per subcommand.

Exit codes: 0 success, 1 a check failed (lint findings), 2 bad input (a config
field, a missing file, a bad argument). Results go to standard output, progress
and errors to standard error, errors as one line ``gitlab-cfn: error: ...``.

Each subcommand module has ``register(sub)``, which adds its parser, and
``run(args)``, which the parser's ``func`` default points at. The order of
``SUBCOMMANDS`` is the order ``--help`` lists them in.
"""

from __future__ import annotations

import argparse
import sys

from gitlab_cfn import __version__
from gitlab_cfn.cli import (
    bake_ami,
    build,
    catalog,
    check,
    deploy,
    destroy,
    diagram,
    diff,
    estimate,
    inspect,
    lint,
    publish,
    restore,
    standin,
    upgrade,
)
from gitlab_cfn.errors import GitlabCfnError

SUBCOMMANDS = (build, lint, check, diff, deploy, inspect, destroy, restore, upgrade, publish, catalog, standin, bake_ami,
               estimate, diagram)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="gitlab-cfn",
        description="Compile self-managed GitLab on AWS into nested CloudFormation templates.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        command.register(sub)
    return top


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so that every ``finally`` runs."""


def _stop_signal(signum, frame):
    import signal

    # Once: the cleanup that follows (stopping a stand-in, removing files) is not cut short.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    args = parser().parse_args(argv)
    # SIGTERM and SIGHUP end the command as Ctrl-C does: a stand-in it started is stopped,
    # temporary folders are removed (Python's default for them ends the process at once).
    # A signal ignored by whoever started us stays ignored (nohup's SIGHUP, SIGINT of a
    # background job of a script).
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _stop_signal)
    try:
        return args.func(args)
    except GitlabCfnError as exc:
        print(f"gitlab-cfn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # AWS said no, or could not be reached: one line, not a traceback
        message = aws_error(exc)
        if message is None:
            raise
        print(f"gitlab-cfn: error: AWS: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print("gitlab-cfn: interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        return 0


def aws_error(exc: Exception) -> str | None:
    """One line for an error answer from AWS (after botocore's retries), or None if it is not one.

    Covers refusals and throttling (ClientError), endpoints that cannot be reached or close the
    connection (BotoCoreError), and answers that do not parse (ResponseParserError, which is
    neither)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    if isinstance(exc, ResponseParserError):
        # botocore appends the raw body on further lines: keep the reason only.
        reason = str(exc).splitlines()[0].rstrip(":")
        return f"an answer that is not an AWS response: {reason}"
    if isinstance(exc, (BotoCoreError, ClientError)):
        return " ".join(str(exc).split())
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
