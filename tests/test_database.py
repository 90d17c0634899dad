import pytest
from conftest import props, templates_for
from gitlab_cfn.compile import catalog, config
from gitlab_cfn.errors import ConfigError


def db(t):
    return t["database"]["Resources"]["Database"]


def new_stack(value):
    """The value a new stack gets: the last branch of an Fn::If on RestoreDatabase (a restore
    from a snapshot leaves it out; tests/test_restore.py)."""
    if isinstance(value, dict) and "Fn::If" in value and value["Fn::If"][0] in ("RestoreDatabase",
                                                                              "RestoreDatabaseSecret"):
        return value["Fn::If"][2]
    return value


def test_multi_az_instance_encrypted_private(default):
    res = db(default)
    assert res["Type"] == "AWS::RDS::DBInstance"  # not Aurora, not a Multi-AZ DB cluster
    p = {k: new_stack(v) for k, v in res["Properties"].items()}
    assert p["Engine"] == "postgres"
    assert p["MultiAZ"] is True
    assert p["StorageEncrypted"] is True
    assert p["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert p["PubliclyAccessible"] is False
    assert p["DBName"] == "gitlabhq_production"
    assert p["MasterUsername"] == "gitlab"
    assert p["Port"] == "5432"


def test_password_comes_from_secrets_manager(default):
    p = props(default["database"], "Database")
    assert new_stack(p["MasterUserPassword"]) == {"Fn::Sub": [
        "{{resolve:secretsmanager:${Secret}:SecretString:password}}", {"Secret": {"Ref": "DatabaseSecret"}}]}
    secret = new_stack(props(default["database"], "DatabaseSecret")["GenerateSecretString"])
    assert secret["GenerateStringKey"] == "password"
    assert "MasterUserPassword" not in default["main"]["Parameters"]


def test_data_survives_updates_and_deletion(default):
    res = db(default)
    assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Snapshot"
    p = res["Properties"]
    assert p["DeletionProtection"] is True
    assert p["AutoMinorVersionUpgrade"] is False
    assert p["BackupRetentionPeriod"] == {"Ref": "DBBackupRetentionPeriod"}
    assert default["main"]["Parameters"]["DBBackupRetentionPeriod"]["MinValue"] >= 7


def test_io1_storage_follows_the_guide(default):
    p = props(default["database"], "Database")
    assert p["StorageType"] == "io1"
    assert p["Iops"] == {"Ref": "DBIops"}
    params = default["main"]["Parameters"]
    assert (params["DBAllocatedStorage"]["Default"], params["DBIops"]["Default"]) == (100, 1000)


def test_gp3_storage_has_no_iops_parameter():
    t = templates_for({"database": {"storage_type": "gp3"}})
    p = props(t["database"], "Database")
    assert p["StorageType"] == "gp3"
    assert "Iops" not in p
    assert "DBIops" not in t["main"]["Parameters"]


def test_subnet_group_uses_the_private_subnets(default):
    assert props(default["database"], "DatabaseSubnetGroup")["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    assert default["main"]["Resources"]["DatabaseStack"]["Properties"]["Parameters"]["PrivateSubnetIds"] == {
        "Fn::GetAtt": ["NetworkStack", "Outputs.PrivateSubnetIds"]}


def test_tls_is_required(default):
    group = props(default["database"], "DatabaseParameterGroup")
    assert group["Parameters"] == {"rds.force_ssl": "1"}
    assert group["Family"] == {"Fn::Sub": "postgres${DBEngineVersion}"}


def test_no_burstable_class_in_the_parameter_or_the_config(default):
    allowed = default["main"]["Parameters"]["DBInstanceClass"]["AllowedValues"]
    assert allowed and not [c for c in allowed if c.startswith("db.t")]
    with pytest.raises(ConfigError, match=r"^database\.instance_class: burstable types are not allowed .* \(got 'db\.t3\.large'\)$"):
        config.from_dict({"database": {"instance_class": "db.t3.large"}})


def test_engine_versions_are_ones_gitlab_supports(default):
    param = default["main"]["Parameters"]["DBEngineVersion"]
    assert param["AllowedValues"] == list(catalog.DB_ENGINE_VERSIONS) == ["16", "17"]


def test_application_role_may_read_the_secret(default):
    grant = props(default["database"], "DatabaseSecretRead")
    assert grant["Roles"] == [{"Ref": "InstanceRoleName"}]
    (statement,) = grant["PolicyDocument"]["Statement"]
    assert statement["Resource"] == [{"Ref": "DatabaseSecret"}]
    assert statement["Action"] == ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
