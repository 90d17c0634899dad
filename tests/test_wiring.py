"""The contract between the parent and its children, for every build variant."""

import re

import pytest
from conftest import resources, templates_for
from gitlab_cfn.compile import catalog, config
from gitlab_cfn.compile.compiler import build_tiers
from gitlab_cfn.compile.constraints import violations
from gitlab_cfn.compile.naming import stack_id
from gitlab_cfn.compile.tier import Tier
from gitlab_cfn.compile.wiring import WiringError, build_parent

AWS_TYPES = re.compile(r"^(List<)?AWS::")


def stacks(main):
    return resources(main, "AWS::CloudFormation::Stack")


def test_every_child_parameter_is_supplied_and_nothing_else(variant):
    _, _, t = variant
    for logical, stack in stacks(t["main"]).items():
        tier = next(n for n in t if n != "main" and stack_id(n) == logical)
        assert set(stack["Properties"]["Parameters"]) == set(t[tier].get("Parameters", {})), tier


def test_every_output_the_parent_reads_exists_in_that_child(variant):
    _, _, t = variant
    by_stack = {stack_id(n): n for n in t if n != "main"}
    reads = []

    def walk(node):
        if isinstance(node, dict):
            if "Fn::GetAtt" in node:
                logical, attr = node["Fn::GetAtt"]
                reads.append((logical, attr))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(t["main"])
    assert reads
    for logical, attr in reads:
        assert attr.startswith("Outputs.")
        assert attr.removeprefix("Outputs.") in t[by_stack[logical]]["Outputs"], (logical, attr)


def test_parent_parameters_reach_children_unchanged(default):
    main = default["main"]
    db = stacks(main)["DatabaseStack"]["Properties"]["Parameters"]
    assert db["DBInstanceClass"] == {"Ref": "DBInstanceClass"}
    assert db["ParentStackName"] == {"Ref": "AWS::StackName"}
    # A list parameter travels as a comma-joined string.
    net = stacks(main)["NetworkStack"]["Properties"]["Parameters"]
    assert net["AvailabilityZones"] == {"Fn::Join": [",", {"Ref": "AvailabilityZones"}]}


def test_template_urls_are_built_like_the_quick_starts(default):
    for logical, stack in stacks(default["main"]).items():
        url = stack["Properties"]["TemplateURL"]["Fn::Sub"]
        assert url.startswith("https://${TemplateBucketName}.s3.${TemplateBucketRegion}.${AWS::URLSuffix}/"
                              "${TemplateKeyPrefix}templates/")
        assert url.endswith(".template.yaml")


