"""The services the fake gitlab-ctl starts besides GitLab's web server: Praefect and Sidekiq.

What a boot can see of them, as the package runs them:

- **Praefect.** ``reconfigure`` renders ``/var/opt/gitlab/praefect/config.toml`` from
  ``praefect['configuration']`` over the package's defaults (omnibus-gitlab
  18.11.11+ee.0 and 19.3.0+ee.0, ``praefect/attributes/default.rb``: listen_addr
  ``localhost:2305``, ``auth.transitioning`` false, ``failover.enabled`` true),
  runs the migrations when ``praefect['auto_migrate']`` is on, which is the default
  (``praefect/recipes/database_migrations.rb``: ``praefect -config config.toml
  sql-migrate``), and starts Praefect. Praefect refuses to start on a
  configuration its ``Config.Validate`` refuses (gitaly
  ``internal/praefect/config/config.go``: a listen address, named unique virtual
  storages with nodes, each node with a storage and an address, unique storages, a
  replication factor no higher than the node count), and without its database
  (per-repository elections need it: it connects at start). Started, it accepts TCP
  connections where ``listen_addr`` says.
- **Sidekiq** runs unless ``sidekiq['enable']`` is false; it needs the database and
  Redis settings (the package's own PostgreSQL and Redis are off on these servers),
  and answers its health checks (``/readiness``, ``/liveness``) on
  ``sidekiq['health_checks_listen_address']:['health_checks_listen_port']``
  (defaults ``localhost``, 8092). Its jobs come from Redis: ``/readiness`` answers 200
  only while every Redis gitlab.rb configures takes its AUTH and PING, over TLS when
  configured so (fakelib.redis_failures, checked at each request), 503 naming them otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from fakelib import fail

PRAEFECT_CONFIG = Path("/var/opt/gitlab/praefect/config.toml")
PRAEFECT_BIN = "/opt/gitlab/embedded/bin/praefect"
PRAEFECT_DEFAULTS = {
    "listen_addr": "localhost:2305",
    "prometheus_listen_addr": "localhost:9652",
    "logging": {"format": "json"},
    "auth": {"transitioning": False},
    "failover": {"enabled": True},
}
# What a full package install runs when gitlab.rb says nothing (of the services faked here).
ENABLED_BY_DEFAULT = {"praefect": False, "sidekiq": True}

LISTENER = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(16)
while True:
    conn, _ = s.accept(); conn.close()
"""
HEALTH = """
import json, sys
sys.path.insert(0, %r)
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from fakelib import node, redis_failures
RAILS = node()["settings"].get("gitlab_rails", {})
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        known = self.path in ("/readiness", "/liveness")
        failures = redis_failures(RAILS) if self.path == "/readiness" else []
        body = json.dumps({"status": "failed", "redis": failures} if failures else {"status": "ok"}).encode() if known else b""
        self.send_response((503 if failures else 200) if known else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
""" % str(Path(__file__).resolve().parent)


def enabled(settings: dict, service: str) -> bool:
    value = settings.get(service, {}).get("enable")
    return ENABLED_BY_DEFAULT[service] if value is None else bool(value)


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} as TOML")


def toml(table: dict, prefix: str = "") -> str:
    """A TOML document of TABLE (what the cookbook's Tomlib.dump writes, for these shapes)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += ["", f"[{prefix}{key}]", toml(value, f"{prefix}{key}.")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines += ["", f"[[{prefix}{key}]]", toml(item, f"{prefix}{key}.")]
    return "\n".join(lines)


def praefect_invalid(conf: dict) -> str | None:
    """Praefect's Config.Validate, for the keys gitlab.rb can set here."""
    if not (conf.get("listen_addr") or conf.get("socket_path") or conf.get("tls_listen_addr")):
        return "no listen address or socket path configured"
    storages = conf.get("virtual_storage") or []
    if not storages:
        return "no virtual storages configured"
    names = set()
    for vs in storages:
        if not vs.get("name"):
            return "virtual storages must have a name"
        nodes = vs.get("node") or []
        if not nodes:
            return f"virtual storage {vs['name']!r}: no primary gitaly backends configured"
        if vs["name"] in names:
            return f"virtual storage {vs['name']!r}: virtual storages must have unique names"
        names.add(vs["name"])
        seen = set()
        for node in nodes:
            if not node.get("storage"):
                return f"virtual storage {vs['name']!r}: all gitaly nodes must have a storage"
            if not node.get("address"):
                return f"virtual storage {vs['name']!r}: all gitaly nodes must have an address"
            if node["storage"] in seen:
                return f"virtual storage {vs['name']!r}: internal gitaly storages are not unique"
            seen.add(node["storage"])
        if vs.get("default_replication_factor", 0) > len(nodes):
            return (f"virtual storage {vs['name']!r} has a default replication factor "
                    f"({vs['default_replication_factor']}) which is higher than the number of storages ({len(nodes)})")
    return None


