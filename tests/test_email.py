"""Outbound e-mail through Amazon SES: the email tier, its parameters, and the gitlab.rb
lines the boot writes (scripts/lib/email.sh), checked against the settings every
supported GitLab release documents and evaluated by Ruby."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from gitlab_cfn.compile import versions
from gitlab_cfn.operate.deploy import check_params
from support.gitlab_rb import unknown_settings
from support.boot import evaluate_gitlab_rb

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gitlab-StorageStack-SesSmtpSecret-AbCdEf"


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
    # Exactly the secret the servers are told of: the stack's, or the one given.
    assert statement["Resource"] == [{"Fn::If": ["SmtpSecretGiven", {"Ref": "EmailSmtpSecretArn"},
                                                 {"Ref": "SesSmtpSecret"}]}]
    assert default["storage"]["Outputs"]["SmtpSecretArn"]["Value"] == {"Fn::If": [
        "CreateSmtpCredentials", {"Ref": "SesSmtpSecret"}, {"Fn::If": ["SmtpSecretGiven", {"Ref": "EmailSmtpSecretArn"}, "none"]}]}
    app = default["main"]["Resources"]["AppStack"]["Properties"]["Parameters"]
    assert app["EmailSender"] == {"Ref": "EmailSender"}
    assert app["SmtpSecretArn"] == {"Fn::GetAtt": ["StorageStack", "Outputs.SmtpSecretArn"]}


def test_the_server_reads_the_credentials_of_the_secret_it_is_told(tmp_path):
    fake = tmp_path / "aws"
    parameter = json.dumps({"bucket": "b", "key": "k", "region": "eu-west-1", "sha256": "0", "smtp_secret_arn": SECRET})
    fake.write_text("#!/bin/sh\necho \"$@\" >> \"$CALLS\"\n"
                    f"case \"$1\" in ssm) echo '{parameter}';; "
                    "*) echo '{\"username\": \"AKIAEXAMPLE\", \"password\": \"pw\"}';; esac\n")
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/email.sh'}\n"
              "SMTP_SECRET_ARN=$(smtp_secret_arn)\n"
              "load_smtp_credentials \"$SMTP_SECRET_ARN\"; printf '%s|%s' \"$SMTP_USER\" \"$SMTP_PASSWORD\"\n")
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "AWS_REGION": "eu-west-1", "CALLS": str(calls),
           "BUNDLE_PARAMETER": "/gitlab-cfn/gitlab-production/gitlab-app/boot-bundle"}
    on = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert on.returncode == 0 and on.stdout == "AKIAEXAMPLE|pw", on.stderr
    assert calls.read_text().splitlines() == [
        "ssm get-parameter --region eu-west-1 --name /gitlab-cfn/gitlab-production/gitlab-app/boot-bundle "
        "--query Parameter.Value --output text",
        f"secretsmanager get-secret-value --region eu-west-1 --secret-id {SECRET} --query SecretString --output text"]
    # The boot script reads them so, under a sender only.
    text = (SCRIPTS / "gitlab-app.sh").read_text()
    assert re.search(r'if \[\[ -n "\$\{EMAIL_SENDER:-\}" \]\]; then\n\s+SMTP_SECRET_ARN=\$\(smtp_secret_arn\).*\n'
                     r'\s+load_smtp_credentials "\$SMTP_SECRET_ARN"', text)
    fake.write_text("#!/bin/sh\necho '{}'\n")
    empty = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert empty.returncode == 1
    assert "the SMTP credentials secret has no username and password" in empty.stderr


# -- the credentials the stack makes (compile/email.py) ------------------------------------------

CREDENTIALS = ("SesSmtpGroup", "SesSmtpUser", "SesSmtpSecret", "SesSmtpFunctionLogs", "SesSmtpFunctionRole",
               "SesSmtpFunction", "SesSmtpCredentials")
USER_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mine/smtp-AbCdEf"


def _model(templates, **defaults):
    from gitlab_cfn.verify import stackmodel

    templates = copy.deepcopy(templates)
    for name, value in defaults.items():
        templates["main"]["Parameters"][name]["Default"] = value
    return templates, stackmodel.Model({f"{k}.template.yaml": v for k, v in templates.items()})


def _storage(model):
    return next(s for s in model.stacks.values() if s.file == "storage.template.yaml")


@pytest.mark.parametrize("defaults, made, read", [
    ({}, False, None),
    ({"EmailSender": "example.com"}, True, "SesSmtpSecret"),
    ({"EmailSender": "example.com", "EmailSmtpSecretArn": USER_SECRET}, False, USER_SECRET),
])
def test_the_credentials_exist_only_with_a_sender_and_no_given_secret(default, defaults, made, read):
    _, model = _model(default, **defaults)
    storage = _storage(model)
    assert {logical: model.exists(storage, logical) for logical in CREDENTIALS} == dict.fromkeys(CREDENTIALS, made)
    assert model.exists(storage, "SmtpCredentialsRead") == (read is not None)
    told = model.value(storage, storage.template["Outputs"]["SmtpSecretArn"]["Value"])
    if read is None:
        assert told == "none"
    else:
        (resource,) = model.props(storage, "SmtpCredentialsRead")["PolicyDocument"]["Statement"][0]["Resource"]
        assert resource == told and (read in told if read == USER_SECRET else "SesSmtpSecret" in told)


def test_a_given_secret_needs_a_sender(default):
    template = default["main"]
    assert not [p for p in check_params(template, {"EmailSender": "example.com", "EmailSmtpSecretArn": USER_SECRET})
                if "Smtp" in p]
    (problem,) = [p for p in check_params(template, {"EmailSmtpSecretArn": USER_SECRET}) if "Smtp" in p]
    assert problem == ("SmtpSecretNeedsSender: EmailSmtpSecretArn needs EmailSender: give the sender, "
                       "or leave the secret empty.")
    for bad in ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:mine/smtp",  # no six characters
                "arn:aws:s3:::bucket", "mine/smtp-AbCdEf", USER_SECRET.replace("mine", "m" * 60)):
        (problem,) = [p for p in check_params(template, {"EmailSender": "example.com", "EmailSmtpSecretArn": bad})
                      if p.startswith("EmailSmtpSecretArn")]
        assert "at most 112 characters" in problem, bad


@pytest.mark.parametrize("sender, identities, sent_from", [
    ("example.com", ["example.com"], "gitlab@example.com"),
    ("gitlab@mail.example.com", ["gitlab@mail.example.com", "mail.example.com"], "gitlab@mail.example.com"),
])
def test_the_smtp_user_may_send_raw_email_from_the_sender_only(default, sender, identities, sent_from):
    from gitlab_cfn.verify import policy

    _, model = _model(default, EmailSender=sender)
    storage = _storage(model)
    assert model.props(storage, "SesSmtpUser")["Groups"] == [model.ref(storage, "SesSmtpGroup")]
    assert model.props(storage, "SesSmtpUser")["Path"] == "/gitlab-cfn/"
    (document,) = [p["PolicyDocument"] for p in model.props(storage, "SesSmtpGroup")["Policies"]]
    user = "arn:aws:iam::123456789012:user/gitlab-cfn/smtp"

    def may(action, identity, from_address):
        return policy.authorize(user, "123456789012", action, f"arn:aws:ses:us-east-1:123456789012:identity/{identity}",
                                {"ses:FromAddress": from_address}, [("group", document)], [])[0]

    for identity in identities:
        assert may("ses:SendRawEmail", identity, sent_from), identity
        # Whatever case SES reports the From: address in (IAM's StringEquals would not match).
        assert may("ses:SendRawEmail", identity, sent_from.upper()), identity
        assert not may("ses:SendRawEmail", identity, "someone@" + sent_from.split("@")[1])
        assert not may("ses:SendEmail", identity, sent_from)
    assert not may("ses:SendRawEmail", "other.example.org", sent_from)
    # Only ses:SendRawEmail, which SES SMTP needs.
    assert [s["Action"] for s in document["Statement"]] == [["ses:SendRawEmail"]]


def test_the_function_runs_the_repositorys_handler_inline(default):
    from gitlab_cfn.compile import email

    function = default["storage"]["Resources"]["SesSmtpFunction"]["Properties"]
    assert function["Code"] == {"ZipFile": email.FUNCTION_CODE.read_text()}
    assert (function["Handler"], function["Runtime"]) == ("index.handler", email.RUNTIME)
    assert "VpcConfig" not in function
    custom = default["storage"]["Resources"]["SesSmtpCredentials"]
    assert custom["Type"] == "Custom::SesSmtpCredentials"
    assert custom["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["SesSmtpFunction", "Arn"]}
    # Nothing secret goes in or out: the properties name the user and the secret only; no output reads the resource.
    assert set(custom["Properties"]) == {"ServiceToken", "ServiceTimeout", "UserName", "SecretArn", "Region", "Sender"}


def test_a_lost_answer_fails_the_resource_in_minutes_not_an_hour(default):
    """CloudFormation waits ServiceTimeout seconds (1 to 3600, default 3600) for the answer:
    a few minutes, longer than the function may run (its retries, then its answer)."""
    function = default["storage"]["Resources"]["SesSmtpFunction"]["Properties"]
    timeout = default["storage"]["Resources"]["SesSmtpCredentials"]["Properties"].get("ServiceTimeout")
    assert isinstance(timeout, int) and function["Timeout"] + 60 <= timeout <= 600, timeout


@pytest.mark.parametrize("variant_name", ["default", "cluster"])
def test_no_function_reserves_concurrency(variant_name):
    """A reservation fails the create where the account's unreserved concurrency would drop
    under Lambda's minimum (new accounts: a quota of 10), and the launch role may not make one."""
    from conftest import VARIANTS, templates_for
    from test_service_catalog import allows, granted, launch_statements

    built = templates_for(VARIANTS[variant_name])
    functions = [(tier, logical, r["Properties"]) for tier, t in built.items()
                 for logical, r in (t.get("Resources") or {}).items() if r["Type"] == "AWS::Lambda::Function"]
    assert functions
    assert [(tier, logical) for tier, logical, p in functions if "ReservedConcurrentExecutions" in p] == []
    assert not allows(granted(launch_statements(built)), "lambda:PutFunctionConcurrency")


