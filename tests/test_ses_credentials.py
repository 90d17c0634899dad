"""The SES SMTP credentials custom resource's code (gitlab_cfn/compile/functions/ses_smtp_password.py):
the derivation against AWS's published example, and the handler's Create, Update and Delete
against botocore's Stubber (the real clients, their requests checked against the service
models), answering a local HTTP server as CloudFormation's ResponseURL."""

import base64
import hashlib
import hmac
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import botocore.session
import pytest
from botocore.stub import Stubber

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



def _with_response_server(run):
    answers = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            answers.append((self.headers.get("Content-Type"),
                            json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 10          # a handler that never answers fails the test, never hangs it
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        run(f"http://127.0.0.1:{server.server_port}/response?X-Amz-Signature=abc")
    finally:
        thread.join(10)
        server.server_close()
    # CloudFormation's pre-signed URL is signed without a content type (cfnresponse sends "").
    assert [t for t, _ in answers] == [""] * len(answers)
    return [a for _, a in answers]


SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gitlab-cfn/s/ses-smtp-credentials-AbCdEf"
USER = "s-StorageStack-1-SesSmtpUser-ABC"
NEW_KEY = {"UserName": USER, "AccessKeyId": "AKIANEWKEY0000000001", "SecretAccessKey": EXAMPLE_SECRET,
           "Status": "Active", "CreateDate": datetime(2026, 1, 2, tzinfo=timezone.utc)}


def _event(url, request_type="Create", **props):
    event = {"RequestType": request_type, "ResponseURL": url, "StackId": "arn:aws:cloudformation:eu-west-1:1:stack/s/1",
             "RequestId": "r1", "LogicalResourceId": "SesSmtpCredentials", "ResourceType": "Custom::SesSmtpCredentials",
             "ResourceProperties": {"ServiceToken": "arn:aws:lambda:eu-west-1:1:function:f", "UserName": USER,
                                    "Region": "eu-west-1", "SecretArn": SECRET_ARN, "Sender": "example.com", **props}}
    if request_type != "Create":
        event["PhysicalResourceId"] = f"ses-smtp-{USER}"
    return event


def _clients():
    session = botocore.session.get_session()
    kw = {"region_name": "eu-west-1", "aws_access_key_id": "AKIATEST", "aws_secret_access_key": "test"}
    return session.create_client("iam", **kw), session.create_client("secretsmanager", **kw)


def _listed(*ids):
    return {"AccessKeyMetadata": [{"UserName": USER, "AccessKeyId": i, "Status": "Active",
                                   "CreateDate": datetime(2025, 1, n + 1, tzinfo=timezone.utc)}
                                  for n, i in enumerate(ids)], "IsTruncated": False}


def _run(event_of, plan):
    """Run the handler with stubbed IAM and Secrets Manager clients; ``plan(iam, secrets)``
    adds the expected requests in order. Every expected request must be made."""
    iam, secrets = _clients()
    with Stubber(iam) as i, Stubber(secrets) as s:
        plan(i, s)
        (answer,) = _with_response_server(lambda url: ses.handler(event_of(url), None, iam=iam, secrets=secrets))
        i.assert_no_pending_responses()
        s.assert_no_pending_responses()
    assert EXAMPLE_SECRET not in json.dumps(answer)
    assert ses.smtp_password(EXAMPLE_SECRET, "eu-west-1") not in json.dumps(answer)
    assert answer["Data"] == {} and answer["NoEcho"] is True
    assert (answer["StackId"], answer["RequestId"], answer["LogicalResourceId"]) == (
        "arn:aws:cloudformation:eu-west-1:1:stack/s/1", "r1", "SesSmtpCredentials")
    return answer


def _written():
    return {"SecretId": SECRET_ARN, "SecretString": json.dumps(
        {"username": NEW_KEY["AccessKeyId"], "password": ses.smtp_password(EXAMPLE_SECRET, "eu-west-1")})}


def test_create_makes_a_key_and_writes_its_smtp_credentials_to_the_secret():
    def plan(i, s):
        i.add_response("list_access_keys", _listed(), {"UserName": USER})
        i.add_response("create_access_key", {"AccessKey": NEW_KEY}, {"UserName": USER})
        s.add_response("put_secret_value", {"ARN": SECRET_ARN, "VersionId": "v" * 32}, _written())
    answer = _run(lambda url: _event(url), plan)
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == f"ses-smtp-{USER}"


def test_update_rotates_the_key_and_deletes_the_old_one_after_the_secret_is_written():
    def plan(i, s):
        i.add_response("list_access_keys", _listed("AKIAOLDKEY0000000001"), {"UserName": USER})
        i.add_response("create_access_key", {"AccessKey": NEW_KEY}, {"UserName": USER})
        s.add_response("put_secret_value", {"ARN": SECRET_ARN}, _written())
        i.add_response("delete_access_key", {}, {"UserName": USER, "AccessKeyId": "AKIAOLDKEY0000000001"})
    answer = _run(lambda url: _event(url, "Update", Sender="mail.example.com"), plan)
    # The same physical id: CloudFormation sends no Delete of the old resource after the update.
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == f"ses-smtp-{USER}"


def test_update_with_two_keys_makes_room_first_oldest_key_deleted():
    def plan(i, s):
        i.add_response("list_access_keys", _listed("AKIAOLDKEY0000000001", "AKIAOLDKEY0000000002"), {"UserName": USER})
        i.add_response("delete_access_key", {}, {"UserName": USER, "AccessKeyId": "AKIAOLDKEY0000000001"})
        i.add_response("create_access_key", {"AccessKey": NEW_KEY}, {"UserName": USER})
        s.add_response("put_secret_value", {"ARN": SECRET_ARN}, _written())
        i.add_response("delete_access_key", {}, {"UserName": USER, "AccessKeyId": "AKIAOLDKEY0000000002"})
    assert _run(lambda url: _event(url, "Update"), plan)["Status"] == "SUCCESS"


def test_delete_deletes_every_key_of_the_user_and_nothing_else():
    def plan(i, s):
        i.add_response("list_access_keys", _listed("AKIAOLDKEY0000000001", "AKIAOLDKEY0000000002"), {"UserName": USER})
        for k in ("AKIAOLDKEY0000000001", "AKIAOLDKEY0000000002"):
            i.add_response("delete_access_key", {}, {"UserName": USER, "AccessKeyId": k})
    answer = _run(lambda url: _event(url, "Delete"), plan)
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == f"ses-smtp-{USER}"


def test_delete_of_a_user_already_gone_succeeds():
    # A rollback of a create that failed before the user existed: nothing to delete.
    def plan(i, s):
        i.add_client_error("list_access_keys", "NoSuchEntity", "The user cannot be found.", 404)
    assert _run(lambda url: _event(url, "Delete"), plan)["Status"] == "SUCCESS"


def test_a_secret_that_cannot_be_written_fails_the_resource_and_its_new_key_is_deleted():
    def plan(i, s):
        i.add_response("list_access_keys", _listed(), {"UserName": USER})
        i.add_response("create_access_key", {"AccessKey": NEW_KEY}, {"UserName": USER})
        s.add_client_error("put_secret_value", "ResourceNotFoundException",
                           f"no secret {EXAMPLE_SECRET}", 400, expected_params=_written())
        i.add_response("delete_access_key", {}, {"UserName": USER, "AccessKeyId": NEW_KEY["AccessKeyId"]})
    answer = _run(lambda url: _event(url), plan)
    assert answer["Status"] == "FAILED"
    assert "ResourceNotFoundException" in answer["Reason"] and "***" in answer["Reason"]


def test_a_refused_key_fails_the_resource_with_the_reason():
    def plan(i, s):
        i.add_response("list_access_keys", _listed(), {"UserName": USER})
        i.add_client_error("create_access_key", "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409)
    answer = _run(lambda url: _event(url), plan)
    assert answer["Status"] == "FAILED" and "LimitExceeded" in answer["Reason"]
    assert answer["PhysicalResourceId"] == f"ses-smtp-{USER}"


class _Clock:
    """The function's monotonic() and sleep(): time passes only when it sleeps (every test)."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    made = _Clock()
    monkeypatch.setattr(ses, "monotonic", made.monotonic)
    monkeypatch.setattr(ses, "sleep", made.sleep)
    return made


def test_iam_not_yet_consistent_is_retried_until_the_calls_pass(clock):
    """Just after CloudFormation made the user and the function's role, IAM may deny the role's
    calls (its policy not yet seen) or not find the user: the create is retried, not failed."""
    def plan(i, s):
        i.add_client_error("list_access_keys", "AccessDenied", "not authorized to perform iam:ListAccessKeys", 403)
        i.add_client_error("list_access_keys", "NoSuchEntity", f"The user with name {USER} cannot be found.", 404)
        i.add_response("list_access_keys", _listed(), {"UserName": USER})
        i.add_response("create_access_key", {"AccessKey": NEW_KEY}, {"UserName": USER})
        # The secret's write denied once (the role's policy not yet seen by Secrets Manager): the
        # new key is deleted and the whole step made again, with a new key.
        s.add_client_error("put_secret_value", "AccessDeniedException", "not authorized", 400,
                           expected_params=_written())
        i.add_response("delete_access_key", {}, {"UserName": USER, "AccessKeyId": NEW_KEY["AccessKeyId"]})
        i.add_response("list_access_keys", _listed(), {"UserName": USER})
        i.add_response("create_access_key", {"AccessKey": NEW_KEY}, {"UserName": USER})
        s.add_response("put_secret_value", {"ARN": SECRET_ARN}, _written())
    answer = _run(lambda url: _event(url), plan)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(clock.slept) == 3 and sum(clock.slept) <= ses.RETRY


def test_a_denial_that_lasts_fails_the_resource_after_about_a_minute(clock):
    def plan(i, s):
        for _ in range(13):   # at 0, 5, ... 60 s; no wait past the minute: the last denial is the answer
            i.add_client_error("list_access_keys", "AccessDenied", "not authorized to perform iam:ListAccessKeys", 403)
    answer = _run(lambda url: _event(url), plan)
    assert answer["Status"] == "FAILED" and "AccessDenied" in answer["Reason"]
    assert 55 <= sum(clock.slept) <= 65
    # The function's own timeout leaves room for the retries and the answer.
    from gitlab_cfn.compile import email
    assert email.FUNCTION_TIMEOUT >= ses.RETRY + 30


def test_a_refusal_that_is_not_iam_propagation_is_not_retried(clock):
    def plan(i, s):
        i.add_response("list_access_keys", _listed(), {"UserName": USER})
        i.add_client_error("create_access_key", "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409)
    assert _run(lambda url: _event(url), plan)["Status"] == "FAILED"
    assert clock.slept == []


def test_a_malformed_request_still_answers_failed():
    iam, secrets = _clients()

    def event_of(url):
        event = _event(url)
        del event["ResourceProperties"]["UserName"]
        return event
    (answer,) = _with_response_server(lambda url: ses.handler(event_of(url), None, iam=iam, secrets=secrets))
    assert answer["Status"] == "FAILED" and "UserName" in answer["Reason"]
    assert answer["PhysicalResourceId"] == "SesSmtpCredentials"


def test_the_inline_code_fits_cloudformation_zipfile_limit():
    # AWS::Lambda::Function Code.ZipFile: at most 4096 characters
    # (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-code.html).
    from pathlib import Path
    assert len(Path(ses.__file__).read_text()) <= 4096
