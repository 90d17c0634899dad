"""Plain HTTP is redirected by nginx (the Classic Load Balancer cannot redirect), checked with the real nginx.

The rendered gitlab.rb's custom_gitlab_server_config goes, as the Linux package
puts it, inside GitLab's server block (omnibus-gitlab
``nginx-gitlab-rails.conf.erb``) with the configured listen port and real-IP
settings, in front of a stub upstream. What the load balancer sends is read from
the built app template: the instance port of its HTTP and HTTPS listeners and
its health-check target.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import props, templates_for
from gitlab_cfn.compile import versions

from support import boot
from support.boot_fixtures import boot_tools  # noqa: F401  (fixture)
from test_boot_versions import rendered, values

DOMAIN = "gitlab.engineering.example.com"


def load_balancer() -> tuple[int, str]:
    """(instance port of the web listeners, health-check path) of the built app template."""
    lb = props(templates_for({})["app"], "LoadBalancer")
    ports = {int(l["InstancePort"]) for l in lb["Listeners"] if l["Protocol"] in ("HTTP", "HTTPS")}
    assert len(ports) == 1, ports
    protocol, rest = lb["HealthCheck"]["Target"].split(":", 1)
    port, path = rest.split("/", 1)
    assert protocol == "HTTP" and int(port) in ports
    return ports.pop(), "/" + path


def find(tree, key):
    """Every value of KEY anywhere in a parsed template."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                yield v
            yield from find(v, key)
    elif isinstance(tree, list):
        for v in tree:
            yield from find(v, key)


def nginx_settings(version: str) -> dict:
    settings = boot.evaluate_gitlab_rb(rendered(version))["settings"]
    return settings["gitlab_rails"]["nginx"] if versions.nginx_prefix(version.split("-")[0]).startswith(
        "gitlab_rails") else settings["nginx"]


STUB = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "8"); self.end_headers()
            self.wfile.write(b"upstream")
        def log_message(self, *a): pass
    HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def serve(tmp_path, nginx: dict, requests: list[tuple[str, dict]]) -> list[tuple[int, str]]:
    """Run nginx with the rendered settings in a network namespace of its own (so it can
    listen on the load balancer's port) and answer REQUESTS: [(status, location)]."""
    port = int(nginx["listen_port"])
    trusted = "\n".join(f"    set_real_ip_from {a};" for a in nginx["real_ip_trusted_addresses"])
    (tmp_path / "stub.py").write_text(STUB)
    (tmp_path / "nginx.conf").write_text(textwrap.dedent(f"""\
        daemon off;
        master_process off;
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        events {{}}
        http {{
          access_log off;
          client_body_temp_path {tmp_path}/body;
          proxy_temp_path {tmp_path}/proxy;
          fastcgi_temp_path {tmp_path}/fastcgi;
          uwsgi_temp_path {tmp_path}/uwsgi;
          scgi_temp_path {tmp_path}/scgi;
          upstream gitlab-workhorse {{ server 127.0.0.1:8181; }}
          server {{
            listen *:{port};
            server_name {DOMAIN};
            server_tokens off;
            real_ip_header {nginx["real_ip_header"]};
            real_ip_recursive {nginx["real_ip_recursive"]};
        {trusted}
            location / {{
              proxy_pass http://gitlab-workhorse;
            }}
            {nginx["custom_gitlab_server_config"]}
          }}
        }}
        """))
    curls = "\n".join(
        "curl -s -o /dev/null -w '%{http_code} %{redirect_url}\\n' "
        + " ".join(f"-H '{k}: {v}'" for k, v in headers.items()) + f" 'http://127.0.0.1:{port}{path}'"
        for path, headers in requests)
    script = f"""set -e
ip link set lo up
{sys.executable} {tmp_path}/stub.py 8181 &
nginx -t -q -p {tmp_path} -c {tmp_path}/nginx.conf -e {tmp_path}/error.log
nginx -p {tmp_path} -c {tmp_path}/nginx.conf -e {tmp_path}/error.log &
for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:8181/ && curl -s -o /dev/null http://127.0.0.1:{port}/ && break; sleep 0.025; done
{curls}
"""
    done = subprocess.run(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
                           "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + (tmp_path / "error.log").read_text()
    answers = []
    for line in done.stdout.splitlines():
        code, _, location = line.partition(" ")
        answers.append((int(code), location))
    return answers


@pytest.mark.parametrize("version", ["19.3.0-ee", "18.11.11-ee"])
def test_plain_http_through_the_load_balancer_is_redirected_and_health_checks_pass(tmp_path, boot_tools, version):
    instance_port, health_path = load_balancer()
    nginx = nginx_settings(version)
    assert int(nginx["listen_port"]) == instance_port
    assert nginx["listen_https"] is False
    # Real client addresses are taken only from the load balancer's nodes: they are in the VPC.
    assert [{"Ref": "VpcCidr"}] == list(find(templates_for({})["app"], "VPC_CIDR"))
    assert nginx["real_ip_trusted_addresses"] == [values()["VPC_CIDR"]]

    answers = serve(tmp_path, nginx, [
        ("/users/sign_in?redirect=%2Fgroup", {"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.7"}),
        ("/users/sign_in", {"X-Forwarded-Proto": "HTTP"}),
        ("/users/sign_in", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}),
        (health_path, {}),                                  # the load balancer's health check
        ("/-/readiness", {}),                               # the boot's local readiness probe
    ])
    assert answers == [
        (301, f"https://{DOMAIN}/users/sign_in?redirect=%2Fgroup"),
        (301, f"https://{DOMAIN}/users/sign_in"),
        (200, ""),
        (200, ""),
        (200, ""),
    ]
