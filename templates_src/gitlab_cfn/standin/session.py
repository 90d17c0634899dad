"""The persistent stand-in session of ``gitlab-cfn standin``, found by ``--local``.

``gitlab-cfn standin`` writes one small JSON file naming its endpoint, its process
and the fake credentials, and removes it when it stops (Ctrl-C, SIGTERM, or the
server exiting). Every ``--local`` looks here first. The file lives in the user's
runtime folder (``$XDG_RUNTIME_DIR``, else the user's cache folder);
``GITLAB_CFN_STANDIN_SESSION`` names another path (tests, several sessions).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def path() -> Path:
    explicit = os.environ.get("GITLAB_CFN_STANDIN_SESSION")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gitlab-cfn"
    return base / "gitlab-cfn-standin.json"


def write(endpoint: str, pid: int) -> Path:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps({"endpoint": endpoint, "pid": pid, "credentials": CREDENTIALS}))
    partial.replace(target)
    return target


def remove(endpoint: str) -> None:
    """Remove the session file if it is still this stand-in's."""
    target = path()
    try:
        if json.loads(target.read_text()).get("endpoint") == endpoint:
            target.unlink()
    except (OSError, ValueError):
        pass


def current() -> dict | None:
    """The running session, or None (no file, or its stand-in no longer answers: then the file goes)."""
    target = path()
    try:
        found = json.loads(target.read_text())
        endpoint = found["endpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=3):
            return found
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        target.unlink(missing_ok=True)
        return None
