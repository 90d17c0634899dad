"""The stand-in's custom resources and IAM groups (gitlab_cfn/standin/custom_resources.py),
one test per patch: the SES SMTP credentials function of the repository, run in-process
against the stand-in's IAM and Secrets Manager; test_standin's ``test_every_patch_has_a_test``
finds these tests here."""

from __future__ import annotations

import json
import time
import urllib.request

from gitlab_cfn.compile import email
from gitlab_cfn.compile.functions import ses_smtp_password as ses
from test_standin import REGION, deploy, failed_events


def credentials_template(secret_arn=None, token=None, code=None, service_timeout=email.SERVICE_TIMEOUT) -> dict:
    """The storage tier's credentials, reduced to what they need: the group and user, the
    secret, the function (the repository's code, inline) and the custom resource."""
    role = {"Type": "AWS::IAM::Role", "Properties": {"Path": "/gitlab-cfn/", "AssumeRolePolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}}}
    return {"Resources": {
        "Group": {"Type": "AWS::IAM::Group", "Properties": {"Path": "/gitlab-cfn/", "Policies": [{
            "PolicyName": "send", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"}]}}]}},
        "User": {"Type": "AWS::IAM::User", "Properties": {"Path": "/gitlab-cfn/", "Groups": [{"Ref": "Group"}]}},
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {"Description": "smtp"}},
        "Role": role,
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "Runtime": email.RUNTIME, "Handler": "index.handler", "Code": {"ZipFile": code or email.function_code()},
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Timeout": 60}},
        "Credentials": {"Type": "Custom::SesSmtpCredentials", "Properties": {
            "ServiceToken": token or {"Fn::GetAtt": ["Function", "Arn"]}, "ServiceTimeout": service_timeout,
            "UserName": {"Ref": "User"},
            "SecretArn": secret_arn or {"Ref": "Secret"}, "Region": {"Ref": "AWS::Region"},
            "Sender": "example.com"}}},
        "Outputs": {"User": {"Value": {"Ref": "User"}}, "Secret": {"Value": {"Ref": "Secret"}},
                    "Id": {"Value": {"Ref": "Credentials"}}}}


def key_secret(standin, key_id: str) -> str:
    """The secret of an access key, from the stand-in's model data (AWS shows it only once)."""
    with urllib.request.urlopen(f"{standin.endpoint}/moto-api/data.json", timeout=30) as response:
        data = json.loads(response.read())
    (secret,) = [k["secret_access_key"] for k in data["iam"]["AccessKey"] if k.get("access_key_id") == key_id]
    return secret


def test_patch_custom_resources_run_their_function(local_aws, standin):
    cfn, stack = deploy(local_aws, credentials_template())
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    iam, secrets = local_aws.client("iam", REGION), local_aws.client("secretsmanager", REGION)
    (key,) = iam.list_access_keys(UserName=out["User"])["AccessKeyMetadata"]
    value = json.loads(secrets.get_secret_value(SecretId=out["Secret"])["SecretString"])
    assert value["username"] == key["AccessKeyId"]
    # The password is AWS's derivation of the key's secret, which only the function and IAM saw
    # (the stand-in's own model data shows it to the test); it is not in the stack's events or outputs.
    assert value["password"] == ses.smtp_password(key_secret(standin, key["AccessKeyId"]), REGION)
    assert out["Id"] == f"ses-smtp-{out['User']}"
    seen = json.dumps(cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"], default=str) \
        + json.dumps(cfn.describe_stacks(StackName=stack["StackId"])["Stacks"], default=str)
    assert value["password"] not in seen

    # Deleting the stack sends Delete: the key goes, then the user and the group.
    cfn.delete_stack(StackName=stack["StackId"])
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    assert not [u for u in iam.list_users()["Users"] if u["UserName"] == out["User"]]
    assert not iam.list_groups()["Groups"]


def test_an_update_of_the_sender_rotates_the_key(local_aws, standin):
    cfn, stack = deploy(local_aws, credentials_template())
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    iam, secrets = local_aws.client("iam", REGION), local_aws.client("secretsmanager", REGION)
    (old,) = iam.list_access_keys(UserName=out["User"])["AccessKeyMetadata"]
    template = credentials_template()
    template["Resources"]["Credentials"]["Properties"]["Sender"] = "mail.example.com"
    cfn.update_stack(StackName=stack["StackId"], TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"])
    updated = cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]
    assert updated["StackStatus"] == "UPDATE_COMPLETE", updated.get("StackStatusReason")
    (new,) = iam.list_access_keys(UserName=out["User"])["AccessKeyMetadata"]
    assert new["AccessKeyId"] != old["AccessKeyId"]
    value = json.loads(secrets.get_secret_value(SecretId=out["Secret"])["SecretString"])
    assert value["username"] == new["AccessKeyId"]
    assert value["password"] == ses.smtp_password(key_secret(standin, new["AccessKeyId"]), REGION)


def test_a_failed_answer_fails_the_create_and_the_stack_rolls_back(local_aws):
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nowhere-AbCdEf"
    cfn, stack = deploy(local_aws, credentials_template(secret_arn=missing))
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    ((logical, reason),) = failed_events(cfn, stack["StackId"])
    assert logical == "Credentials" and reason.startswith("ResourceNotFoundException"), reason
    # The function deleted the key it made; the user went with the rollback.
    assert not local_aws.client("iam", REGION).list_users()["Users"]


def test_a_service_token_that_is_not_a_function_of_the_stack_fails(local_aws):
    token = f"arn:aws:lambda:{REGION}:123456789012:function:elsewhere"
    cfn, stack = deploy(local_aws, credentials_template(token=token))
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert failed_events(cfn, stack["StackId"]) == [
        ("Credentials", f"ServiceToken '{token}' is not a Lambda function of this stack (the stand-in runs those only)")]


SILENT = "def handler(event, context):\n    return None\n"   # never answers CloudFormation


def test_service_timeout_is_how_long_the_answer_is_waited_for(local_aws):
    """A function that never answers fails the resource after ServiceTimeout seconds
    (CloudFormation: 1 to 3600, default an hour); a value outside that range fails the resource."""
    started = time.monotonic()
    cfn, stack = deploy(local_aws, credentials_template(code=SILENT, service_timeout=2), name="silent")
    waited = time.monotonic() - started
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert failed_events(cfn, stack["StackId"]) == [("Credentials", (
        "the function did not answer CloudFormation in 2 s (ServiceTimeout; no PUT to the ResponseURL)"))]
    assert 2 <= waited < 30, waited
    for n, bad in enumerate((0, 3601, "five")):
        cfn, stack = deploy(local_aws, credentials_template(service_timeout=bad), name=f"timeout{n}")
        assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
        assert failed_events(cfn, stack["StackId"]) == [
            ("Credentials", f"ServiceTimeout {bad!r}: must be an integer from 1 to 3600")], bad


def test_patch_iam_user_groups(local_aws):
    template = credentials_template()
    for name in ("Secret", "Role", "Function", "Credentials"):
        del template["Resources"][name]
    template["Outputs"] = {"User": {"Value": {"Ref": "User"}}, "Group": {"Value": {"Ref": "Group"}},
                           "GroupArn": {"Value": {"Fn::GetAtt": ["Group", "Arn"]}}}
    cfn, stack = deploy(local_aws, template)
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    iam = local_aws.client("iam", REGION)
    group = iam.get_group(GroupName=out["Group"])
    assert group["Group"]["Path"] == "/gitlab-cfn/" and out["GroupArn"] == group["Group"]["Arn"]
    assert [u["UserName"] for u in group["Users"]] == [out["User"]]
    assert iam.list_group_policies(GroupName=out["Group"])["PolicyNames"] == ["send"]
    assert iam.get_user(UserName=out["User"])["User"]["Path"] == "/gitlab-cfn/"
    # A user of a group that does not exist fails, as IAM refuses it.
    bad = credentials_template()
    bad["Resources"] = {"User": {"Type": "AWS::IAM::User", "Properties": {"Groups": ["no-such-group"]}}}
    bad["Outputs"] = {}
    cfn, stack = deploy(local_aws, bad, name="bad")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert [e[0] for e in failed_events(cfn, stack["StackId"])] == ["User"]


def test_patch_model_data_of_every_resource(local_aws, standin):
    # A DB instance's write-only properties (moto raises NotImplementedError) no longer break the page.
    rds = local_aws.client("rds", REGION)
    rds.create_db_instance(DBInstanceIdentifier="model-data-db", DBInstanceClass="db.m6i.large", Engine="postgres",
                           MasterUsername="gitlab", MasterUserPassword="secret-password-1", AllocatedStorage=20)
    iam = local_aws.client("iam", REGION)
    iam.create_user(UserName="u")
    key = iam.create_access_key(UserName="u")["AccessKey"]
    assert key_secret(standin, key["AccessKeyId"]) == key["SecretAccessKey"]
    with urllib.request.urlopen(f"{standin.endpoint}/moto-api/data.json", timeout=30) as response:
        found = json.loads(response.read())["rds"]["DBInstance"]
    ours = [d for d in found if d.get("db_instance_identifier") == "model-data-db"]
    assert ours and not [d for d in ours if "master_user_password" in d]


def test_patch_lambda_reserved_concurrency_within_the_account_quota(local_aws):
    """A new account (concurrency quota 10, all of it kept unreserved) refuses any reservation,
    in a template and through PutFunctionConcurrency, with Lambda's own message."""
    message = ("Specified ReservedConcurrentExecutions for function decreases account's "
               "UnreservedConcurrentExecution below its minimum value of [10].")
    template = credentials_template()
    template["Resources"]["Function"]["Properties"]["ReservedConcurrentExecutions"] = 1
    cfn, stack = deploy(local_aws, template)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert failed_events(cfn, stack["StackId"]) == [("Function", message)]
    # Without it the same stack deploys, and its function still takes no reservation.
    cfn, stack = deploy(local_aws, credentials_template(), name="unreserved")
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    (function,) = local_aws.client("lambda", REGION).list_functions()["Functions"]
    import botocore.exceptions
    try:
        local_aws.client("lambda", REGION).put_function_concurrency(
            FunctionName=function["FunctionName"], ReservedConcurrentExecutions=1)
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidParameterValueException"
        assert exc.response["Error"]["Message"] == message
    else:
        raise AssertionError("PutFunctionConcurrency reserved executions the account does not have")
