"""An update of a stack whose servers read the SES SMTP credentials from the user's secret.

Stacks built before ``EmailSmtpSecretArn`` existed read, with an ``EmailSender``, the secret the
user made under the name ``gitlab-cfn/<stack>/ses-smtp-credentials``. The templates since make
their own credentials (an IAM user and its key, ``compile/email.py``) unless
``EmailSmtpSecretArn`` names a secret. Updated as is, such a stack would switch: mail keeps
working only if the account lets CloudFormation create IAM users and keys (an SCP denying
``iam:CreateUser`` or ``iam:CreateAccessKey`` fails the update), and the servers change
credentials at their next boot.

The least surprising update keeps what runs: ``deploy`` finds that secret and passes its ARN as
``EmailSmtpSecretArn`` (and says so, with the flag that lets the stack make its own instead);
``diff --stack-name`` says what ``deploy`` will do. Without the secret (deleted since), the
update makes the stack's own credentials, and says so.
"""

from __future__ import annotations

from gitlab_cfn.compile.constraints import violations

PARAMETER = "EmailSmtpSecretArn"
SENDER = "EmailSender"


def legacy_secret_name(stack_name: str) -> str:
    """The secret an older stack's servers read (the user made it; docs/operations.md)."""
    return f"gitlab-cfn/{stack_name}/ses-smtp-credentials"


def applies(previous: dict[str, str], definitions: dict, given: dict[str, str]) -> bool:
    """The stack had a sender and no EmailSmtpSecretArn parameter, the build has it, none is given."""
    return bool(previous.get(SENDER)) and PARAMETER not in previous and PARAMETER in definitions \
        and PARAMETER not in given and given.get(SENDER, previous[SENDER]) != ""


def _secret_arn(secrets, name: str) -> str | None:
    try:
        return secrets.describe_secret(SecretId=name)["ARN"]
    except secrets.exceptions.ResourceNotFoundException:
        return None


def keep_legacy_secret(aws, region: str, stack_name: str, previous: dict[str, str], definitions: dict,
                       given: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The parameters to add to the update (``{EmailSmtpSecretArn: ARN}`` or none) and the
    plan line that says what happens to the e-mail credentials (None: nothing changes)."""
    if not applies(previous, definitions, given):
        return {}, None
    name = legacy_secret_name(stack_name)
    made = ("the stack makes its own SES SMTP credentials (storage:SesSmtpUser, an IAM user and its "
            "access key: an SCP denying iam:CreateUser or iam:CreateAccessKey fails the update)")
    arn = _secret_arn(aws.client("secretsmanager", region), name)
    if arn is None:
        return {}, f"e-mail: the stack's servers read the secret {name}, which no longer exists: {made}"
    problems = violations(PARAMETER, definitions[PARAMETER], arn)
    if problems:
        return {}, (f"e-mail: the stack's servers read the secret {name}, whose ARN {PARAMETER} does not "
                    f"accept ({problems[0]}): {made}; to keep it, copy it to a secret of a shorter name "
                    f"and give --param {PARAMETER}=<its ARN>")
    return {PARAMETER: arn}, (f"e-mail: keeping the SMTP credentials the stack's servers read: {PARAMETER}={arn} "
                              f"(the secret {name}); give --param {PARAMETER}= to let the stack make its own "
                              "instead (an IAM user and its access key)")


def diff_line(aws, region: str, stack_name: str, previous: dict[str, str], definitions: dict) -> str | None:
    """What ``deploy`` will do about the e-mail credentials, for ``diff --stack-name``."""
    _, line = keep_legacy_secret(aws, region, stack_name, previous, definitions, {})
    return line and line.replace("e-mail: keeping", "e-mail: gitlab-cfn deploy keeps", 1)
