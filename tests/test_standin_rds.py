"""The stand-in modifies a DB instance in place on a stack update, with RDS's checks
(standin/rds.py); and the database tier's major-version upgrade goes through.

test_standin's ``test_every_patch_has_a_test`` finds the patch test here.
"""

from __future__ import annotations

import json

import pytest
from gitlab_cfn.compile import compiler, config
from test_standin import REGION, deploy, outputs


def _template(allow_major: bool) -> dict:
    return {
        "Parameters": {"Version": {"Type": "String"}, "Class": {"Type": "String"}},
        "Resources": {
            "Params": {"Type": "AWS::RDS::DBParameterGroup", "Properties": {
                "Description": "probe", "Family": {"Fn::Sub": "postgres${Version}"},
                "Parameters": {"rds.force_ssl": "1"}}},
            "Database": {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Delete", "Properties": {
                "Engine": "postgres", "EngineVersion": {"Ref": "Version"}, "DBInstanceClass": {"Ref": "Class"},
                "AllocatedStorage": "100", "MasterUsername": "gitlab", "MasterUserPassword": "not-a-real-password-1",
                "DBParameterGroupName": {"Ref": "Params"}, "AllowMajorVersionUpgrade": allow_major}}},
        "Outputs": {"Id": {"Value": {"Ref": "Database"}}},
    }


def _update(cfn, stack, template, **parameters):
    cfn.update_stack(StackName=stack["StackId"], TemplateBody=json.dumps(template),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    return cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]


def _reasons(cfn, stack):
    return [e.get("ResourceStatusReason") or "" for e in
            cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"]]


@pytest.mark.parametrize("allow", [True, False])
def test_patch_db_instance_modified_in_place(local_aws, allow):
    cfn, stack = deploy(local_aws, _template(allow), name=f"rds-{str(allow).lower()}",
                        parameters={"Version": "16", "Class": "db.m6i.large"})
    identifier = outputs(stack)["Id"]
    rds = local_aws.client("rds", REGION)
    # A new class is applied to the same instance (moto kept the old one).
    stack = _update(cfn, stack, _template(allow), Version="16", Class="db.m6i.xlarge")
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    db = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    assert db["DBInstanceClass"] == "db.m6i.xlarge"
    # A major version: only with the flag, as RDS's ModifyDBInstance.
    stack = _update(cfn, stack, _template(allow), Version="17", Class="db.m6i.xlarge")
    db = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    if allow:
        assert stack["StackStatus"] == "UPDATE_COMPLETE"
        assert db["EngineVersion"].split(".")[0] == "17"
    else:
        assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
        assert any("AllowMajorVersionUpgrade flag must be present" in r for r in _reasons(cfn, stack))
        assert db["EngineVersion"].split(".")[0] == "16"


def test_a_downgrade_is_refused(local_aws):
    cfn, stack = deploy(local_aws, _template(True), name="rds-down",
                        parameters={"Version": "17", "Class": "db.m6i.large"})
    stack = _update(cfn, stack, _template(True), Version="16", Class="db.m6i.large")
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert any("Cannot upgrade postgres from 17" in r for r in _reasons(cfn, stack))


def test_the_database_tier_allows_the_major_upgrade_its_parameter_offers():
    """DBEngineVersion offers 16 and 17: moving a stack from 16 to 17 (GitLab 19 needs 17)
    must be an update RDS accepts, so the instance allows major version upgrades."""
    data = compiler.compile_data(config.from_dict({}))
    database = data["database.template.yaml"]["Resources"]["Database"]["Properties"]
    assert database["AllowMajorVersionUpgrade"] is True
    assert database["AutoMinorVersionUpgrade"] is False
    assert data["database.template.yaml"]["Parameters"]["DBEngineVersion"]["AllowedValues"] == ["16", "17"]
