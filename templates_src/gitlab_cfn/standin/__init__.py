"""The local AWS stand-in: moto's server, a real process on 127.0.0.1.

It runs from its own virtual environment (``.venv-standin``, made by
``make standin``), because moto needs newer jsonschema and urllib3 than taskcat
allows in the main one. ``StandIn`` starts it on a free port, waits until it
answers, and stops it; boto3 and taskcat talk to it over HTTP exactly as to AWS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from gitlab_cfn.errors import ConfigError, GitlabCfnError

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("GITLAB_CFN_STANDIN_VENV", REPO / ".venv-standin"))
AMIS = Path(__file__).resolve().parents[1] / "data" / "standin-amis.json"
START_TIMEOUT = 60.0


class StandInError(GitlabCfnError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandIn:
    """``with StandIn() as aws: aws.endpoint`` -> ``http://127.0.0.1:<port>``."""

    def __init__(self, log: Path | None = None):
        self.python = VENV / "bin" / "python"
        self.port = 0
        self.process: subprocess.Popen | None = None
        # A log of its own is removed when the stand-in stops, unless it holds a failure to start.
        self._own_log = log is None
        self._keep_log = False
        self.log = log  # made by start(), once there is something to log

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandIn:
        if not (VENV / "bin" / "moto_server").exists():
            raise ConfigError(
                f"the local AWS stand-in is not installed ({VENV} has no moto): run 'make standin'")
        if self.log is None:
            self.log = Path(tempfile.mkstemp(prefix="gitlab-cfn-standin-", suffix=".log")[1])
        self.port = _free_port()
        # The stand-in's own interpreter runs moto with the patches of gitlab_cfn.standin.
        env = {**os.environ, "MOTO_AMIS_PATH": str(AMIS), "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
               # The server exits (and removes a log of its own) when this process is gone, however it ended.
               "GITLAB_CFN_STANDIN_PARENT": str(os.getpid()),
               "GITLAB_CFN_STANDIN_OWN_LOG": str(self.log) if self._own_log else ""}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.python), "-m", "gitlab_cfn.standin.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
        try:
            return self._wait_until_it_answers()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failed while starting: the process never outlives this.
            self.stop()
            raise

    def _wait_until_it_answers(self) -> StandIn:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._keep_log = True
                raise StandInError(f"the local AWS stand-in exited at start; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self._keep_log = True
        raise StandInError(f"the local AWS stand-in did not answer within {START_TIMEOUT:.0f}s; see {self.log}")

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        try:
            if self.process and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        except BaseException:  # interrupted while waiting for it: it goes at once
            if self.process:
                self.process.kill()
            raise
        finally:
            self.process = None
            if self._own_log and not self._keep_log and self.log is not None:
                self.log.unlink(missing_ok=True)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def patches_source() -> str:
    """The text of the patches module and of the modules that register patches with it
    (they import moto, so they run only in the stand-in)."""
    here = Path(__file__).parent
    texts = [(here / "patches.py").read_text()]
    texts += [p.read_text() for p in sorted(here.glob("*.py"))
              if "from gitlab_cfn.standin.patches import patch" in p.read_text()]
    return "\n".join(texts)