def psql(db: dict, sql: str, application: str) -> subprocess.CompletedProcess:
    """SQL on Praefect's database as its configuration says, with the real psql."""
    conn = (f"host={db.get('host', '')} port={db.get('port', 5432)} dbname={db.get('dbname', '')} "
            f"user={db.get('user', '')} sslmode={db.get('sslmode', 'prefer')} connect_timeout=5 "
            f"application_name={application}")
    return subprocess.run(["/opt/gitlab/embedded/bin/psql", conn, "-v", "ON_ERROR_STOP=1", "-qtAX", "-c", sql],
                          capture_output=True, text=True, env={**os.environ, "PGPASSWORD": str(db.get("password", ""))})


def _pidfile(service: str) -> Path:
    return Path(f"/run/gitlab-fake-{service}.pid")


def _stop(service: str) -> None:
    pidfile = _pidfile(service)
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
        pidfile.unlink()


def _serve(service: str, program: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    host = {"localhost": "127.0.0.1", "": "0.0.0.0"}.get(host.strip("[]"), host.strip("[]"))
    _stop(service)
    process = subprocess.Popen([sys.executable, "-c", program, host, port], start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=open(f"/var/log/gitlab-fake-{service}.log", "a"))
    _pidfile(service).write_text(str(process.pid))


def start_praefect() -> None:
    import tomllib

    if not PRAEFECT_CONFIG.exists():
        fail(f"praefect: open {PRAEFECT_CONFIG}: no such file or directory")
    conf = tomllib.loads(PRAEFECT_CONFIG.read_text())
    problem = praefect_invalid(conf)
    if problem:
        fail(f"praefect: configuration invalid: {problem}")
    ping = psql(conf.get("database", {}), "SELECT 1", "praefect")
    if ping.returncode:
        fail(f"praefect: sql open: {ping.stderr.strip()}")
    _serve("praefect", LISTENER, conf["listen_addr"])


def start_sidekiq(settings: dict) -> None:
    rails, sidekiq = settings.get("gitlab_rails", {}), settings.get("sidekiq", {})
    if not rails.get("db_host") or not rails.get("redis_host"):
        fail("sidekiq: no database or Redis configured (the package's own are off)")
    address = f"{sidekiq.get('health_checks_listen_address', 'localhost')}:{sidekiq.get('health_checks_listen_port', 8092)}"
    _serve("sidekiq", HEALTH, address)


def start(service: str, settings: dict) -> list[str]:
    """``gitlab-ctl start|restart [SERVICE]`` for the services of this module: those it started."""
    started = []
    for name in ("praefect", "sidekiq"):
        if service in (name, "all") and enabled(settings, name):
            start_praefect() if name == "praefect" else start_sidekiq(settings)
            started.append(name)
        elif service == name:
            fail(f"{name} is disabled in gitlab.rb: there is no {name} service to start")
    return started


def reconfigure(settings: dict) -> None:
    """What reconfigure does for Praefect: config.toml, migrations when auto_migrate, start."""
    if not enabled(settings, "praefect"):
        _stop("praefect")
        return
    praefect = settings.get("praefect", {})
    conf = merged(PRAEFECT_DEFAULTS, praefect.get("configuration", {}))
    PRAEFECT_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    PRAEFECT_CONFIG.write_text(toml(conf) + "\n")
    PRAEFECT_CONFIG.chmod(0o640)
    if praefect.get("auto_migrate", True):
        done = subprocess.run([PRAEFECT_BIN, "-config", str(PRAEFECT_CONFIG), "sql-migrate"], capture_output=True,
                              text=True)
        if done.returncode:
            fail(f"bash[migrate praefect database]: {done.stdout.strip()} {done.stderr.strip()}")
    start_praefect()
