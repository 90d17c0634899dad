"""Ctrl-C (SIGINT) or SIGTERM at any moment leaves no stand-in process and no file behind.

Each run gets its own temporary folder (``TMPDIR``: the stand-in's log goes there) and
a marker in its environment, which every process it starts inherits; afterwards no
process may carry the marker and the folder must be empty. The signal is sent at
several moments: while Python starts, while the stand-in starts, while the stack is
created, and (for ``gitlab-cfn standin`` and a test run) while the stand-in serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from gitlab_cfn.compile import compiler, config
from test_cli import EXE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("interrupts") / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


def marked(marker: str) -> list[int]:
    """Processes whose environment carries the marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _default_signals() -> None:
    """As a command typed at a terminal gets them, even when this test runs as a background job
    (whose SIGINT a shell ignores, and ignored signals are inherited)."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


class Run:
    def __init__(self, argv: list[str], tmp_path: Path):
        self.marker = f"GITLAB_CFN_INTERRUPT_MARK={uuid.uuid4().hex}"
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        self.session = tmp_path / "session.json"
        key, value = self.marker.split("=")
        env = {**os.environ, "TMPDIR": str(self.tmp), key: value, "GITLAB_CFN_STANDIN_SESSION": str(self.session),
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTHONDONTWRITEBYTECODE": "1"}
        # Its own session: the signal goes to this process only, as kill(1) would send it.
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        cwd=tmp_path, start_new_session=True, preexec_fn=_default_signals)
        self.seen: list[str] = []

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Read standard error until a line holds ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise AssertionError(f"ended before {text!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout}s")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            _, rest = self.process.communicate(timeout=60)
            self.seen.append(rest)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.process.returncode

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 5   # the stand-in notices its parent is gone within a second
        while marked(self.marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = marked(self.marker)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert left == [], "processes left running"
        assert sorted(p.name for p in self.tmp.iterdir()) == [], "".join(self.seen)
        assert not self.session.exists()


@pytest.mark.parametrize(("signum", "wait_line", "delay"), [
    (signal.SIGINT, None, 0.05),                       # while Python starts
    (signal.SIGINT, None, 1.5),                        # while the stand-in starts
    (signal.SIGINT, "local AWS stand-in at", 0),       # the stand-in just answered
    (signal.SIGINT, "creating stack", 0),              # nested stacks being created
    (signal.SIGINT, "StorageStack", 0.05),             # created; the stand-in being stopped
    (signal.SIGTERM, "uploaded", 0),                   # SIGTERM, after the upload
], ids=["python-starting", "standin-starting", "standin-up", "creating", "stopping", "sigterm-uploaded"])
def test_deploy_local(build, tmp_path, signum, wait_line, delay):
    run = Run([EXE, "deploy", "--local", "--build", str(build), "--stack-name", "gl", "--region", "eu-west-1",
               "--poll-seconds", "0.2"], tmp_path)
    if wait_line:
        run.wait_for(wait_line)
    time.sleep(delay)
    code = run.stop(signum)
    assert code != 0
    run.assert_nothing_left()


@pytest.mark.parametrize(("signum", "when"), [
    (signal.SIGINT, "starting"), (signal.SIGINT, "serving"), (signal.SIGTERM, "serving"),
    (signal.SIGKILL, "serving"),   # nothing runs in the killed process: the stand-in sees its parent go
])
def test_standin_session(tmp_path, signum, when):
    run = Run([EXE, "standin"], tmp_path)
    if when == "serving":
        run.wait_for("local AWS stand-in running")
        assert run.session.exists()
    else:
        time.sleep(1.0)
    run.stop(signum)
    if signum == signal.SIGKILL:
        run.session.unlink(missing_ok=True)  # the killed process could not remove it; --local ignores a dead one
    run.assert_nothing_left()


def test_a_test_run(tmp_path):
    """A pytest run using the session's stand-in, interrupted while a test talks to it."""
    test = "tests/test_deploy.py::test_first_failure_follows_nested_stacks"
    run = Run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", str(ROOT / test.split("::")[0])
               + "::" + test.split("::")[1], "--basetemp", str(tmp_path / "tmp" / "pytest")], tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not [p for p in marked(run.marker) if p != run.process.pid]:
        time.sleep(0.1)
    time.sleep(0.5)
    run.stop(signal.SIGINT)
    # pytest keeps its --basetemp folder by design; what must go is the stand-in and its log.
    import shutil

    shutil.rmtree(tmp_path / "tmp" / "pytest", ignore_errors=True)
    run.assert_nothing_left()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_boot_test_run_stopped_while_its_servers_run(tmp_path, signum):
    """A boot test run stopped while its PostgreSQL and Redis servers and a booting server run
    (a CI job cancelled, kill(1)): none of them, and none of their folders, is left."""
    test = "tests/test_boot_app.py::test_first_server_configures_gitlab_and_signals_success_once_gitlab_serves"
    path, name = test.split("::")
    # The run's TMPDIR is under pytest's own folder (0700): PostgreSQL runs as its own user and
    # must be able to reach its data folder there, as it reaches /tmp in a normal run.
    for folder in (tmp_path, *tmp_path.parents):
        if folder == Path(tempfile.gettempdir()):
            break
        folder.chmod(folder.stat().st_mode | 0o001)
    run = Run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / path) + "::" + name,
               "--basetemp", str(tmp_path / "tmp" / "pytest")], tmp_path)

    def servers() -> set[str]:
        names = set()
        for pid in marked(run.marker):
            try:
                names.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                continue
        return names

    # Generous: on a loaded machine the run's own start (imports, fixtures) is most of it.
    deadline = time.monotonic() + 300
    # (redis-server writes its title over its environment, so it carries no marker; its folder
    # in TMPDIR does.) slirp4netns runs once the server under test boots.
    while time.monotonic() < deadline and not {"postgres", "slirp4netns"} <= servers():
        if run.process.poll() is not None:
            out, err = run.process.communicate()
            raise AssertionError(f"the run ended (exit {run.process.returncode}) before its servers ran:\n{out}\n{err}")
        time.sleep(0.2)
    if not {"postgres", "slirp4netns"} <= servers():
        run.stop(signal.SIGKILL)
        raise AssertionError(f"the run never started its servers within 300 s (seen: {sorted(servers())}):\n"
                             + "".join(run.seen))
    time.sleep(1)
    run.stop(signum)
    import shutil

    shutil.rmtree(tmp_path / "tmp" / "pytest", ignore_errors=True)
    run.assert_nothing_left()
