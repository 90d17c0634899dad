"""The SES SMTP credential derivation of the custom resource's code
(gitlab_cfn/compile/functions/ses_smtp_password.py)."""

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from gitlab_cfn.compile.functions import ses_smtp_password as ses

# AWS's published worked example of the SigV4 signing key
# (https://docs.aws.amazon.com/general/latest/gr/signature-v4-examples.html).
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EXAMPLE_SIGNING_KEY = "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_the_signing_key_is_aws_published_example():
    assert ses.signing_key(EXAMPLE_SECRET, "20120215", "us-east-1", "iam").hex() == EXAMPLE_SIGNING_KEY
    # Any change of the chain's inputs changes the key (the example is not matched by chance).
    assert ses.signing_key(EXAMPLE_SECRET, "20120216", "us-east-1", "iam").hex() != EXAMPLE_SIGNING_KEY
    assert ses.signing_key(EXAMPLE_SECRET[:-1], "20120215", "us-east-1", "iam").hex() != EXAMPLE_SIGNING_KEY


def test_the_smtp_password_is_the_version_byte_and_the_sendrawemail_signature():
    password = ses.smtp_password(EXAMPLE_SECRET, "eu-west-1")
    raw = base64.b64decode(password)
    assert len(raw) == 33 and raw[0] == 0x04
    key = ses.signing_key(EXAMPLE_SECRET, "11111111", "eu-west-1", "ses")
    assert raw[1:] == hmac.new(key, b"SendRawEmail", hashlib.sha256).digest()
    # Credentials are per region.
    assert ses.smtp_password(EXAMPLE_SECRET, "us-east-1") != password


class FakeSecrets:
    def __init__(self, values):
        self.values, self.put = values, {}

    def get_secret_value(self, SecretId):
        return {"SecretString": self.values[SecretId]}

    def put_secret_value(self, SecretId, SecretString):
        self.put[SecretId] = SecretString


def _with_response_server(run):
    answers = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        run(f"http://127.0.0.1:{server.server_port}/response")
    finally:
        thread.join(10)
        server.server_close()
    return answers


def _event(url, request_type="Create"):
    return {"RequestType": request_type, "ResponseURL": url, "StackId": "arn:aws:cloudformation:eu-west-1:1:stack/s/1",
            "RequestId": "r1", "LogicalResourceId": "SmtpCredentials",
            "ResourceProperties": {"Region": "eu-west-1", "AccessKeySecretArn": "key-arn",
                                   "SmtpSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:smtp-AbCd"}}


def test_the_handler_writes_the_smtp_secret_and_answers_without_it():
    client = FakeSecrets({"key-arn": json.dumps({"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": EXAMPLE_SECRET})})
    (answer,) = _with_response_server(lambda url: ses.handler(_event(url), None, client=client))
    assert answer["Status"] == "SUCCESS" and answer["Data"] == {} and answer["NoEcho"] is True
    written = json.loads(client.put["arn:aws:secretsmanager:eu-west-1:1:secret:smtp-AbCd"])
    assert written == {"username": "AKIAEXAMPLE", "password": ses.smtp_password(EXAMPLE_SECRET, "eu-west-1")}
    assert EXAMPLE_SECRET not in json.dumps(answer)


def test_a_failure_is_reported_to_cloudformation():
    client = FakeSecrets({})
    (answer,) = _with_response_server(lambda url: ses.handler(_event(url), None, client=client))
    assert answer["Status"] == "FAILED" and "KeyError" in answer["Reason"]
    assert client.put == {}
