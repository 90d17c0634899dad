"""Outbound e-mail through Amazon SES: the email tier, its parameters, and the gitlab.rb
lines the boot writes (scripts/lib/email.sh), checked against the settings every
supported GitLab release documents and evaluated by Ruby."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import props
from gitlab_cfn.compile import versions
from gitlab_cfn.operate.deploy import check_params
from support.gitlab_rb import unknown_settings
from support.boot import evaluate_gitlab_rb

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def email_rb(sender: str, user: str = "AKIAEXAMPLE", password: str = "BPass+word/=") -> str:
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/email.sh'}\n"
              f"SMTP_USER={user!r} SMTP_PASSWORD={password!r}\nemail_gitlab_rb {sender!r}\n")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "AWS_REGION": "eu-west-1"})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("sender, sent_from, domain", [
    ("gitlab@example.com", "gitlab@example.com", "example.com"),
    ("mail.example.com", "gitlab@mail.example.com", "mail.example.com"),
])
def test_ses_settings_as_gitlab_documents_them(sender, sent_from, domain):
    text = email_rb(sender)
    for release in versions.SETTINGS_RELEASE.values():
        assert unknown_settings(text, release) == [], release
    rails = evaluate_gitlab_rb(text)["settings"]["gitlab_rails"]
    assert rails["smtp_enable"] is True and rails["gitlab_email_enabled"] is True
    assert rails["smtp_address"] == "email-smtp.eu-west-1.amazonaws.com"
    assert (rails["smtp_port"], rails["smtp_enable_starttls_auto"], rails["smtp_tls"]) == (587, True, False)
    assert rails["smtp_authentication"] == "login"
    assert (rails["smtp_user_name"], rails["smtp_password"]) == ("AKIAEXAMPLE", "BPass+word/=")
    assert (rails["gitlab_email_from"], rails["smtp_domain"]) == (sent_from, domain)


def test_no_sender_no_email():
    rails = evaluate_gitlab_rb(email_rb(""))["settings"]["gitlab_rails"]
    assert rails == {"gitlab_email_enabled": False}


def test_a_quote_in_the_password_stays_in_its_string():
    rails = evaluate_gitlab_rb(email_rb("example.com", password="it's\\x"))["settings"]["gitlab_rails"]
    assert rails["smtp_password"] == "it's\\x"


def test_sender_must_be_an_address_or_a_domain(default):
    template = default["main"]
    for good in ("", "gitlab@example.com", "example.com", "mail.example.co.uk"):
        assert not [p for p in check_params(template, {"EmailSender": good}) if p.startswith("Email")], good
    for bad in ("gitlab", "gitlab@", "@example.com", "Example.COM", "gitlab@example", "a b@example.com"):
        (problem,) = [p for p in check_params(template, {"EmailSender": bad}) if p.startswith("EmailSender")]
        assert "an e-mail address (gitlab@example.com) or a domain (example.com)" in problem, (bad, problem)
    # Longer than the servers' user data allows for it.
    assert any(p.startswith("EmailSender") for p in check_params(template, {"EmailSender": "g@" + "a" * 80 + ".com"}))


def test_email_on_grants_the_secret_and_port_587_only(default):
    for tier in ("security-groups", "storage"):
        assert default[tier]["Conditions"]["EmailOn"] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": "EmailSender"}, ""]}]}, tier
    egress = default["security-groups"]["Resources"]["AppToSesSmtp"]
    assert egress["Condition"] == "EmailOn"
    p = egress["Properties"]
    assert (p["IpProtocol"], p["FromPort"], p["ToPort"], p["CidrIp"]) == ("tcp", 587, 587, "0.0.0.0/0")
    assert p["GroupId"] == {"Fn::GetAtt": ["AppSecurityGroup", "GroupId"]}
    read = default["storage"]["Resources"]["SmtpCredentialsRead"]
    assert read["Condition"] == "EmailOn" and read["Properties"]["Roles"] == [{"Ref": "InstanceRole"}]
    (statement,) = read["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    assert statement["Resource"] == [{"Fn::Sub": (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
        "gitlab-cfn/${ParentStackName}/ses-smtp-credentials-??????")}]
    # The servers are told the sender; the secret's name is the same convention on both sides.
    app = default["main"]["Resources"]["AppStack"]["Properties"]["Parameters"]
    assert app["EmailSender"] == {"Ref": "EmailSender"}
    name = subprocess.run(["bash", "-c", f"source {SCRIPTS / 'lib/common.sh'}; source {SCRIPTS / 'lib/email.sh'}; "
                           "smtp_secret_name"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "LOG_GROUP_PREFIX": "/gitlab-cfn/gitlab-production/0a1b2c3d"})
    assert name.stdout == statement["Resource"][0]["Fn::Sub"].split("secret:", 1)[1].removesuffix("-??????").replace(
        "${ParentStackName}", "gitlab-production")


def test_the_server_reads_the_credentials_of_the_secret_it_names(tmp_path):
    fake = tmp_path / "aws"
    fake.write_text("#!/bin/sh\necho \"$@\" >> \"$CALLS\"\n"
                    "echo '{\"username\": \"AKIAEXAMPLE\", \"password\": \"pw\"}'\n")
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/email.sh'}\n"
              "load_smtp_credentials \"$(smtp_secret_name)\"; printf '%s|%s' \"$SMTP_USER\" \"$SMTP_PASSWORD\"\n")
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "AWS_REGION": "eu-west-1", "CALLS": str(calls),
           "LOG_GROUP_PREFIX": "/gitlab-cfn/gitlab-production/0a1b2c3d"}
    on = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert on.returncode == 0 and on.stdout == "AKIAEXAMPLE|pw", on.stderr
    assert re.search(r"secretsmanager get-secret-value --region eu-west-1 --secret-id "
                     r"gitlab-cfn/gitlab-production/ses-smtp-credentials", calls.read_text())
    fake.write_text("#!/bin/sh\necho '{}'\n")
    empty = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert empty.returncode == 1
    assert "the SMTP credentials secret has no username and password" in empty.stderr
