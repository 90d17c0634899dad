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


# -- the newcomer path of the README, as written, against one persistent stand-in ---------------

def readme_block(heading: str) -> list[str]:
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_newcomer_path_runs_as_written(tmp_path):
    import pty
    import shlex
    import signal
    import time

    lines = readme_block("Your first stack, on your laptop")
    assert lines[0] == ".venv/bin/gitlab-cfn standin &" and lines[-1] == "kill %1"
    env = {**os.environ, "GITLAB_CFN_STANDIN_SESSION": str(tmp_path / "session.json"), "PYTHONWARNINGS": "ignore"}
    env.pop("AWS_ENDPOINT_URL", None)
    session = subprocess.Popen([EXE, "standin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=tmp_path)
    results, timings = {}, {}
    try:
        printed = [session.stdout.readline().strip() for _ in range(3)]
        assert printed[0].startswith("AWS_ENDPOINT_URL=http://127.0.0.1:")
        assert printed[1:] == ["AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing"]
        for line in lines[1:-1]:
            argv = shlex.split(line)
            assert argv[0] == ".venv/bin/gitlab-cfn"
            argv = [EXE, *argv[1:]]
            if argv[1] in ("deploy", "destroy"):
                argv += ["--poll-seconds", "0.2"]
            controller, terminal = pty.openpty()   # a person at a terminal, who answers y
            os.write(controller, b"y\n")
            try:
                started = time.perf_counter()
                result = subprocess.run(argv, stdin=terminal, capture_output=True, text=True, env=env,
                                        cwd=tmp_path, timeout=300)
                timings.setdefault(argv[1], time.perf_counter() - started)
            finally:
                os.close(terminal)
                os.close(controller)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            results.setdefault(" ".join(argv[1:3]), []).append(result)
    finally:
        session.send_signal(signal.SIGTERM)   # kill %1
        session.communicate(timeout=30)
    assert session.returncode == 0
    assert not (tmp_path / "session.json").exists()

    first, update = results["deploy --local"]
    assert "creating stack demo (termination protection on)" in first.stderr
    assert "local value CertificateArn = arn:aws:acm:eu-west-1:123456789012:certificate/" in first.stderr
    # The update: the demo values found again, only the parameter given changes, shown and applied.
    assert "local value" not in update.stderr
    assert "reusing the stack's previous values of " in update.stderr
    changes = [x.split("change: ", 1)[1] for x in update.stderr.splitlines() if "] change: " in x]
    assert changes == ["security-groups: Modify  BastionFromCidrSsh (AWS::EC2::SecurityGroupIngress) [REPLACED]: "
                       "CidrIp (create-only, parameter RemoteAccessCIDR)"]
    assert "execute these 1 changes to stack demo? [y/N] y" in update.stderr
    assert update.stderr.splitlines()[-1] == "stack demo: UPDATE_COMPLETE"
    (diff,) = results["diff --local"]
    assert diff.stdout == "" and diff.stderr.splitlines()[-1].startswith("0 replaced, 0 may be replaced, 0 deleted, "
                                                                           "0 added, 0 modified")
    (status,) = results["status --local"]
    # Every nested stack of the POC build (the tiers of the manifest but the parent and the portfolio).
    from gitlab_cfn.compile import compiler as _compiler
    from gitlab_cfn.compile import config as _config

    nested = len(_compiler.compile_data(_config.BuildConfig())) - 2
    assert status.stdout.splitlines()[0].split()[:3] == ["demo", "UPDATE_COMPLETE", f"{nested}/{nested}"]
    assert len(status.stdout.splitlines()) == nested + 1 and status.stdout.endswith("termination protection: on\n")
    (outputs,) = results["outputs --local"]
    assert "GitLabUrl" in outputs.stdout and "https://gitlab.example.test" in outputs.stdout
    (events,) = results["events --local"]
    assert len(events.stdout.splitlines()) == 5
    (destroyed,) = results["destroy --local"]
    assert "turned off termination protection of stack demo" in destroyed.stderr
    assert destroyed.stderr.splitlines()[-1].startswith("stack demo: DELETE_COMPLETE;")
    (catalog_deploy,) = results["catalog deploy"]
    assert catalog_deploy.stderr.splitlines()[-1] == "portfolio stack gitlab-portfolio: created in 1 of 1 regions"
    (catalog_publish,) = results["catalog publish"]
    assert catalog_publish.stderr.splitlines()[-1] == "version 1.1.0: added in 1 of 1 regions"
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))


