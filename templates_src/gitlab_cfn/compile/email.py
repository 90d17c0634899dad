"""Outbound e-mail's SES SMTP credentials, built in the storage tier.

In the storage tier because everything here hangs on what that tier owns: the secret is
encrypted with the stack's data key, and the GitLab servers' roles (application, Sidekiq)
are granted to read it; the application tier starts only once the storage tier is
complete, so the credentials exist before the first server boots. A tier of its own
would pass the key, the roles and the secret through the parent for five resources.

With ``EmailSender`` and no ``EmailSmtpSecretArn`` (``CreateSmtpCredentials``):

- ``SesSmtpUser``: an IAM user, member of ``SesSmtpGroup``, whose only permission is
  ``ses:SendRawEmail`` on the sender's SES identity (an address sender: the address's or
  its domain's identity, whichever the user verified), from the sender's address only
  (``ses:FromAddress``). SES SMTP credentials are an IAM user's access key, and SMTP
  needs ``ses:SendRawEmail`` (https://docs.aws.amazon.com/ses/latest/dg/smtp-credentials.html);
  identity ARNs and the condition key: https://docs.aws.amazon.com/ses/latest/dg/control-user-access.html.
- ``SesSmtpSecret``: created empty, encrypted with the stack's key.
- ``SesSmtpFunction``: ``functions/ses_smtp_password.py`` inline (ZipFile), outside the VPC
  (it calls IAM and Secrets Manager only, reaches nothing inside the VPC, and IAM has no
  VPC endpoint to reach it by); its role may create, list and delete that user's keys,
  put that secret's value (the key through Secrets Manager only) and log to its own group.
- ``SesSmtpCredentials``: the custom resource; its Create fills the secret, an Update (the
  sender changed) rotates the key, its Delete deletes the keys before the user goes.

With ``EmailSmtpSecretArn``: nothing of the above; the servers read the given secret.
Without ``EmailSender``: nothing at all. The servers are told which secret through the
tier's output ``SmtpSecretArn`` (``none`` without a sender).
"""

from __future__ import annotations

from pathlib import Path

from awacs import iam as iam_actions
from awacs import kms, logs, secretsmanager, ses
from awacs.aws import Allow, Condition, PolicyDocument, Statement, StringEquals, StringEqualsIgnoreCase
from troposphere import (
    And,
    Equals,
    GetAtt,
    If,
    Not,
    Ref,
    Select,
    Split,
    Sub,
    awslambda,
    cloudformation,
    iam,
    secretsmanager as sm,
)
from troposphere import logs as cwlogs

from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.observability import LOG_GROUP_PREFIX
from gitlab_cfn.compile.policies import VERSION, assume_role, secret_read
from gitlab_cfn.compile.tier import Tier, scanner_skip
from gitlab_cfn.errors import GitlabCfnError

FUNCTION_CODE = Path(__file__).resolve().parent / "functions" / "ses_smtp_password.py"
# AWS::Lambda::Function Code.ZipFile holds at most 4096 characters
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-code.html).
ZIPFILE_LIMIT = 4096
# A Python runtime Lambda supports (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
RUNTIME = "python3.12"
SMTP_LOG_GROUP = LOG_GROUP_PREFIX + "/${Suffix}/ses-smtp-credentials"
NO_SECRET = "none"
# The function retries IAM's eventual consistency for a minute (its RETRY) and then answers:
# two minutes leave room for its calls and the answer. No ReservedConcurrentExecutions:
# CloudFormation sends one request at a time for a resource, and a reservation fails the
# create on an account whose unreserved concurrency would drop under Lambda's minimum
# ("decreases account's UnreservedConcurrentExecution below its minimum value"; new accounts
# may have a quota of 10: https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
FUNCTION_TIMEOUT = 120
# CloudFormation waits for a custom resource's answer ServiceTimeout seconds (1 to 3600,
# default 3600) before failing it (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/
# aws-resource-cloudformation-customresource.html): an answer lost (its PUT failed) fails the
# stack in five minutes, not an hour.
SERVICE_TIMEOUT = 300


