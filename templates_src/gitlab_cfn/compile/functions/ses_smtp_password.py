"""SES SMTP credentials of an IAM user, as a custom resource (inline: <= 4096 chars).

Password: docs.aws.amazon.com/ses/latest/dg/smtp-credentials.html. Create/Update: a new key,
{username, password} put in SecretArn, other keys deleted. Delete: every key deleted.
IAM is eventually consistent (IAM/latest/UserGuide/troubleshoot_general.html): a call just
after the user, role or policy were made may be denied or miss the user: retried RETRY s.
"""
import base64
import hashlib
import hmac
import json
import urllib.request
from time import monotonic, sleep

RETRY = 60
TRANSIENT = ("AccessDenied", "AccessDeniedException", "NoSuchEntity")


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def smtp_password(secret, region):
    sig = _hmac(signing_key(secret, "11111111", region, "ses"), "SendRawEmail")
    return base64.b64encode(bytes([4]) + sig).decode()


def _respond(event, status, reason, physical):
    body = json.dumps({
        "Status": status, "Reason": reason[:500], "PhysicalResourceId": physical,
        "StackId": event["StackId"], "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"], "NoEcho": True, "Data": {}}).encode()
    req = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                 headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(req, timeout=30):
        pass


def _keys(iam, user):
    found = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return [k["AccessKeyId"] for k in sorted(found, key=lambda k: k["CreateDate"])]


def _retried(work):
    end = monotonic() + RETRY
    while True:
        try:
            return work()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code not in TRANSIENT or monotonic() + 5 > end:
                raise
            sleep(5)


def _delete(iam, user):
    try:
        for old in _keys(iam, user):
            iam.delete_access_key(UserName=user, AccessKeyId=old)
    except iam.exceptions.NoSuchEntityException:
        pass


def _make(iam, secrets, user, region, arn, hide):
    old = _keys(iam, user)
    if len(old) > 1:  # IAM allows two keys a user: make room
        iam.delete_access_key(UserName=user, AccessKeyId=old.pop(0))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    hide += [key["SecretAccessKey"], smtp_password(key["SecretAccessKey"], region)]
    try:
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(
            {"username": key["AccessKeyId"], "password": hide[-1]}))
    except Exception:
        iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        raise
    for k in old:
        iam.delete_access_key(UserName=user, AccessKeyId=k)


def handler(event, context, iam=None, secrets=None):
    physical = event.get("PhysicalResourceId") or event["LogicalResourceId"]
    hide = []
    try:
        props = event["ResourceProperties"]
        user, region = props["UserName"], props["Region"]
        physical = "ses-smtp-" + user
        if iam is None:
            import boto3
            iam, secrets = boto3.client("iam"), boto3.client("secretsmanager", region_name=region)
        if event["RequestType"] == "Delete":
            _retried(lambda: _delete(iam, user))
        else:
            _retried(lambda: _make(iam, secrets, user, region, props["SecretArn"], hide))
        _respond(event, "SUCCESS", "", physical)
    except Exception as exc:  # CloudFormation must hear of every failure, or it waits
        reason = type(exc).__name__ + ": " + str(exc)
        for h in hide:
            reason = reason.replace(h, "***")
        _respond(event, "FAILED", reason, physical)