def test_the_figures_the_readme_gives_are_the_builds(tmp_path):
    """Counts in the README are derived from a build here, so they cannot drift from it."""
    import json
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    out = tmp_path / "build"
    assert run("build", "-q", "--out", str(out)).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # The tree of "What you get" lists every template of the build, and nothing else.
    # Templates that only the reference sizes or an option build say so on their line
    # ("... sizes only", "monitoring.node only").
    tree = readme.split("## What you get", 1)[1].split("```", 2)[1]
    listed = re.findall(r"([a-z-]+)\.template\.yaml", tree)
    sized = re.findall(r"([a-z-]+)\.template\.yaml\s+[^\n]*(?:sizes|monitoring\.node) only", tree)
    assert sorted(set(listed) - set(sized)) == sorted(manifest["templates"])
    cluster = tmp_path / "cluster"
    # The largest shape: a Gitaly Cluster size with the monitoring server.
    (tmp_path / "3k.yaml").write_text("size: 3k\nmonitoring:\n  node: true\n")
    assert run("build", "-q", "--config", str(tmp_path / "3k.yaml"), "--out", str(cluster)).returncode == 0
    cluster_templates = json.loads((cluster / "manifest.json").read_text())["templates"]
    assert sorted(listed) == sorted(set(manifest["templates"]) | set(cluster_templates))
    assert set(sized) == set(cluster_templates) - set(manifest["templates"])
    # "KMS key, N gl- buckets": the storage template's buckets, every name starting with gl-.
    (count,) = re.findall(r"(\d+) gl- buckets", readme)
    storage = yaml.safe_load((out / manifest["templates"]["storage"]["path"]).read_text())
    buckets = [r for r in storage["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    names = [json.dumps(r["Properties"]["BucketName"]) for r in buckets]
    assert all(name.startswith('{"Fn::Join": ["-", ["gl", ') for name in names), names
    assert int(count) == len(buckets)


def test_diff_lists_every_change_per_template_and_json_gives_the_same(tmp_path):
    import json

    (tmp_path / "single.yaml").write_text("nat_gateways: single\n")
    (tmp_path / "lean.yaml").write_text("nat_gateways: single\nbastions: false\n")
    for name, extra in (("two", []), ("one", ["--config", str(tmp_path / "single.yaml")]),
                        ("lean", ["--config", str(tmp_path / "lean.yaml")])):
        assert run("build", "-q", "--out", str(tmp_path / name), *extra).returncode == 0
    result = run("diff", str(tmp_path / "two"), str(tmp_path / "one"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "main.template.yaml\n"
        "  MODIFY       NetworkStack (AWS::CloudFormation::Stack): its nested template (network) changes\n"
        "network.template.yaml\n"
        "  MODIFY       PrivateDefaultRoute2 (AWS::EC2::Route): NatGatewayId changed\n"
        "  DELETE       NatEip2 (AWS::EC2::EIP): logical id gone\n"
        "  DELETE       NatGateway2 (AWS::EC2::NatGateway): logical id gone\n")
    assert result.stderr == ("0 replaced, 0 may be replaced, 2 deleted, 0 added, 2 modified; 0 hold data, "
                             "0 without Retain or Snapshot\n")
    as_json = json.loads(run("diff", str(tmp_path / "two"), str(tmp_path / "one"), "--json").stdout)
    assert [(r["template"], r["action"], r["logical_id"]) for r in as_json] == [
        ("main", "modify", "NetworkStack"), ("network", "modify", "PrivateDefaultRoute2"),
        ("network", "delete", "NatEip2"), ("network", "delete", "NatGateway2")]
    assert as_json[1]["properties"] == ["NatGatewayId"]
    # Back again: additions, and a whole nested template removed then added.
    back = run("diff", str(tmp_path / "lean"), str(tmp_path / "two"), "--json")
    rows = json.loads(back.stdout)
    added = {(r["template"], r["logical_id"]) for r in rows if r["action"] == "add"}
    assert {("network", "NatGateway2"), ("network", "NatEip2"), ("bastion", "BastionA")} <= added
    assert all(r["reasons"] == ["its nested template is new"] for r in rows
               if r["template"] == "bastion" and r["action"] == "add")
    assert ("main", "add", "BastionStack") in {(r["template"], r["action"], r["logical_id"]) for r in rows}
