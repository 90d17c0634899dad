"""SES SMTP credentials from an IAM access key, as a CloudFormation custom resource.

The SMTP password of an IAM user's access key is AWS's documented derivation
(https://docs.aws.amazon.com/ses/latest/dg/smtp-credentials.html#smtp-credentials-convert):
the Signature Version 4 signing key of the secret access key for the date ``11111111``,
the region and the service ``ses`` (https://docs.aws.amazon.com/general/latest/gr/signature-v4-examples.html),
an HMAC-SHA256 of ``SendRawEmail`` with it, prefixed with the version byte 0x04, base64.

The handler (Create and Update) reads the access key from the secret named by
``AccessKeySecretArn`` (``{"AccessKeyId", "SecretAccessKey"}``), writes
``{"username": <access key id>, "password": <SMTP password>}`` to the secret named by
``SmtpSecretArn``, and answers CloudFormation through the pre-signed ``ResponseURL``;
nothing secret is returned as data. Delete changes nothing (the secrets have their own
policies). Standard library and boto3 only, as the Lambda Python runtime has them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.request

SMTP_DATE = "11111111"
SMTP_SERVICE = "ses"
SMTP_TERMINAL = "aws4_request"
SMTP_MESSAGE = "SendRawEmail"
SMTP_VERSION = 0x04


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """SigV4's kSigning: HMAC chain over the date, region, service and "aws4_request"."""
    key = _hmac(("AWS4" + secret_access_key).encode("utf-8"), date)
    for part in (region, service, SMTP_TERMINAL):
        key = _hmac(key, part)
    return key


def smtp_password(secret_access_key: str, region: str) -> str:
    signature = _hmac(signing_key(secret_access_key, SMTP_DATE, region, SMTP_SERVICE), SMTP_MESSAGE)
    return base64.b64encode(bytes([SMTP_VERSION]) + signature).decode("ascii")


def _respond(event: dict, status: str, reason: str = "", physical_id: str | None = None) -> None:
    body = json.dumps({
        "Status": status, "Reason": reason[:1000],
        "PhysicalResourceId": physical_id or event.get("PhysicalResourceId") or event["LogicalResourceId"],
        "StackId": event["StackId"], "RequestId": event["RequestId"], "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": True, "Data": {},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30):
        pass


def handler(event: dict, context: object, client=None) -> None:
    try:
        props = event["ResourceProperties"]
        physical_id = f"smtp-credentials-{props['SmtpSecretArn'].rsplit(':', 1)[-1]}"
        if event["RequestType"] in ("Create", "Update"):
            if client is None:
                import boto3
                client = boto3.client("secretsmanager", region_name=props["Region"])
            key = json.loads(client.get_secret_value(SecretId=props["AccessKeySecretArn"])["SecretString"])
            client.put_secret_value(SecretId=props["SmtpSecretArn"], SecretString=json.dumps({
                "username": key["AccessKeyId"],
                "password": smtp_password(key["SecretAccessKey"], props["Region"]),
            }))
        _respond(event, "SUCCESS", physical_id=physical_id)
    except Exception as exc:  # CloudFormation must hear of every failure, or it waits an hour
        _respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
