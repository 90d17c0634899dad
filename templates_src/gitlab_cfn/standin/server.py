"""The stand-in's server process: moto's server with gitlab-cfn's patches applied.

Run by ``StandIn`` with the stand-in's own interpreter:
``.venv-standin/bin/python -m gitlab_cfn.standin.server -H 127.0.0.1 -p PORT``.
"""

import sys

from gitlab_cfn.standin.patches import apply_all


def main(argv: list[str] | None = None) -> None:
    applied = apply_all()
    print(f"gitlab-cfn stand-in: moto with patches {', '.join(applied)}", flush=True)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
