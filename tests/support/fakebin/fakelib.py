"""Shared by the fake GitLab commands and cfn-signal installed on a test server.

They run inside the server's mount namespace, so every path is the real one a
GitLab server has. What they did is appended to /var/log/gitlab-cfn-fakes.log
(the harness reads it from the server's disk).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

VERSION_FILE = Path("/opt/gitlab/embedded/service/gitlab-rails/VERSION")
GITLAB_RB = Path("/etc/gitlab/gitlab.rb")
SECRETS = Path("/etc/gitlab/gitlab-secrets.json")
LOG = Path("/var/log/gitlab-cfn-fakes.log")
HERE = Path(__file__).resolve().parent


def node_file() -> Path:
    # Chef's node attributes, named after the host (omnibus-gitlab gitlab_ctl/util.rb).
    return Path(f"/opt/gitlab/embedded/nodes/{socket.gethostname()}.json")


def record(**event) -> None:
    event = {"at": time.time(), "command": Path(sys.argv[0]).name, **event}
    with open(LOG, "a") as f:
        f.write(json.dumps(event) + "\n")


def fail(message: str, code: int = 1) -> None:
    record(failed=message)
    sys.stderr.write(f"{Path(sys.argv[0]).name}: {message}\n")
    sys.exit(code)


def installed_version() -> str:
    if not VERSION_FILE.exists():
        fail(f"{VERSION_FILE} is missing: no GitLab package installed")
    return VERSION_FILE.read_text().strip()


def evaluate_gitlab_rb() -> dict:
    """gitlab.rb evaluated by Ruby: {"settings": {...}, "calls": {...}}."""
    done = subprocess.run(["ruby", str(HERE.parent / "gitlab_rb_eval.rb"), str(GITLAB_RB)], capture_output=True, text=True)
    if done.returncode:
        fail(f"gitlab.rb does not evaluate: {done.stderr.strip()}")
    return json.loads(done.stdout)


def node() -> dict:
    path = node_file()
    if not path.exists():
        fail("GitLab is not configured yet: run gitlab-ctl reconfigure first")
    return json.loads(path.read_text())


def rails_nginx(node: dict) -> dict:
    """The Rails nginx settings as the installed version reads them.

    19.2+ read gitlab_rails['nginx'] and fill what it lacks from nginx[...]
    (translate_rails_nginx_settings, omnibus-gitlab 19.2.0+ee.0
    gitlab/libraries/gitlab_rails.rb); 19.1 and older read nginx[...] only.
    """
    settings = node["settings"]
    old = settings.get("nginx", {})
    minor = tuple(int(x) for x in node["version"].split("-")[0].split(".")[:2])
    if minor < (19, 2):
        return dict(old)
    new = dict(settings.get("gitlab_rails", {}).get("nginx", {}))
    for key, value in old.items():
        new.setdefault(key, value)
    return new
