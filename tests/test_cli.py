"""The console script as a user runs it: a real subprocess, exit codes and streams."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("gitlab-cfn", path=str(Path(sys.executable).parent)) or "gitlab-cfn"


def run(*args, cwd=None):
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["lint", "--help"]])
def test_help(args):
    result = run(*args)
    assert result.returncode == 0
    assert "usage: gitlab-cfn" in result.stdout


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("gitlab-cfn ")


def test_no_command_is_a_usage_error():
    result = run()
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_build_then_lint(tmp_path):
    out = tmp_path / "b"
    built = run("build", "--out", str(out), "--config", str(_write(tmp_path, "az_count: 3\n")))
    assert built.returncode == 0, built.stderr
    # One line per template the manifest lists (the stack's and the portfolio).
    every = len(json.loads((out / "manifest.json").read_text())["templates"])
    assert len(built.stdout.splitlines()) == every >= 11
    assert f"built {every} templates" in built.stderr and "3 AZs" in built.stderr
    linted = run("lint", "--build", str(out), "--regions", "us-east-1")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert linted.stdout == ""
    assert f"linted {every} templates in 1 regions" in linted.stderr and "0 findings" in linted.stderr


def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "b"
    first = run("build", "-q", "--out", str(out))
    assert first.returncode == 0 and first.stdout == first.stderr == ""
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run("build", "--out", str(out), "--config", str(_write(tmp_path, "az_count: 5\n")))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "gitlab-cfn: error: az_count: must be one of 2, 3 (got 5)\n"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c.yaml"]


def test_lint_failure_exits_1_and_names_the_finding(tmp_path):
    out = tmp_path / "b"
    assert run("build", "-q", "--out", str(out)).returncode == 0
    path = out / "templates" / "dns.template.yaml"
    path.write_text(path.read_text().replace("Type: AWS::Route53::RecordSet", "Type: AWS::Route53::RecordSett"))
    result = run("lint", "--build", str(out), "--regions", "us-east-1")
    assert result.returncode == 1
    assert result.stdout.startswith("templates/dns.template.yaml:")
    assert "E3006" in result.stdout
    every = len(json.loads((out / "manifest.json").read_text())["templates"])
    assert result.stderr.startswith(f"gitlab-cfn: error: linted {every} templates")


def test_lint_without_build_exits_2(tmp_path):
    result = run("lint", "--build", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "run 'gitlab-cfn build' first" in result.stderr


def _write(folder: Path, text: str) -> Path:
    path = folder / "c.yaml"
    path.write_text(text)
    return path