def test_the_address_senders_domain_is_split_from_the_sender_and_an_at(default):
    """``Select(1, Split("@", "<sender>@"))``: the domain of an address; for a domain sender
    (no '@') an empty string, where the sender alone has no second part to select."""
    _, model = _model(default, EmailSender="example.com")
    storage = _storage(model)
    (document,) = [p["PolicyDocument"] for p in storage.template["Resources"]["SesSmtpGroup"]["Properties"]["Policies"]]
    domain_arn = document["Statement"][0]["Resource"]["Fn::If"][2][1]
    assert model.value(storage, domain_arn).endswith(":identity/")
    assert "SesSmtpCredentials" not in json.dumps(default["storage"].get("Outputs", {}))


def test_code_over_the_zipfile_limit_fails_the_build(monkeypatch, tmp_path):
    from gitlab_cfn.compile import email

    big = tmp_path / "ses_smtp_password.py"
    big.write_text("#" * (email.ZIPFILE_LIMIT + 1))
    monkeypatch.setattr(email, "FUNCTION_CODE", big)
    with pytest.raises(email.FunctionCodeError, match="an inline ZipFile holds 4096"):
        email.function_code()


# -- the function's own calls, decided by the access check (verify/function_access.py) -----------

def _access(templates):
    from gitlab_cfn.verify import access

    _, model = _model(templates, EmailSender="example.com")
    return access.check(model)


