"""The suite's use of shellcheck (support/shellcheck.py): findings as codes and lines, and the
pinned version, shown on a script with a finding and one without."""

import pytest
from support import shellcheck

DIRTY = "#!/bin/bash\necho ok\nrm -rf $UNQUOTED/*\n"
CLEAN = '#!/bin/bash\necho "${1:?}"\n'


def test_findings_are_codes_and_lines(tmp_path):
    path = tmp_path / "dirty.sh"
    path.write_text(DIRTY)
    assert shellcheck.findings(path) == [("SC2086", 3), ("SC2115", 3)]
    (tmp_path / "clean.sh").write_text(CLEAN)
    assert shellcheck.findings(tmp_path / "clean.sh") == []


def test_the_pinned_version_fails_on_findings_and_another_skips(tmp_path, monkeypatch):
    dirty, clean = tmp_path / "dirty.sh", tmp_path / "clean.sh"
    dirty.write_text(DIRTY)
    clean.write_text(CLEAN)
    monkeypatch.setattr(shellcheck, "version", lambda: shellcheck.PINNED)
    with pytest.raises(AssertionError, match=r"\('SC2086', 3\)"):
        shellcheck.assert_clean(dirty)
    shellcheck.assert_clean(clean)
    monkeypatch.setattr(shellcheck, "version", lambda: "0.10.0")
    with pytest.raises(pytest.skip.Exception, match=r"shellcheck 0\.10\.0 reports .*SC2086.* pins 0\.9\.0"):
        shellcheck.assert_clean(dirty)
    shellcheck.assert_clean(clean)


def test_the_version_is_read_from_the_program():
    assert shellcheck.version().count(".") == 2
