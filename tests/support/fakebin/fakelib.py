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


# -- Redis, as GitLab's readiness checks reach it -------------------------------------------------

def _resp(words: list[str]) -> bytes:
    out = f"*{len(words)}\r\n"
    for w in words:
        out += f"${len(w.encode())}\r\n{w}\r\n"
    return out.encode()


def redis_exchange(host: str, port: int, tls: bool, password: str | None, commands: list[list[str]],
                   timeout: float = 5) -> list[str]:
    """AUTH (when PASSWORD) and COMMANDS on a new connection, TLS when TLS, as a Redis client
    (RESP); the first line of each reply. An error reply, a refused handshake or a closed
    connection raises OSError naming it.

    The server's certificate is not verified: the test servers' certificates are self-signed
    and no CA is given to the servers, whereas ElastiCache's is signed by Amazon and trusted by
    the OS store. What is checked is that the client speaks TLS (ElastiCache with
    TransitEncryptionEnabled accepts nothing else) and authenticates with the right token."""
    import ssl

    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        replies = []
        for words in ([["AUTH", password]] if password else []) + commands:
            sock.sendall(_resp(words))
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(1)
                if not chunk:
                    raise ConnectionError(f"{host}:{port} closed the connection after {words[0]}"
                                          + ("" if tls else " (a plain connection to a TLS-only server)"))
                line += chunk
            reply = line.decode(errors="replace").strip()
            if reply.startswith("-"):
                raise ConnectionError(f"{host}:{port} answered {words[0]} with {reply[1:]}")
            replies.append(reply)
        return replies
    finally:
        sock.close()


def redis_instances(rails: dict) -> list[tuple[str, str, int, bool, str | None]]:
    """Every Redis gitlab.rb configures, with the readiness checks that use it:
    (checks, host, port, tls, password). The persistent one from redis_host, redis_port,
    redis_ssl, redis_password; the cache from redis_cache_instance (a redis:// or rediss://
    URL) and redis_cache_password when set, else the persistent one serves it too
    (omnibus-gitlab gitlab.rb template, "Redis settings" and "Separate instances support";
    gitlab-org/gitlab app/controllers/health_controller.rb runs the Redis checks with the
    database's, each a PING: lib/gitlab/health_checks/redis/*_check.rb)."""
    from urllib.parse import unquote, urlparse

    main = ("redis_check, queues_check, shared_state_check", rails.get("redis_host"),
            int(rails.get("redis_port", 6379)), bool(rails.get("redis_ssl", False)), rails.get("redis_password"))
    cache_url = rails.get("redis_cache_instance")
    if not cache_url:
        return [(main[0] + ", cache_check", *main[1:])]
    url = urlparse(str(cache_url))
    password = rails.get("redis_cache_password") or (unquote(url.password) if url.password else None)
    return [main, ("cache_check", url.hostname, url.port or 6379, url.scheme == "rediss", password)]


def redis_failures(rails: dict) -> list[str]:
    """GitLab's readiness Redis checks, run now: one line per failing Redis naming its checks."""
    failures = []
    for checks, host, port, tls, password in redis_instances(rails):
        if not host:
            failures.append(f"{checks}: no Redis host configured")
            continue
        try:
            (pong,) = redis_exchange(str(host), port, tls, password, [["PING"]])[-1:]
            if pong != "+PONG":
                failures.append(f"{checks}: PING answered {pong}")
        except OSError as exc:
            failures.append(f"{checks}: {exc}")
    return failures