def test_every_call_of_the_function_is_allowed_to_its_role(default):
    result = _access(default)
    assert [f.message for f in result.findings] == []
    decided = {(d.action, d.allowed) for d in result.functions}
    assert decided == {(a, True) for a in (
        "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:DeleteAccessKey", "secretsmanager:PutSecretValue",
        "kms:GenerateDataKey", "logs:CreateLogStream", "logs:PutLogEvents")}
    users = {d.resource for d in result.functions if d.action.startswith("iam:")}
    assert users == {"arn:aws:iam::123456789012:user/gitlab-cfn/gitlab-StorageStack/SesSmtpUser"}


def _statement(templates, sid):
    role = templates["storage"]["Resources"]["SesSmtpFunctionRole"]["Properties"]
    return next(s for s in role["Policies"][0]["PolicyDocument"]["Statement"] if s["Sid"] == sid)


@pytest.mark.parametrize("change, needles", [
    (lambda t: _statement(t, "SmtpUserKeys")["Action"].remove("iam:DeleteAccessKey"),
     ("iam:DeleteAccessKey", "is denied")),
    (lambda t: _statement(t, "SmtpSecretValue").update(Resource=[{"Ref": "DataKey"}]),
     ("secretsmanager:PutSecretValue", "is denied")),
    (lambda t: _statement(t, "SmtpSecretKey")["Condition"]["StringEquals"].update(
        {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}), ("kms:GenerateDataKey", "is denied")),
    (lambda t: _statement(t, "OwnLogs").update(Resource=["arn:aws:logs:*:*:log-group:/other:*"]),
     ("logs:PutLogEvents", "is denied")),
    (lambda t: t["storage"]["Resources"]["SesSmtpFunction"]["Properties"]["Code"].update(ZipFile=(
        email_code() + "\n\ndef more(boto3):\n    s = boto3.client('secretsmanager')\n    s.get_secret_value(SecretId='x')\n")),
     ("secretsmanager.get_secret_value", "is not mapped to IAM actions")),
])
def test_a_function_grant_taken_away_or_an_unmapped_call_is_a_finding(default, change, needles):
    templates = copy.deepcopy(default)
    change(templates)
    findings = [f.message for f in _access(templates).findings]
    assert any(all(n in f for n in needles) for f in findings), findings


