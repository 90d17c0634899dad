"""The stand-in patches of gitlab_cfn/standin/operations.py, each through the running server."""

import re
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from gitlab_cfn.compile.observability import RETENTION_DAYS
from test_standin import REGION, deploy, failed_events

OPERATIONS = Path(__file__).resolve().parents[1] / "templates_src/gitlab_cfn/standin/operations.py"
ACCOUNT = "123456789012"


def test_every_operations_patch_has_a_test():
    names = re.findall(r"^def (\w+)\(\) -> None:", OPERATIONS.read_text(), flags=re.M)
    tested = {n.removeprefix("test_patch_") for n in globals() if n.startswith("test_patch_")}
    assert names and set(names) == tested
    # The models, all three, by the one test that deploys them.
    assert set(re.findall(r'return "(AWS::Backup::\w+)"', OPERATIONS.read_text())) == {
        "AWS::Backup::BackupVault", "AWS::Backup::BackupPlan", "AWS::Backup::BackupSelection"}
    assert "test_backup_models" in globals()


def test_the_stand_in_knows_cloudwatch_retention_values():
    text = OPERATIONS.read_text()
    listed = re.search(r"RETENTION_DAYS = \(([^)]*)\)", text).group(1)
    assert tuple(int(v) for v in re.findall(r"\d+", listed)) == RETENTION_DAYS


def test_patch_log_group_retention_values(local_aws):
    logs = local_aws.client("logs", REGION)
    logs.create_log_group(logGroupName="/probe/retention")
    logs.put_retention_policy(logGroupName="/probe/retention", retentionInDays=400)
    with pytest.raises(ClientError, match="retentionInDays"):
        logs.put_retention_policy(logGroupName="/probe/retention", retentionInDays=45)
    cfn, stack = deploy(local_aws, {"Resources": {"Group": {"Type": "AWS::Logs::LogGroup", "Properties": {
        "LogGroupName": "/probe/bad-retention", "RetentionInDays": 45}}}}, name="retention")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    ((logical, reason),) = failed_events(cfn, stack["StackId"])
    assert logical == "Group" and "Member must satisfy enum value set" in reason


def _key(local_aws, statements):
    import json

    kms = local_aws.client("kms", REGION)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"}, *statements]}
    return kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]


def test_patch_log_group_key_usable_by_logs(local_aws):
    logs = local_aws.client("logs", REGION)
    logs_statement = {
        "Effect": "Allow", "Principal": {"Service": f"logs.{REGION}.amazonaws.com"},
        "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        "Resource": "*",
        "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                  f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/gitlab-cfn/probe/*"}}}
    good = _key(local_aws, [logs_statement])
    logs.create_log_group(logGroupName="/gitlab-cfn/probe/rails", kmsKeyId=good)
    # The key's condition names other groups: refused, as CloudWatch Logs refuses it.
    with pytest.raises(ClientError, match="not allowed to be used with Arn") as refused:
        logs.create_log_group(logGroupName="/gitlab-cfn/other/rails", kmsKeyId=good)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    # A key without a statement for CloudWatch Logs, and a key that does not exist.
    plain = _key(local_aws, [])
    with pytest.raises(ClientError, match="not allowed to be used with Arn"):
        logs.create_log_group(logGroupName="/gitlab-cfn/probe/plain", kmsKeyId=plain)
    missing = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(ClientError, match="does not exist or is not allowed"):
        logs.create_log_group(logGroupName="/gitlab-cfn/probe/missing", kmsKeyId=missing)
    # Through CloudFormation: the stack fails on the group and rolls back.
    cfn, stack = deploy(local_aws, {"Resources": {"Group": {"Type": "AWS::Logs::LogGroup", "Properties": {
        "LogGroupName": "/gitlab-cfn/probe/cfn", "RetentionInDays": 90, "KmsKeyId": plain}}}}, name="logkey")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    ((logical, reason),) = failed_events(cfn, stack["StackId"])
    assert logical == "Group" and "not allowed to be used with Arn" in reason


BACKUP_ROLE = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": ["backup.amazonaws.com"]},
                                            "Action": ["sts:AssumeRole"]}]}}}


def _backup_template(key, days=35, copy=None, role=True, plan="probe"):
    rule = {"RuleName": "Daily", "TargetBackupVault": {"Ref": "Vault"}, "ScheduleExpression": "cron(0 3 * * ? *)",
            "Lifecycle": {"DeleteAfterDays": days}}
    if copy is not None:
        rule["CopyActions"] = [{"DestinationBackupVaultArn": copy, "Lifecycle": {"DeleteAfterDays": days}}]
    resources = {
        "Vault": {"Type": "AWS::Backup::BackupVault", "Properties": {"BackupVaultName": "gitlab-cfn-probe",
                                                                       "EncryptionKeyArn": key}},
        "Plan": {"Type": "AWS::Backup::BackupPlan", "Properties": {"BackupPlan": {
            "BackupPlanName": plan, "BackupPlanRule": [rule]}}},
        "Selection": {"Type": "AWS::Backup::BackupSelection", "Properties": {
            "BackupPlanId": {"Ref": "Plan"}, "BackupSelection": {
                "SelectionName": "data",
                "IamRoleArn": {"Fn::GetAtt": ["Role", "Arn"]} if role else f"arn:aws:iam::{ACCOUNT}:role/nope",
                "Resources": [f"arn:aws:s3:::gl-probe"]}}},
    }
    if role:
        resources["Role"] = BACKUP_ROLE
    return {"Resources": resources, "Outputs": {"Vault": {"Value": {"Ref": "Vault"}}, "Plan": {"Value": {"Ref": "Plan"}}}}


def test_backup_models(local_aws):
    key = _key(local_aws, [])
    cfn, stack = deploy(local_aws, _backup_template(key), name="backup-good")
    assert stack["StackStatus"] == "CREATE_COMPLETE", failed_events(cfn, stack["StackId"])
    client = local_aws.client("backup", REGION)
    vault = client.describe_backup_vault(BackupVaultName="gitlab-cfn-probe")
    assert vault["EncryptionKeyArn"] == key
    plan_id = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["Plan"]
    assert client.get_backup_plan(BackupPlanId=plan_id)["BackupPlan"]["Rules"][0]["Lifecycle"] == {"DeleteAfterDays": 35}
    cfn.delete_stack(StackName=stack["StackId"])
    for template, name, reason in (
        (_backup_template(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"), "backup-nokey",
         "does not exist"),
        (_backup_template(key, days=0), "backup-days", "DeleteAfterDays must be at least 1"),
        (_backup_template(key, copy="arn:aws:s3:::not-a-vault"), "backup-copy", "Invalid DestinationBackupVaultArn"),
        (_backup_template(key, role=False, plan="no-role"), "backup-role", "no such role"),
    ):
        cfn, stack = deploy(local_aws, template, name=name)
        assert stack["StackStatus"] == "ROLLBACK_COMPLETE", name
        assert any(reason in r for _, r in failed_events(cfn, stack["StackId"])), (name, failed_events(cfn, stack["StackId"]))