class SesSmtpCredentials(cloudformation.CustomResource):
    resource_type = "Custom::SesSmtpCredentials"
    props = {**cloudformation.CustomResource.props, "UserName": (object, True), "SecretArn": (object, True),
             "Region": (object, True), "Sender": (object, True)}


class FunctionCodeError(GitlabCfnError):
    """The function's code cannot be inlined: the build fails, exit 1."""


def function_code() -> str:
    code = FUNCTION_CODE.read_text()
    if len(code) > ZIPFILE_LIMIT:
        raise FunctionCodeError(f"{FUNCTION_CODE.name} is {len(code)} characters; an inline ZipFile holds {ZIPFILE_LIMIT}")
    return code


def _send_policy(sender: Ref) -> PolicyDocument:
    identity = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/"
    # "<sender>@" split: an address's domain even if the branch were evaluated for a domain sender.
    domain = Select(1, Split("@", Sub("${EmailSender}@")))
    return PolicyDocument(Version=VERSION, Statement=[Statement(
        Sid="SendFromTheSenderOnly",
        Effect=Allow,
        Action=[ses.SendRawEmail],
        Resource=If("SenderIsDomain", [Sub(identity + "${S}", S=sender)],
                    [Sub(identity + "${S}", S=sender), Sub(identity + "${D}", D=domain)]),
        # The address GitLab sends from (scripts/lib/email.sh): the sender, or gitlab@<domain>,
        # as written (GitLab's From: is gitlab_email_from unchanged). The sender's local part may
        # have capitals (catalog.SENDER_PATTERN) and IAM's StringEquals is case-sensitive: compared
        # ignoring case, so the grant does not hang on the case SES reports ses:FromAddress in
        # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
        Condition=Condition(StringEqualsIgnoreCase(
            "ses:FromAddress", If("SenderIsDomain", Sub("gitlab@${EmailSender}"), sender))),
    )])