def email_code():
    from gitlab_cfn.compile import email

    return email.FUNCTION_CODE.read_text()


# -- the whole build on the stand-in, with a sender ------------------------------------------------

def test_a_deploy_with_a_sender_ends_with_the_derived_credentials_in_the_secret(local_aws, standin, tmp_path):
    """``gitlab-cfn deploy`` of the default build with EmailSender on the stand-in: the storage
    stack's function (the repository's code, run by the stand-in) made the SMTP user's key and
    wrote its SMTP credentials to the secret the servers are told of (the boot bundle parameter)."""
    from gitlab_cfn.compile import compiler, config
    from gitlab_cfn.compile.functions import ses_smtp_password as ses
    from test_deploy import _seed, deploy_cmd
    from test_standin_custom_resources import key_secret

    build = tmp_path / "build"
    compiler.write_build(config.BuildConfig(), build)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**_seed(local_aws), "EmailSender": "example.com"}))
    result = deploy_cmd("--endpoint-url", standin.endpoint, "--stack-name", "mail", "--region", "eu-west-1",
                        "--params", str(params), build=build)
    assert result.returncode == 0, result.stderr
    ssm, secrets, iam = (local_aws.client(s, "eu-west-1") for s in ("ssm", "secretsmanager", "iam"))
    location = json.loads(ssm.get_parameter(Name="/gitlab-cfn/mail/gitlab-app/boot-bundle")["Parameter"]["Value"])
    value = json.loads(secrets.get_secret_value(SecretId=location["smtp_secret_arn"])["SecretString"])
    (user,) = iam.list_users(PathPrefix="/gitlab-cfn/")["Users"]
    (key,) = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
    assert value["username"] == key["AccessKeyId"]
    assert value["password"] == ses.smtp_password(key_secret(standin, key["AccessKeyId"]), "eu-west-1")


# -- the Service Catalog launch role and the SMTP user (compile/launch_role.py) ---------------------

