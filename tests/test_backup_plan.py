"""The backup tier: an AWS Backup plan for the database, the Gitaly volume and the buckets."""

from conftest import props
from gitlab_cfn.compile.tiers.storage import BUCKETS
from gitlab_cfn.operate.deploy import check_params


def test_the_plan_backs_up_the_database_the_gitaly_volume_and_every_bucket(default):
    selection = props(default["backup"], "BackupSelection")["BackupSelection"]
    resources = selection["Resources"]
    assert resources[0]["Fn::Sub"] == "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:${DatabaseInstanceId}"
    assert resources[1]["Fn::Sub"] == "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:volume/${GitalyDataVolumeId}"
    # The buckets, unless they are an old stack's in another region (restore --from-region):
    # a plan protects resources of its own region only.
    buckets = [r["Fn::If"] for r in resources[2:]]
    assert {(cond, tuple(no.items())) for cond, _, no in buckets} == {("BucketsInThisRegion", (("Ref", "AWS::NoValue"),))}
    assert sorted(arn["Fn::Sub"] for _, arn, _ in buckets) == sorted(
        f"arn:${{AWS::Partition}}:s3:::${{{b}BucketName}}" for b in BUCKETS)
    assert default["backup"]["Conditions"]["BucketsInThisRegion"] == {"Fn::Equals": [{"Ref": "RestoreBucketsRegion"}, ""]}
    assert selection["IamRoleArn"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}
    main = default["main"]["Resources"]["BackupStack"]["Properties"]["Parameters"]
    assert main["GitalyDataVolumeId"] == {"Fn::GetAtt": ["GitalyStack", "Outputs.GitalyDataVolumeId"]}
    assert default["gitaly"]["Outputs"]["GitalyDataVolumeId"]["Value"] == {"Ref": "GitalyDataVolume"}
    assert main["DatabaseInstanceId"] == {"Fn::GetAtt": ["DatabaseStack", "Outputs.DatabaseInstanceId"]}
    # Every bucket the stack has is named (the access-log bucket is not GitLab data).
    assert {b.removesuffix("BucketName") for b in main if b.endswith("BucketName")} == set(BUCKETS)


def test_a_kept_encrypted_vault_daily_rule_retention_and_optional_copy(default):
    vault = default["backup"]["Resources"]["BackupVault"]
    assert vault["DeletionPolicy"] == vault["UpdateReplacePolicy"] == "Retain"
    assert vault["Properties"]["EncryptionKeyArn"] == {"Ref": "KmsKeyArn"}
    (rule,) = props(default["backup"], "BackupPlan")["BackupPlan"]["BackupPlanRule"]
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)" and rule["TargetBackupVault"] == {"Ref": "BackupVault"}
    assert rule["Lifecycle"] == {"DeleteAfterDays": {"Ref": "BackupRetentionDays"}}
    assert rule["CopyActions"] == {"Fn::If": ["CopyToAnotherVault", [{
        "DestinationBackupVaultArn": {"Ref": "BackupCopyVaultArn"},
        "Lifecycle": {"DeleteAfterDays": {"Ref": "BackupRetentionDays"}}}], {"Ref": "AWS::NoValue"}]}
    role = props(default["backup"], "BackupRole")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["backup.amazonaws.com"]}
    assert [a["Fn::Sub"].split("policy/", 1)[1] for a in role["ManagedPolicyArns"]] == [
        "service-role/AWSBackupServiceRolePolicyForBackup", "service-role/AWSBackupServiceRolePolicyForRestores",
        "AWSBackupServiceRolePolicyForS3Backup", "AWSBackupServiceRolePolicyForS3Restore"]


def test_bad_backup_parameters_are_refused_before_anything_is_sent(default):
    template = default["main"]
    ok = {"BackupRetentionDays": "35", "BackupCopyVaultArn": "arn:aws:backup:eu-central-1:123456789012:backup-vault:dr"}
    assert not [p for p in check_params(template, ok) if p.startswith("Backup")]
    for name, value, says in (("BackupRetentionDays", "0", "at least 1"),
                              ("BackupCopyVaultArn", "arn:aws:s3:::my-bucket", "backup vault ARN"),
                              ("BackupCopyVaultArn", "dr-vault", "backup vault ARN")):
        (problem,) = [p for p in check_params(template, {name: value}) if p.startswith(name)]
        assert says in problem, problem


def test_the_vault_name_fits_aws_backup_limit_for_any_stack(default):
    # 2 to 50 characters; a long parent stack name must not matter (the stand-in refused
    # gitlab-cfn-<stack name>-<suffix> for a Service Catalog stack's name).
    name = props(default["backup"], "BackupVault")["BackupVaultName"]
    assert name == {"Fn::Join": ["-", ["gitlab-cfn", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]]}
    assert len("gitlab-cfn-" + "0a1b2c3d-1111-2222-3333-444455556666") <= 50


def test_the_plan_backs_up_every_gitaly_cluster_node_and_praefect_s_own_database():
    from conftest import templates_for

    t = templates_for({"size": "10k", "gitaly": {"keep_single_server": True}, "praefect": {"database": "own"}})
    subs = [r["Fn::Sub"] for r in props(t["backup"], "BackupSelection")["BackupSelection"]["Resources"] if "Fn::Sub" in r]
    volumes = [s.rsplit("/", 1)[1] for s in subs if ":volume/" in s]
    assert volumes == ["${GitalyDataVolumeId}", "${Gitaly1DataVolumeId}", "${Gitaly2DataVolumeId}",
                       "${Gitaly3DataVolumeId}"]
    assert [s.rsplit(":", 1)[1] for s in subs if ":db:" in s] == ["${DatabaseInstanceId}", "${PraefectDatabaseInstanceId}"]
    main = t["main"]["Resources"]["BackupStack"]["Properties"]["Parameters"]
    for n in (1, 2, 3):
        assert main[f"Gitaly{n}DataVolumeId"] == {"Fn::GetAtt": ["GitalyStack", f"Outputs.Gitaly{n}DataVolumeId"]}
        assert t["gitaly"]["Outputs"][f"Gitaly{n}DataVolumeId"]["Value"] == {"Ref": f"Gitaly{n}DataVolume"}
    assert main["PraefectDatabaseInstanceId"] == {"Fn::GetAtt": ["DatabaseStack", "Outputs.PraefectDatabaseInstanceId"]}
    # Without the kept server its volume is gone, and so is it from the selection.
    alone = templates_for({"size": "10k"})
    subs = [r["Fn::Sub"] for r in props(alone["backup"], "BackupSelection")["BackupSelection"]["Resources"] if "Fn::Sub" in r]
    assert not any("${GitalyDataVolumeId}" in s for s in subs)
