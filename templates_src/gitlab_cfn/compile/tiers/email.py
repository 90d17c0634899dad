"""Email tier: what outbound e-mail through Amazon SES needs around the GitLab servers.

When ``EmailSender`` is given (an address or a domain of an SES identity the user
verified), the GitLab servers may read the SMTP credentials secret named
``SmtpCredentialsSecretName`` (``{"username", "password"}``: SES SMTP credentials, in this
account and region, encrypted with the default ``aws/secretsmanager`` key) and
reach SES's SMTP endpoint on port 587 and nothing more; the boot writes GitLab's SES
settings (scripts/lib/email.sh). Without a sender, nothing is created and e-mail is off.

A Rule of the parent refuses a sender without a credentials secret.

Exposes: ``EmailSmtpSecretName`` (empty when e-mail is off), which the app tier reads so
that its servers boot after the grant and the egress rule exist.
"""

from __future__ import annotations

from awacs import secretsmanager
from awacs.aws import Allow, PolicyDocument, Statement
from troposphere import Equals, If, Not, Sub, ec2

from gitlab_cfn.compile.policies import VERSION, grant
from gitlab_cfn.compile.tier import Tier

DESCRIPTION = "gitlab-cfn email: SES SMTP egress and credentials access for the GitLab servers."

SMTP_PORT = 587
CONDITION = "EmailOn"


def build(tier: Tier) -> None:
    sender = tier.param("EmailSender")
    secret = tier.param("SmtpCredentialsSecretName")
    tier.template.add_condition(CONDITION, Not(Equals(sender, "")))
    read = grant("SmtpCredentialsRead", PolicyDocument(Version=VERSION, Statement=[Statement(
        Sid="ReadSmtpCredentials", Effect=Allow,
        # By name, with the six characters Secrets Manager appends to it
        # (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html).
        Action=[secretsmanager.GetSecretValue, secretsmanager.DescribeSecret],
        Resource=[Sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Name}-??????",
                      Name=secret)])]),
        [tier.input("InstanceRoleName")])
    read.Condition = CONDITION
    tier.add(read)
    # SES's SMTP endpoint has public addresses (email-smtp.<region>.amazonaws.com): out
    # through the NAT gateways, STARTTLS on 587 only.
    tier.add(ec2.SecurityGroupEgress(
        "AppToSesSmtp", Condition=CONDITION,
        GroupId=tier.input("AppSecurityGroupId"),
        IpProtocol="tcp", FromPort=SMTP_PORT, ToPort=SMTP_PORT, CidrIp="0.0.0.0/0",
        Description="SMTP with STARTTLS to Amazon SES"))
    tier.output("EmailSmtpSecretName", If(CONDITION, secret, ""),
                "Secret of the SES SMTP credentials the GitLab servers read (empty: e-mail off).")
