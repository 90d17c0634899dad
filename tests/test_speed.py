"""The issue's speed budget on a 2-core machine, measured on the console script itself."""

import subprocess
import time

from test_cli import EXE

BUILD_BUDGET_S = 2.0
LINT_BUDGET_S = 20.0


def _timed(*args):
    started = time.perf_counter()
    result = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)
    return time.perf_counter() - started, result


def test_build_and_lint_stay_within_budget(tmp_path):
    out = str(tmp_path / "b")
    _timed("build", "-q", "--out", out)  # warm the file cache
    build_s, built = _timed("build", "-q", "--out", out)
    assert built.returncode == 0, built.stderr
    lint_s, linted = _timed("lint", "-q", "--build", out)
    assert linted.returncode == 0, linted.stdout
    print(f"build {build_s:.2f}s, lint {lint_s:.2f}s")
    assert build_s < BUILD_BUDGET_S
    assert lint_s < LINT_BUDGET_S
