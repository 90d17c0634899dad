"""``make bench``: whole-process timings of the commands the README quotes.

Wall-clock budgets do not belong in the test suite (a loaded CI machine would
fail them for no fault of the code), so they live here: each command runs
``--runs`` times after one warm-up, and the median, minimum and maximum are
printed with the machine they were measured on. Exit 1 when a median is over
its budget, so a regression is visible when someone runs the benchmark.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXE = str(REPO / ".venv" / "bin" / "gitlab-cfn")
CONFIGS = {"default": None, "three-az": REPO / "configs" / "three-az.yaml",
           "no-bastion": REPO / "configs" / "no-bastion.yaml"}
# Budgets from the issues: a build under 1 s per config, lint + check under 60 s.
BUDGETS = {"build": 1.0, "lint": 30.0, "check": 30.0}


def timed(command: list[str], runs: int) -> list[float]:
    def once() -> float:
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        return time.perf_counter() - started

    once()  # warm the file cache and Python's bytecode
    return [once() for _ in range(runs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    args = parser.parse_args(argv)
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"median of {args.runs} runs (min-max)")
    over = []
    with tempfile.TemporaryDirectory(prefix="gitlab-cfn-bench-") as tmp:
        rows = []
        for name, config in CONFIGS.items():
            out = str(Path(tmp) / name)
            command = [EXE, "build", "-q", "--out", out] + (["--config", str(config)] if config else [])
            rows.append((f"build ({name})", "build", timed(command, args.runs)))
        default = str(Path(tmp) / "default")
        rows.append(("lint", "lint", timed([EXE, "lint", "-q", "--build", default], args.runs)))
        rows.append(("check", "check", timed([EXE, "check", "-q", "--build", default], args.runs)))
        for label, kind, samples in rows:
            median = statistics.median(samples)
            flag = ""
            if median > BUDGETS[kind]:
                flag = f"  OVER BUDGET ({BUDGETS[kind]:.0f} s)"
                over.append(label)
            print(f"{label:<22} {median:6.2f} s  ({min(samples):.2f}-{max(samples):.2f}){flag}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