def smtp_credentials(tier: Tier, key_arn, roles: list) -> None:
    """The credentials (when the stack makes them), the servers' read grant, the output."""
    sender, given = tier.param("EmailSender"), tier.param("EmailSmtpSecretArn")
    add = tier.template.add_condition
    add("EmailOn", Not(Equals(sender, "")))
    add("SmtpSecretGiven", Not(Equals(given, "")))
    add("CreateSmtpCredentials", And({"Condition": "EmailOn"}, Not({"Condition": "SmtpSecretGiven"})))
    # A domain has no '@': the first part of "<sender>@" split at '@' is the whole sender.
    add("SenderIsDomain", Equals(Select(0, Split("@", Sub("${EmailSender}@"))), sender))
    on = "CreateSmtpCredentials"

    group = tier.add(iam.Group("SesSmtpGroup", Condition=on, Path=IAM_PATH, Policies=[
        iam.Policy(PolicyName="ses-send-raw-email", PolicyDocument=_send_policy(sender))]))
    user = tier.add(iam.User("SesSmtpUser", Condition=on, Path=IAM_PATH, Groups=[Ref(group)],
                             Tags=tags("ses-smtp")))
    secret = tier.keep(sm.Secret(
        "SesSmtpSecret", Condition=on,
        Description=Sub("GitLab SES SMTP credentials of stack ${ParentStackName} (written by SesSmtpCredentials)"),
        KmsKeyId=key_arn, Tags=tags("ses-smtp")))
    # Kept, as every log group of the stack, so named per storage stack (a stack of the same
    # name deployed later makes its own), under the prefix the key policy lets CloudWatch Logs use.
    suffix = Select(0, Split("-", Select(2, Split("/", Ref("AWS::StackId")))))
    log_group = tier.keep(cwlogs.LogGroup(
        "SesSmtpFunctionLogs", Condition=on, LogGroupName=Sub(SMTP_LOG_GROUP, Suffix=suffix),
        RetentionInDays=tier.param("LogRetentionDays"), KmsKeyId=key_arn))
    role = tier.add(iam.Role(
        "SesSmtpFunctionRole", Condition=on, Path=IAM_PATH,
        Description="SES SMTP credentials function: the SMTP user's access keys, its secret, its logs.",
        AssumeRolePolicyDocument=assume_role("lambda.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="ses-smtp-credentials", PolicyDocument=PolicyDocument(
            Version=VERSION, Statement=[
                Statement(Sid="SmtpUserKeys", Effect=Allow, Resource=[Sub(
                    "arn:${AWS::Partition}:iam::${AWS::AccountId}:user" + IAM_PATH + "${User}", User=Ref(user))], Action=[
                    iam_actions.CreateAccessKey, iam_actions.ListAccessKeys, iam_actions.DeleteAccessKey]),
                Statement(Sid="SmtpSecretValue", Effect=Allow, Resource=[Ref(secret)],
                          Action=[secretsmanager.PutSecretValue]),
                Statement(Sid="SmtpSecretKey", Effect=Allow, Resource=[key_arn], Action=[kms.GenerateDataKey],
                          Condition=Condition(StringEquals(
                              "kms:ViaService", Sub("secretsmanager.${AWS::Region}.amazonaws.com")))),
                Statement(Sid="OwnLogs", Effect=Allow, Resource=[Sub(
                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:" + SMTP_LOG_GROUP
                    + ":log-stream:*", Suffix=suffix)],
                          Action=[logs.CreateLogStream, logs.PutLogEvents]),
            ]))],
        Tags=tags("ses-smtp")))
    function = tier.add(awslambda.Function(
        "SesSmtpFunction", Condition=on,
        Description="Makes the SES SMTP credentials of the stack's SMTP user (compile/functions/ses_smtp_password.py).",
        Runtime=RUNTIME, Handler="index.handler", Code=awslambda.Code(ZipFile=function_code()),
        Role=GetAtt(role, "Arn"), Timeout=FUNCTION_TIMEOUT, MemorySize=128,
        LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        Tags=tags("ses-smtp")))
    scanner_skip(function, "CKV_AWS_117", "calls IAM and Secrets Manager only and reaches nothing in the VPC; "
                                          "outside it, it needs no egress rule, NAT route or endpoint")
    scanner_skip(function, "CKV_AWS_116", "invoked by CloudFormation only, which fails the resource if no "
                                          "answer comes; a dead-letter queue would only keep the request")
    scanner_skip(function, "CKV_AWS_115", "no reserved concurrency: a reservation fails the create on accounts "
                                          "with a low concurrency quota; CloudFormation sends one request at a time")
    scanner_skip(function, "CKV_AWS_272", "inline code (ZipFile) from this repository; code signing applies "
                                          "to uploaded packages only")
    tier.add(SesSmtpCredentials(
        "SesSmtpCredentials", Condition=on,
        ServiceToken=GetAtt(function, "Arn"), ServiceTimeout=SERVICE_TIMEOUT,
        UserName=Ref(user), SecretArn=Ref(secret), Region=Ref("AWS::Region"),
        # Not read by the function: a new sender is an update, and the update rotates the key.
        Sender=sender,
    ))
    arn = If(on, Ref(secret), If("SmtpSecretGiven", given, NO_SECRET))
    tier.add(iam.PolicyType(
        "SmtpCredentialsRead", Condition="EmailOn", PolicyName="SmtpCredentialsRead",
        Roles=[Ref(r) for r in roles], PolicyDocument=secret_read([If("SmtpSecretGiven", given, Ref(secret))])))
    tier.output("SmtpSecretArn", arn, f"Secret of the SES SMTP credentials the servers read ({NO_SECRET}: no e-mail).")


__all__ = ["smtp_credentials", "function_code"]
