"""Logical ids are API: renaming one replaces the resource on the next stack update.

The ids and types of every template, for the 2- and 3-AZ builds, are kept in
``tests/snapshots/``. A change fails here with a diff and the new listing written
beside the old one (``*.new``); after review, accept it with
``GITLAB_CFN_UPDATE_SNAPSHOTS=1 make test``.
"""

import difflib
import os
from pathlib import Path

import pytest
from conftest import templates_for

SNAPSHOTS = Path(__file__).parent / "snapshots"


def listing(templates):
    lines = []
    for tier, template in templates.items():
        lines.append(f"{tier}:")
        lines += [f"  {name}: {res['Type']}" for name, res in sorted(template["Resources"].items())]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("az_count", [2, 3])
def test_logical_ids_are_unchanged(az_count):
    path = SNAPSHOTS / f"logical-ids-{az_count}az.txt"
    current = listing(templates_for({"az_count": az_count}))
    if os.environ.get("GITLAB_CFN_UPDATE_SNAPSHOTS") == "1":
        path.write_text(current)
    stored = path.read_text() if path.exists() else ""
    if current != stored:
        path.with_suffix(".txt.new").write_text(current)
        diff = "".join(difflib.unified_diff(stored.splitlines(True), current.splitlines(True),
                                            str(path), "current build"))
        pytest.fail(f"logical ids changed (review: a renamed stateful id replaces it):\n{diff}")