def test_every_parent_parameter_is_typed_or_constrained_labelled_and_grouped(variant):
    _, _, t = variant
    main = t["main"]
    interface = main["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for g in interface["ParameterGroups"] for p in g["Parameters"]]
    assert sorted(grouped) == sorted(main["Parameters"])
    for name, definition in main["Parameters"].items():
        assert interface["ParameterLabels"][name]["default"], name
        assert definition["Description"], name
        constrained = AWS_TYPES.match(definition["Type"]) or {"AllowedPattern", "AllowedValues"} & set(definition) \
            or {"MinValue", "MaxValue"} <= set(definition)
        assert constrained, f"{name} has neither an AWS type nor a constraint"
        if not AWS_TYPES.match(definition["Type"]):
            assert definition.get("ConstraintDescription"), name


def test_every_default_satisfies_its_own_constraints(variant):
    _, _, t = variant
    for name, definition in t["main"]["Parameters"].items():
        if "Default" in definition:
            assert violations(name, definition, definition["Default"]) == [], name


def test_constraint_checker_rejects_bad_values(default):
    params = default["main"]["Parameters"]
    assert violations("VpcCidr", params["VpcCidr"], "10.0.0.0/33")
    assert violations("DBInstanceClass", params["DBInstanceClass"], "db.t3.medium")
    assert violations("DBAllocatedStorage", params["DBAllocatedStorage"], "99")
    assert violations("DomainName", params["DomainName"], "GitLab.Example.com")
    assert violations("CertificateArn", params["CertificateArn"], "arn:aws:iam::123456789012:server-certificate/x")
    assert violations("HostedZoneId", params["HostedZoneId"], "") == []


def test_rules_reject_contradictions(default):
    rules = default["main"]["Rules"]
    bastion = rules["BastionNotOpenToTheWorld"]["Assertions"][0]["Assert"]
    assert bastion == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RemoteAccessCIDR"}, "0.0.0.0/0"]}]}
    pairs = rules["SubnetCidrsDistinct"]["Assertions"]
    assert len(pairs) == 6  # 4 subnets, every pair
    three = templates_for({"az_count": 3})["main"]["Rules"]
    assert len(three["SubnetCidrsDistinct"]["Assertions"]) == 15


def test_public_outputs_reach_the_parent(default):
    outputs = default["main"]["Outputs"]
    for name in ("GitLabUrl", "LoadBalancerDNSName", "BastionAPublicIp", "BastionBPublicIp",
                 "DatabaseEndpoint", "RedisEndpoint", "DatabaseSecretArn", "RedisAuthSecretArn",
                 "GitalyTokenSecretArn", "BackupsBucketName", "ArtifactsBucketName"):
        assert name in outputs, name


def test_no_output_carries_a_secret_value(variant):
    _, _, t = variant
    for tier, template in t.items():
        for name, output in template.get("Outputs", {}).items():
            assert "resolve:secretsmanager" not in str(output["Value"]), (tier, name)


# -- the gate fails on broken wiring ---------------------------------------------------------

def _tiers():
    cfg = config.BuildConfig()
    return cfg, build_tiers(cfg), catalog.parameters(cfg)


def test_an_unfed_child_parameter_is_a_build_error():
    cfg, tiers, specs = _tiers()
    tiers[-1].input("NoTierMakesThis")
    with pytest.raises(WiringError, match="dns: parameter NoTierMakesThis has no source"):
        build_parent(cfg, tiers, specs)


def test_an_output_produced_twice_is_a_build_error():
    cfg, tiers, specs = _tiers()
    tiers[-1].output("VpcId", "x", "duplicate")
    with pytest.raises(WiringError, match="output VpcId is produced by both network and dns"):
        build_parent(cfg, tiers, specs)


def test_reading_from_a_conditional_stack_is_a_build_error():
    cfg, tiers, specs = _tiers()
    extra = Tier(name="extra", cfg=cfg, specs=specs)
    extra.input("DnsRecordName")
    with pytest.raises(WiringError, match="extra: reads DnsRecordName from dns, which may not exist"):
        build_parent(cfg, tiers + [extra], specs)


def test_a_parameter_outside_the_catalog_cannot_be_declared():
    cfg, _, specs = _tiers()
    with pytest.raises(KeyError, match="not in the catalog"):
        Tier(name="x", cfg=cfg, specs=specs).param("MasterUserPassword")


def test_children_are_told_which_parameters_change_for_other_reasons(default):
    """What a nested template alone cannot see, for lint rule E9010: which of its parameters
    are SSM-typed in the parent or passed to other stacks too."""
    shared = {tier: (t.get("Metadata") or {}).get("gitlab-cfn", {}).get("shared-parameters", {})
              for tier, t in default.items() if tier != "main"}
    assert shared["app"]["GitLabAmiId"] == ("SSM-typed: AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>")
    assert shared["app"]["KeyPairName"] == "also passed to bastion"
    assert "GitalyAmiId" not in shared["gitaly"] and "GitalyInstanceType" not in shared["gitaly"]
    assert shared["gitaly"]["DomainName"].startswith("also passed to ")
    for tier, names in shared.items():
        for name in names:
            assert name in default[tier]["Parameters"], (tier, name)
