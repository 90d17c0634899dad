"""The mutant table of ``make mutants`` stays applicable (tests/mutants.py).

Running the mutants takes minutes (``make mutants``); these checks are instant
and keep the table from rotting: each mutant's text occurs exactly once in its
file, its change is a change, and the tests it names exist.
"""

from __future__ import annotations

import pytest

from tests import mutants

REPO = mutants.REPO


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_applies_to_exactly_one_place(mutant):
    text = (REPO / mutant.path).read_text()
    assert text.count(mutant.old) == 1, f"{mutant.name}: update its text in tests/mutants.py"
    assert mutant.old != mutant.new


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_names_tests_that_exist(mutant):
    for node in mutant.tests:
        path, _, name = node.partition("::")
        source = (REPO / path).read_text()
        assert not name or f"def {name.split('[')[0]}(" in source, node


def test_a_stale_mutant_is_refused(tmp_path):
    stale = mutants.Mutant("stale", "port", "scripts/gitlab-app.sh", "no such line", "x", (), "")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "gitlab-app.sh").write_text("LISTEN_PORT=80\n")
    with pytest.raises(SystemExit, match="occurs 0 times"):
        mutants.apply(tmp_path, stale)


def test_names_are_unique():
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) == len(set(names))