def test_the_launch_role_may_read_and_delete_what_the_user_handlers_look_for(default):
    """AWS::IAM::User's read and delete handlers call GetUserPolicy, GetLoginProfile (and remove
    what they find: DeleteUserPolicy, DetachUserPolicy, DeleteLoginProfile); the group's delete
    detaches managed policies. Denied, a stack's update or delete under the launch role fails
    (DELETE_FAILED). Granted on the product's path only; giving the user a policy or a password is not."""
    from test_service_catalog import allows, launch_statements

    read_delete = ("iam:GetUserPolicy", "iam:DeleteUserPolicy", "iam:DetachUserPolicy", "iam:GetLoginProfile",
                   "iam:DeleteLoginProfile", "iam:DetachGroupPolicy")
    for action in read_delete:
        scopes = [r["Fn::Sub"] for s in launch_statements(default) if allows(s["Action"], action) for r in s["Resource"]]
        assert scopes, action
        assert all(scope.startswith("arn:${AWS::Partition}:iam::${AWS::AccountId}:")
                   and "/gitlab-cfn/" in scope for scope in scopes), (action, scopes)
        assert "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/gitlab-cfn/*" in scopes, (action, scopes)
    actions = [a for s in launch_statements(default) for a in s["Action"]]
    for action in ("iam:PutUserPolicy", "iam:AttachUserPolicy", "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
                   "iam:AttachGroupPolicy", "iam:CreateAccessKey"):
        assert not allows(actions, action), action


# -- an update of a stack whose servers read the user's secret (operate/smtp_upgrade.py) ------------

def test_an_older_stack_with_a_sender_keeps_its_secret_on_update(local_aws, default):
    """Stacks built before EmailSmtpSecretArn read the user's gitlab-cfn/<stack>/ses-smtp-credentials.
    Updated as is they would switch to an IAM user the stack makes (which an SCP may deny): deploy
    passes that secret's ARN instead and says so, with the flag that switches."""
    from gitlab_cfn.operate import smtp_upgrade

    definitions = default["main"]["Parameters"]
    older = {"EmailSender": "example.com", "DomainName": "gitlab.example.com"}   # no EmailSmtpSecretArn
    secrets = local_aws.client("secretsmanager", "eu-west-1")
    arn = secrets.create_secret(Name="gitlab-cfn/old/ses-smtp-credentials",
                                SecretString='{"username": "u", "password": "p"}')["ARN"]
    carried, line = smtp_upgrade.keep_legacy_secret(local_aws, "eu-west-1", "old", older, definitions, {})
    assert carried == {"EmailSmtpSecretArn": arn}
    assert line == (f"e-mail: keeping the SMTP credentials the stack's servers read: EmailSmtpSecretArn={arn} "
                    "(the secret gitlab-cfn/old/ses-smtp-credentials); give --param EmailSmtpSecretArn= to let "
                    "the stack make its own instead (an IAM user and its access key)")
    assert not [p for p in check_params(default["main"], {"EmailSender": "example.com", **carried}) if "Smtp" in p]
    diff = smtp_upgrade.diff_line(local_aws, "eu-west-1", "old", older, definitions)
    assert diff.startswith(f"e-mail: gitlab-cfn deploy keeps the SMTP credentials the stack's servers read: "
                           f"EmailSmtpSecretArn={arn}")
    # Nothing to say: a secret given (even empty: the stack makes its own), e-mail turned off, a
    # stack that already has the parameter, a stack without a sender.
    for given in ({"EmailSmtpSecretArn": ""}, {"EmailSmtpSecretArn": USER_SECRET}, {"EmailSender": ""}):
        assert smtp_upgrade.keep_legacy_secret(local_aws, "eu-west-1", "old", older, definitions, given) == ({}, None)
    for previous in ({**older, "EmailSmtpSecretArn": ""}, {"EmailSender": ""}, {}):
        assert smtp_upgrade.keep_legacy_secret(local_aws, "eu-west-1", "old", previous, definitions, {}) == ({}, None)
    # The secret deleted since: the stack makes its own, and the plan says so.
    carried, line = smtp_upgrade.keep_legacy_secret(local_aws, "eu-west-1", "other", older, definitions, {})
    assert carried == {} and line.startswith(
        "e-mail: the stack's servers read the secret gitlab-cfn/other/ses-smtp-credentials, which no longer "
        "exists: the stack makes its own SES SMTP credentials (storage:SesSmtpUser")


