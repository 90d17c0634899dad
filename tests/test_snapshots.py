"""Logical ids are API: renaming one replaces the resource on the next stack update.

The ids and types of every template, for the 2- and 3-AZ builds, are kept in
``tests/snapshots/``. A change fails here with a diff and the new listing written
beside the old one (``*.new``); after review, accept it with
``GITLAB_CFN_UPDATE_SNAPSHOTS=1 make test``, which rewrites the listing and fails
(nothing was checked), then run the tests again.
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


def check(path: Path, current: str) -> None:
    """Fail unless ``current`` is the stored listing (see the module's docstring)."""
    stored = path.read_text() if path.exists() else ""
    if os.environ.get("GITLAB_CFN_UPDATE_SNAPSHOTS") == "1" and current != stored:
        # Rewritten, and still a failure: a run that rewrites a snapshot has checked nothing.
        path.write_text(current)
        pytest.fail(f"{path.name} rewritten: review it with git diff, then run the tests again without "
                    "GITLAB_CFN_UPDATE_SNAPSHOTS")
    if current != stored:
        path.with_suffix(".txt.new").write_text(current)
        diff = "".join(difflib.unified_diff(stored.splitlines(True), current.splitlines(True),
                                            str(path), "current build"))
        pytest.fail(f"logical ids changed (review: a renamed stateful id replaces it):\n{diff}")


@pytest.mark.parametrize("az_count", [2, 3])
def test_logical_ids_are_unchanged(az_count):
    check(SNAPSHOTS / f"logical-ids-{az_count}az.txt", listing(templates_for({"az_count": az_count})))


def test_a_renamed_id_fails_and_so_does_a_rewrite(tmp_path, monkeypatch):
    stored = tmp_path / "ids.txt"
    stored.write_text("database:\n  Database: AWS::RDS::DBInstance\n")
    renamed = "database:\n  GitLabDatabase: AWS::RDS::DBInstance\n"
    with pytest.raises(pytest.fail.Exception, match="logical ids changed"):
        check(stored, renamed)
    assert (tmp_path / "ids.txt.new").read_text() == renamed
    monkeypatch.setenv("GITLAB_CFN_UPDATE_SNAPSHOTS", "1")
    with pytest.raises(pytest.fail.Exception, match="ids.txt rewritten"):
        check(stored, renamed)
    assert stored.read_text() == renamed
    check(stored, renamed)  # once accepted, the same listing passes
