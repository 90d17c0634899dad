"""shellcheck as the tests run it: findings compared as (SC code, line), the version pinned.

Its text output changes between versions (wording, layout), and newer versions add checks.
So the tests read ``--format=json1`` and compare only each finding's code and line, and the
"clean" checks hold to the version ``make test`` installs, Debian bookworm's 0.9.0
(``PINNED``): with another version, a script that is clean passes, and one with findings is
skipped with the findings named, since they may be checks 0.9.0 does not have.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

PINNED = "0.9.0"


def executable() -> str:
    found = shutil.which("shellcheck")
    assert found, "shellcheck is missing: `make test` installs it from Debian's packages"
    return found


@lru_cache(maxsize=1)
def version() -> str:
    shown = subprocess.run([executable(), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^version: (\S+)", shown, flags=re.M)
    assert match, f"shellcheck --version printed no version: {shown!r}"
    return match.group(1)


def findings(path: Path, shell: str | None = "bash") -> list[tuple[str, int]]:
    """Sorted ``(SC code, line)`` of every finding; no .shellcheckrc is read."""
    command = [executable(), "--format=json1", "--norc", *(["-s", shell] if shell else []), str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode in (0, 1), f"shellcheck could not check {path}: {result.stderr.strip()}"
    return sorted({(f"SC{c['code']}", c["line"]) for c in json.loads(result.stdout)["comments"]})


def assert_clean(path: Path, shell: str | None = "bash") -> None:
    found = findings(path, shell)
    if found and version() != PINNED:
        pytest.skip(f"shellcheck {version()} reports {found} in {path.name}; the suite pins {PINNED} "
                    "(Debian's, installed by make test), whose findings these may not be")
    assert found == [], f"shellcheck {version()} findings in {path}: {found}"