def _older_build(build: Path, out: Path, legacy_arn: str) -> None:
    """``build`` as a build from before EmailSmtpSecretArn: the parent has no such parameter and
    the servers read the user's secret (the storage stack is given its ARN: it makes no credentials)."""
    import hashlib
    import shutil

    import yaml

    shutil.copytree(build, out)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["templates"]["main"]
    path = out / entry["path"]
    main = yaml.safe_load(path.read_text())
    del main["Parameters"]["EmailSmtpSecretArn"]
    main["Rules"] = {k: r for k, r in main.get("Rules", {}).items() if "EmailSmtpSecretArn" not in json.dumps(r)}
    for group in main["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]:
        group["Parameters"] = [p for p in group["Parameters"] if p != "EmailSmtpSecretArn"]
    main["Resources"]["StorageStack"]["Properties"]["Parameters"]["EmailSmtpSecretArn"] = legacy_arn
    path.write_text(yaml.safe_dump(main, sort_keys=False))
    entry["parameters"].remove("EmailSmtpSecretArn")
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_deploy_keeps_an_older_stacks_secret_and_says_so(local_aws, standin, tmp_path):
    """``gitlab-cfn deploy`` over a stack built before EmailSmtpSecretArn, whose servers read the
    user's gitlab-cfn/<stack>/ses-smtp-credentials: the plan says the secret is kept, the update
    passes its ARN, and the servers are told of it (the boot bundle parameter)."""
    from gitlab_cfn.compile import compiler, config
    from test_cli import EXE
    from test_deploy import ENV, _seed, deploy_cmd

    build = tmp_path / "build"
    compiler.write_build(config.BuildConfig(), build)
    arn = local_aws.client("secretsmanager", "eu-west-1").create_secret(
        Name="gitlab-cfn/mail/ses-smtp-credentials", SecretString='{"username": "u", "password": "p"}')["ARN"]
    _older_build(build, tmp_path / "older", arn)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**_seed(local_aws), "EmailSender": "example.com"}))
    common = ("--endpoint-url", standin.endpoint, "--stack-name", "mail", "--region", "eu-west-1",
              "--params", str(params), "--yes")
    first = deploy_cmd(*common, build=tmp_path / "older")
    assert first.returncode == 0, first.stderr
    # diff --stack-name says what deploy will do.
    diff = subprocess.run([EXE, "diff", "--stack-name", "mail", "--region", "eu-west-1", "--endpoint-url",
                           standin.endpoint, "--build", str(build)], capture_output=True, text=True, env=ENV, timeout=120)
    assert (f"e-mail: gitlab-cfn deploy keeps the SMTP credentials the stack's servers read: EmailSmtpSecretArn={arn}"
            in diff.stdout), diff.stdout + diff.stderr
    update = deploy_cmd(*common, build=build)
    assert update.returncode == 0, update.stderr
    assert f"e-mail: keeping the SMTP credentials the stack's servers read: EmailSmtpSecretArn={arn}" in update.stderr
    cfn, ssm = local_aws.client("cloudformation", "eu-west-1"), local_aws.client("ssm", "eu-west-1")
    stack = cfn.describe_stacks(StackName="mail")["Stacks"][0]
    assert {p["ParameterKey"]: p.get("ParameterValue") for p in stack["Parameters"]}["EmailSmtpSecretArn"] == arn
    location = json.loads(ssm.get_parameter(Name="/gitlab-cfn/mail/gitlab-app/boot-bundle")["Parameter"]["Value"])
    assert location["smtp_secret_arn"] == arn
    # No IAM user was made: the update does not depend on iam:CreateUser being allowed.
    assert local_aws.client("iam", "eu-west-1").list_users(PathPrefix="/gitlab-cfn/")["Users"] == []
