"""The stand-in's server process: moto's server with gitlab-cfn's patches applied.

Run by ``StandIn`` with the stand-in's own interpreter:
``.venv-standin/bin/python -m gitlab_cfn.standin.server -H 127.0.0.1 -p PORT``.
"""

import os
import sys
import threading
import time

from gitlab_cfn.standin.patches import apply_all


def exit_with_parent(parent: int, log: str, poll: float = 0.5) -> threading.Thread:
    """Exit when the process that started the stand-in is gone (killed, even by SIGKILL):
    no stand-in outlives its command, session or test run. Its own log goes with it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        if log:
            try:
                os.unlink(log)
            except OSError:
                pass
        os._exit(0)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parent = os.environ.get("GITLAB_CFN_STANDIN_PARENT")
    if parent and parent.isdigit():
        exit_with_parent(int(parent), os.environ.get("GITLAB_CFN_STANDIN_OWN_LOG", ""))
    applied = apply_all()
    print(f"gitlab-cfn stand-in: moto with patches {', '.join(applied)}", flush=True)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
