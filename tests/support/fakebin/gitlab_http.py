"""What answers on GitLab's nginx port after gitlab-ctl start: /-/readiness as GitLab does.

Listens where the configured nginx listens (listen_port, default 443 for an
https external_url and 80 otherwise), answers plain HTTP on a TLS port with
nginx's 400, and /-/readiness with 200 to clients in monitoring_whitelist
(GitLab's default ['127.0.0.0/8', '::1/128']), 404 to others, once Rails has
started (FAKE_RAILS_START_SECONDS after start, 503 before) and while every Redis
gitlab.rb configures answers: at each request, as GitLab's readiness does
(gitlab-org/gitlab app/controllers/health_controller.rb: the Redis checks with the
database's), it connects to each (TLS when redis_ssl or rediss://), AUTHs with its
password and PINGs; any failure is a 503 naming the failing checks (fakelib.redis_failures).
"""
import ipaddress
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fakelib import node, rails_nginx, redis_failures

NODE = node()
NGINX = rails_nginx(NODE)
RAILS = NODE["settings"].get("gitlab_rails", {})
URL = str(NODE["calls"].get("external_url", "http://localhost"))
HTTPS = NGINX.get("listen_https", URL.startswith("https://"))
PORT = int(NGINX.get("listen_port", 443 if URL.startswith("https://") else 80))
WHITELIST = [ipaddress.ip_network(n) for n in RAILS.get("monitoring_whitelist", ["127.0.0.0/8", "::1/128"])]
READY_AT = time.time() + float(os.environ.get("FAKE_RAILS_START_SECONDS", "0"))


class Handler(BaseHTTPRequestHandler):
    def answer(self, code: int, body: dict | str) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if HTTPS:
            return self.answer(400, "The plain HTTP request was sent to HTTPS port")
        if self.path.split("?")[0] != "/-/readiness":
            return self.answer(302, "")
        if not any(ipaddress.ip_address(self.client_address[0]) in n for n in WHITELIST):
            return self.answer(404, "")
        if time.time() < READY_AT:
            return self.answer(503, {"status": "failed"})
        failures = redis_failures(RAILS)
        if failures:
            checks = {check: [{"status": "failed", "message": message}]
                      for names, message in (line.split(": ", 1) for line in failures) for check in names.split(", ")}
            return self.answer(503, {"status": "failed", **checks})
        return self.answer(200, {"status": "ok", "master_check": [{"status": "ok"}]})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
