"""An error answer from AWS ends in one line and exit 1, never a traceback.

A tiny HTTP endpoint on 127.0.0.1 answers every request the same bad way; each
command that talks to AWS is pointed at it with --endpoint-url. botocore retries
first (AWS_MAX_ATTEMPTS=2 keeps the test short), then the command gives up.
"""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gitlab_cfn.compile import compiler, config
from test_cli import EXE

QUERY_THROTTLING = (b'<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>'
                    b'<Message>Rate exceeded</Message></Error><RequestId>r1</RequestId></ErrorResponse>')
EC2_THROTTLING = (b'<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.'
                  b'</Message></Error></Errors><RequestID>r1</RequestID></Response>')
S3_THROTTLING = b'<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'


class Endpoint(BaseHTTPRequestHandler):
    mode = "500"
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).requests.append(self.command)
        ec2 = b"Version=2016-11-15" in body
        query = b"Action=" in body
        if self.mode == "not-http":
            self.wfile.write(b"this is not HTTP at all\r\n\r\n")
            self.close_connection = True
            return
        if self.mode == "500":
            status, payload, kind = 500, b"<html><body>Internal Server Error</body></html>", "text/html"
        elif self.mode == "throttling":
            if ec2:
                status, payload = 503, EC2_THROTTLING
            elif query:
                status, payload = 400, QUERY_THROTTLING
            else:
                status, payload = 503, S3_THROTTLING
            kind = "text/xml"
        else:  # "garbage": a success status whose body is not a response
            status, payload, kind = 200, b"<<< not an AWS answer \x00", "text/xml"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer


@pytest.fixture
def bad_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Endpoint.requests = []
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("aws-errors") / "build"
    compiler.write_build(config.BuildConfig(), out)
    params = out.parent / "params.json"
    params.write_text(json.dumps({
        "AvailabilityZones": "eu-west-1a,eu-west-1b", "DomainName": "gitlab.example.test",
        "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
        "GitSshCIDR": "203.0.113.0/24", "RemoteAccessCIDR": "198.51.100.0/24", "KeyPairName": "ops"}))
    return out


def command(name, build, url):
    return {
        "deploy": ["deploy", "--build", str(build), "--stack-name", "gl", "--region", "eu-west-1",
                   "--params", str(build.parent / "params.json"), "--yes"],
        "destroy": ["destroy", "--stack-name", "gl", "--region", "eu-west-1", "--confirm", "gl"],
        "publish": ["publish", "--build", str(build), "--bucket", "templates", "--regions", "eu-west-1"],
        "bake-ami": ["bake-ami", "--gitlab-version", "19.3.0", "--region", "eu-west-1"],
    }[name] + ["--endpoint-url", url]


CASES = [(c, m) for c in ("deploy", "destroy", "publish", "bake-ami") for m in ("500", "throttling", "not-http")]
# S3's HEAD and PUT answers carry no body to parse: publish meets a garbage body only in other forms.
CASES += [(c, "garbage") for c in ("deploy", "destroy", "bake-ami")]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_an_aws_error_answer_is_one_line_and_exit_1(name, mode, build, bad_endpoint):
    Endpoint.mode = mode
    url = f"http://127.0.0.1:{bad_endpoint.server_address[1]}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "2"}
    result = subprocess.run([EXE, *command(name, build, url)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("gitlab-cfn: error: AWS: ")
    assert not [line for line in lines if line.startswith("gitlab-cfn:") and line is not lines[-1]]
    # A HEAD answer has no body: S3 throttling then shows as its status, 503.
    expected = {"500": "500", "throttling": ("Throttling", "RequestLimitExceeded", "SlowDown", "(503)"),
                "not-http": "Connection", "garbage": "not an AWS response"}[mode]
    assert any(word in lines[-1] for word in ([expected] if isinstance(expected, str) else expected)), lines[-1]
    if mode in ("500", "throttling"):
        assert len(Endpoint.requests) >= 2  # botocore retried before giving up
