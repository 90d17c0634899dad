"""What ``gitlab-ctl reconfigure`` does for the package's Prometheus, on a monitoring server.

Acts when gitlab.rb gives ``roles ['monitoring_role']`` (or turns ``prometheus['enable']`` on
explicitly), as omnibus-gitlab 18.11.11+ee.0 to 19.3.0+ee.0 do:

- ``monitoring/libraries/prometheus.rb`` (``parse_scrape_configs``): the configuration's
  ``scrape_configs`` are the package's own job ``prometheus`` (Prometheus itself, at
  ``prometheus['listen_address']``), then ``prometheus['scrape_configs']``, then the three
  Kubernetes jobs unless ``prometheus['monitor_kubernetes']`` is false. Kubernetes discovery
  off a cluster (no API server given) needs the in-cluster configuration, which an EC2 server
  does not have: Prometheus then fails at start, and so does this fake;
- ``monitoring/recipes/prometheus.rb``: ``/var/opt/gitlab/prometheus/prometheus.yml`` with
  ``global`` (scrape_interval 15s, scrape_timeout 15s: ``monitoring/attributes/default.rb``),
  ``rule_files`` and ``scrape_configs``; the service then starts.

The file is checked with the real ``promtool check config`` (Debian's ``prometheus``
package), which refuses what Prometheus would refuse to load (an unknown key, a bad duration,
an EC2 filter without values, ...). Started, the fake Prometheus answers ``/-/ready`` with 200
where ``listen_address`` says.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from fakelib import fail, record

PROMETHEUS_YML = Path("/var/opt/gitlab/prometheus/prometheus.yml")
DEFAULT_LISTEN = "localhost:9090"
PIDFILE = Path("/run/gitlab-fake-prometheus.pid")
READY = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/-/ready"
        body = b"Prometheus Server is Ready.\\n" if ok else b""
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def wanted(evaluated: dict) -> bool:
    roles = evaluated.get("calls", {}).get("roles") or []
    roles = roles if isinstance(roles, list) else [roles]
    prometheus = evaluated["settings"].get("prometheus", {})
    if prometheus.get("enable") is False:
        return False
    return "monitoring_role" in roles or prometheus.get("enable") is True


def configuration(settings: dict) -> dict:
    prometheus = settings.get("prometheus", {})
    listen = prometheus.get("listen_address", DEFAULT_LISTEN)
    jobs = [{"job_name": "prometheus", "static_configs": [{"targets": [listen]}]}]
    jobs += prometheus.get("scrape_configs") or []
    if prometheus.get("monitor_kubernetes") is not False:
        jobs += [{"job_name": name, "kubernetes_sd_configs": [{"role": role}]}
                 for name, role in (("kubernetes-cadvisor", "node"), ("kubernetes-nodes", "node"),
                                    ("kubernetes-pods", "pod"))]
    return {
        "global": {"scrape_interval": "15s", "scrape_timeout": "15s"},
        "rule_files": ["/var/opt/gitlab/prometheus/rules/*.rules"],
        "scrape_configs": json.loads(json.dumps(jobs)),
    }


def reconfigure(evaluated: dict) -> None:
    if not wanted(evaluated):
        return
    settings = evaluated["settings"]
    conf = configuration(settings)
    PROMETHEUS_YML.parent.mkdir(parents=True, exist_ok=True)
    PROMETHEUS_YML.write_text(yaml.safe_dump(conf, sort_keys=False))
    if any("kubernetes_sd_configs" in job for job in conf["scrape_configs"]):
        fail("prometheus: kubernetes_sd_config: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
             "and KUBERNETES_SERVICE_PORT must be defined (set prometheus['monitor_kubernetes'] = false)")
    # Debian builds Prometheus without Kubernetes discovery: those jobs are refused above.
    promtool = shutil.which("promtool")
    if promtool is None:
        fail("promtool is missing (Debian package prometheus): the test set-up installs it")
    checked = subprocess.run([promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True)
    if checked.returncode:
        fail(f"prometheus: {PROMETHEUS_YML} is refused: {(checked.stdout + checked.stderr).strip()}")
    host, _, port = settings.get("prometheus", {}).get("listen_address", DEFAULT_LISTEN).rpartition(":")
    host = {"localhost": "127.0.0.1", "": "0.0.0.0"}.get(host, host)
    if PIDFILE.exists():
        subprocess.run(["kill", PIDFILE.read_text().strip()], capture_output=True)
    process = subprocess.Popen([sys.executable, "-c", READY, host, port], start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=open("/var/log/gitlab-fake-prometheus.log", "a"))
    PIDFILE.write_text(str(process.pid))
    record(action="prometheus", config=str(PROMETHEUS_YML), jobs=[j["job_name"] for j in conf["scrape_configs"]])
