"""gitlab-cfn estimate: prices read from the snapshot (never per size), the guide's bill of
materials, the deploy-time model on small hand-built graphs, and bad input."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from gitlab_cfn.cli import main
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.report import deploytime, estimate, guide, prices, stack

SNAPSHOT = prices.load_snapshot()
HOURS = SNAPSHOT["hours_per_month"]


def ec2(itype: str) -> float:
    return SNAPSHOT["regions"]["us-east-1"]["ec2_hour"][itype]["price"]


def build_tree(cfg: dict | None = None) -> stack.Stack:
    return stack.tree(compiler.compile_data(config.from_dict(cfg or {})))


def cost(root: stack.Stack, snapshot: dict | None = None, **assume) -> estimate.Estimate:
    return estimate.estimate(root, prices.Prices("us-east-1", snapshot), estimate.load_assumptions(assume))


def one(resources: dict, parameters: dict | None = None, **extra) -> stack.Stack:
    """A hand-built single template as a stack tree."""
    body = {"Resources": resources, "Parameters": parameters or {}, **extra}
    return stack.tree({"main.template.yaml": body})


# -- prices come from the snapshot ----------------------------------------------------------------

def test_a_changed_instance_type_changes_the_total_by_that_types_price_difference():
    base = cost(build_tree())
    bigger = cost(build_tree({"app": {"instance_type": "c5.2xlarge"}}))
    step = (ec2("c5.2xlarge") - ec2("c5.xlarge")) * HOURS
    assert bigger.total - base.total == pytest.approx(step * 2)        # min_size 2
    assert bigger.total_max - base.total_max == pytest.approx(step * 4)  # max_size 4
    assert bigger.tiers()["gitaly"] == base.tiers()["gitaly"]


def test_the_figures_are_read_from_the_snapshot_not_written_in_the_code():
    edited = copy.deepcopy(SNAPSHOT)
    edited["regions"]["us-east-1"]["ec2_hour"]["c5.xlarge"]["price"] = 1.0
    edited["regions"]["us-east-1"]["nat_hour"]["price"] = 0.1
    base, changed = cost(build_tree()), cost(build_tree(), edited)
    servers = 2 + 1   # two application servers at the minimum, the Gitaly server
    nat = 2           # one NAT gateway per AZ
    expected = (1.0 - ec2("c5.xlarge")) * HOURS * servers + (0.1 - 0.045) * HOURS * nat
    assert changed.total - base.total == pytest.approx(expected)


def test_each_resource_type_on_a_small_template_costs_what_the_snapshot_says():
    root = one({
        "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}},
        "Ip": {"Type": "AWS::EC2::EIP"},
        "Db": {"Type": "AWS::RDS::DBInstance", "Properties": {
            "Engine": "postgres", "DBInstanceClass": {"Ref": "DbClass"}, "MultiAZ": True,
            "StorageType": "io1", "AllocatedStorage": 200, "Iops": 2000}},
        "Redis": {"Type": "AWS::ElastiCache::ReplicationGroup", "Properties": {
            "CacheNodeType": {"Fn::FindInMap": ["Sizes", "cache", "node"]}, "NumCacheClusters": 3}},
        "Data": {"Type": "AWS::EC2::Volume", "Properties": {"Size": 500, "VolumeType": "gp3", "Iops": 4000}},
        "Vpc": {"Type": "AWS::EC2::VPC"},
    }, {"DbClass": {"Type": "String", "Default": "db.r6i.xlarge"}},
        Mappings={"Sizes": {"cache": {"node": "cache.r6g.large"}}})
    table = SNAPSHOT["regions"]["us-east-1"]
    got = {(line.resource, line.unit): line.monthly for line in cost(root, nat_gb_per_gateway=10).lines}
    assert got[("Nat", "h")] == pytest.approx(0.045 * HOURS)
    assert got[("Nat", "GB")] == pytest.approx(0.045 * 10)
    assert got[("Ip", "h")] == pytest.approx(0.005 * HOURS)
    assert got[("Db", "h")] == pytest.approx(table["rds_hour"]["db.r6i.xlarge"]["price"] * 2 * HOURS)
    assert got[("Db", "GiB-mo")] == pytest.approx(0.125 * 2 * 200)
    assert got[("Db", "IOPS-mo")] == pytest.approx(0.10 * 2 * 2000)
    assert got[("Redis", "h")] == pytest.approx(table["elasticache_hour"]["cache.r6g.large"]["price"] * 3 * HOURS)
    assert got[("Data", "GiB-mo")] == pytest.approx(0.08 * 500)
    assert got[("Data", "IOPS-mo")] == pytest.approx(0.005 * 1000)   # above the 3,000 included
    assert not any(key[0] == "Vpc" for key in got)


def test_a_type_without_a_price_rule_is_listed_not_counted_as_free():
    root = one({"Fs": {"Type": "AWS::EFS::FileSystem"}, "Vpc": {"Type": "AWS::EC2::VPC"}})
    assert cost(root).not_priced == ["main/Fs (AWS::EFS::FileSystem)"]


def test_conditional_nested_stacks_that_the_defaults_leave_out_cost_nothing():
    root = build_tree()
    assert "dns" not in {s.name for s in root.walk()}
    assert "dns" in {s.name for s in root.walk(conditional=True)}


def test_every_template_default_of_every_variant_has_a_price(variant):
    name, cfg, _ = variant
    result = cost(build_tree(cfg))
    assert result.total > 0 and not result.not_priced, name


# -- GitLab's guide, as written ------------------------------------------------------------------

def test_the_guides_bill_of_materials_cites_the_guide_for_every_resource():
    template = yaml.safe_load(guide.FILE.read_text())
    for rid, res in template["Resources"].items():
        assert "line" in res["Metadata"]["Source"], rid
    result = cost(guide.load())
    items = {(line.resource, line.item) for line in result.lines}
    assert ("Redis", "ElastiCache cache.t3.medium x3") in items
    assert ("Database", "RDS PostgreSQL db.m4.large Multi-AZ (priced as db.m5.large)") in items
    assert sum(1 for line in result.lines if line.item == "NAT gateway hours") == 2
    asg = next(line for line in result.lines if line.resource == "AppAutoScalingGroup" and line.unit == "h")
    assert (asg.count, asg.count_max) == (2, 4)


def test_compare_guide_prints_both_totals(tmp_path, capsys):
    compiler.write_build(config.from_dict({}), tmp_path / "build")
    assert main(["estimate", "--build", str(tmp_path / "build"), "--compare-guide", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["guide"]["estimate"]["total_monthly"] == pytest.approx(round(cost(guide.load()).total, 2))
    assert report["estimate"]["total_monthly"] == pytest.approx(round(cost(build_tree()).total, 2))


# -- the deploy-time model -----------------------------------------------------------------------

DURATIONS = {"default": {"create": 0, "update": 0}, "types": {
    "T::Fast": {"create": 10}, "T::Slow": {"create": 50}, "T::Mid": {"create": 20},
    "T::Server": {"create": 5, "boot": 100, "update": 1},
    "AWS::CloudFormation::Stack": {"create": 3, "update": 2},
    "AWS::AutoScaling::AutoScalingGroup": {"create": 20, "boot": 100, "update": 4},
    "AWS::EC2::LaunchTemplate": {"create": 1, "update": 1}}}


def test_the_critical_path_of_a_small_graph_is_the_longest_chain():
    #  A(10) <- B(20, DependsOn A) <- C(10, Ref B);  D(50) alone;  E(20) <- Fn::Sub of A and D
    root = one({
        "A": {"Type": "T::Fast"},
        "B": {"Type": "T::Mid", "DependsOn": "A"},
        "C": {"Type": "T::Fast", "Properties": {"X": {"Ref": "B"}}},
        "D": {"Type": "T::Slow"},
        "E": {"Type": "T::Mid", "Properties": {"X": {"Fn::Sub": "${A}-${D.Arn}"}}},
    })
    result = deploytime.Model(DURATIONS).run(root)
    assert result.total == 70   # D (50) then E (20); A-B-C is 40
    assert [(s.resource, s.start, s.end) for s in result.path] == [("D", 0, 50), ("E", 50, 70)]
    assert result.path[1].via.kind == "GetAtt"


def test_nested_stacks_wait_for_the_stacks_whose_outputs_they_read():
    child_a = {"Resources": {"Slow": {"Type": "T::Slow"}}, "Outputs": {"Id": {"Value": {"Ref": "Slow"}}}}
    child_b = {"Parameters": {"Id": {"Type": "String"}},
               "Resources": {"Fast": {"Type": "T::Fast", "Properties": {"X": {"Ref": "Id"}}}}}
    parent = {"Resources": {
        "AStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "https://b/t/a.template.yaml"}},
        "BStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {
            "TemplateURL": "https://b/t/b.template.yaml",
            "Parameters": {"Id": {"Fn::GetAtt": ["AStack", "Outputs.Id"]}}}}}}
    root = stack.tree({"main.template.yaml": parent, "a.template.yaml": child_a, "b.template.yaml": child_b})
    result = deploytime.Model(DURATIONS).run(root)
    assert result.total == (3 + 50) + (3 + 10)
    assert [f"{s.tier}/{s.resource}" for s in result.path] == ["main/AStack", "a/Slow", "main/BStack", "b/Fast"]
    assert result.path[2].via.detail == "Id"


def test_signalled_resources_wait_for_the_boot_and_at_most_their_creation_policy_timeout():
    root = one({"S": {"Type": "T::Server", "CreationPolicy": {"ResourceSignal": {"Count": 1, "Timeout": "PT5M"}}}})
    assert deploytime.Model(DURATIONS).run(root).total == 5 + 100
    assert deploytime.Model(DURATIONS, upper_bound=True).run(root).total == 5 + 300


def test_an_update_rolls_the_servers_batch_by_batch():
    root = one({
        "Lt": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {}}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                  "Properties": {"MinSize": "3", "MaxSize": "6", "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Lt"}}},
                  "UpdatePolicy": {"AutoScalingRollingUpdate": {
                      "MaxBatchSize": 1, "PauseTime": "PT10M", "WaitOnResourceSignals": True}}},
        "Other": {"Type": "T::Slow"},
    })
    assert deploytime.RollModel(root, DURATIONS).run(root).total == 1 + 4 + 3 * (20 + 100)
    assert deploytime.RollModel(root, DURATIONS, upper_bound=True).run(root).total == 1 + 4 + 3 * 600


def test_a_dependency_that_lengthens_the_critical_path_is_reported_with_the_saving():
    root = one({
        "Slow": {"Type": "T::Slow"},
        "Fast": {"Type": "T::Fast"},
        "User": {"Type": "T::Mid", "DependsOn": ["Slow"], "Properties": {"X": {"Ref": "Fast"}}},
    })
    findings = deploytime.needless(root, lambda: deploytime.Model(DURATIONS))
    assert [(f.resource, f.waits_for, f.kind, f.saving) for f in findings] == [("User", "Slow", "DependsOn", 20)]  # 50+20 -> max(50, 10+20)
    assert "explicit DependsOn" in findings[0].reason


def test_a_nested_stack_that_passes_an_output_its_child_never_reads_is_not_needed():
    child_a = {"Resources": {"Slow": {"Type": "T::Slow"}}, "Outputs": {"Id": {"Value": {"Ref": "Slow"}}}}
    child_b = {"Parameters": {"Id": {"Type": "String"}}, "Resources": {"Fast": {"Type": "T::Fast"}}}
    parent = {"Resources": {
        "AStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "x/a.template.yaml"}},
        "BStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {
            "TemplateURL": "x/b.template.yaml", "Parameters": {"Id": {"Fn::GetAtt": ["AStack", "Outputs.Id"]}}}}}}
    root = stack.tree({"main.template.yaml": parent, "a.template.yaml": child_a, "b.template.yaml": child_b})
    findings = deploytime.needless(root, lambda: deploytime.Model(DURATIONS))
    assert [(f.resource, f.reason) for f in findings] == [("BStack", "not needed: b never reads Id")]


def test_the_durations_file_names_a_source_for_every_figure():
    data = deploytime.load_durations()
    for kind, entry in data["types"].items():
        assert entry["source"] in data["sources"], kind
    for pattern, entry in data["boot"].items():
        assert entry["source"] in data["sources"], pattern


def test_the_price_snapshot_names_a_source_for_every_figure():
    def entries(section):
        if "price" in section:
            yield section
        else:
            for value in section.values():
                yield from entries(value)

    for region, table in SNAPSHOT["regions"].items():
        for entry in entries(table):
            assert entry["source"] in SNAPSHOT["sources"], (region, entry)


# -- bad input: one line, exit 2 -----------------------------------------------------------------

def _fails(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gitlab-cfn: error: "), err
    for word in words:
        assert word in err, err
    return err


def test_unknown_region_is_one_line(tmp_path, capsys):
    compiler.write_build(config.from_dict({}), tmp_path / "build")
    _fails(capsys, ["estimate", "--build", str(tmp_path / "build"), "--region", "mars-1"],
           "--region", "mars-1", "us-east-1")


def test_an_instance_type_without_a_price_is_one_line_naming_it(tmp_path, capsys):
    # A hand-edited template naming a type EC2 does not sell (c5 goes from 4xlarge to 9xlarge).
    compiler.write_build(config.from_dict({}), tmp_path / "build")
    main_file = tmp_path / "build" / "templates" / "main.template.yaml"
    main_file.write_text(main_file.read_text().replace("Default: c5.xlarge", "Default: c5.8xlarge", 1))
    _fails(capsys, ["estimate", "--build", str(tmp_path / "build")], "c5.8xlarge", "InstanceType")


@pytest.mark.parametrize("argv, words", [
    (["--assume", "s3_gb"], ("--assume", "KEY=NUMBER")),
    (["--assume", "disk_gb=5"], ("--assume", "disk_gb", "s3_gb")),
    (["--config", "x.yaml"], ("--build", "--config")),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, argv, words):
    _fails(capsys, ["estimate", "--build", str(tmp_path), *argv], *words)


def test_a_missing_build_is_one_line(tmp_path, capsys):
    _fails(capsys, ["estimate", "--build", str(tmp_path / "none")], "--build", "gitlab-cfn build")


def test_an_assumption_changes_the_total_by_its_usage_times_the_price():
    base, more = cost(build_tree()), cost(build_tree(), s3_gb=1100)
    assert more.total - base.total == pytest.approx(1000 * 0.023)


def test_snapshot_lookup_refuses_an_unknown_key():
    with pytest.raises(ConfigError, match="no ec2_hour price for us-east-1"):
        prices.Prices("us-east-1").get("ec2_hour", "x9.huge")


def test_a_stack_waiting_for_all_of_another_whose_outputs_are_ready_early_is_reported():
    #  a: Quick (10) gives the output, Slow (50) does not; b reads the output.
    child_a = {"Resources": {"Quick": {"Type": "T::Fast"}, "Slow": {"Type": "T::Slow"}},
               "Outputs": {"Id": {"Value": {"Ref": "Quick"}}}}
    child_b = {"Parameters": {"Id": {"Type": "String"}},
               "Resources": {"Fast": {"Type": "T::Fast", "Properties": {"X": {"Ref": "Id"}}}}}
    parent = {"Resources": {
        "AStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "x/a.template.yaml"}},
        "BStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {
            "TemplateURL": "x/b.template.yaml", "Parameters": {"Id": {"Fn::GetAtt": ["AStack", "Outputs.Id"]}}}}}}
    root = stack.tree({"main.template.yaml": parent, "a.template.yaml": child_a, "b.template.yaml": child_b})
    assert deploytime.Model(DURATIONS).run(root).total == (3 + 50) + (3 + 10)
    findings = deploytime.waits_for_whole_stacks(root, lambda: deploytime.Model(DURATIONS))
    # b could start at 3 + 10 and end at 26; a still ends at 53: 66 -> 53.
    assert [(f.resource, f.waits_for, f.saving) for f in findings] == [("BStack", "AStack", 13)]
    assert deploytime.outputs_when_ready(root, lambda: deploytime.Model(DURATIONS)) == (66, 53)


# -- --live: AWS's Price List API through boto3 (a real client, answers stubbed) -------------------

def _product(usd: str, unit: str = "Hrs") -> str:
    return json.dumps({"product": {"sku": "X"}, "terms": {"OnDemand": {"X.T": {"priceDimensions": {
        "X.T.R": {"unit": unit, "pricePerUnit": {"USD": usd}}}}}}})


def test_live_prices_ask_the_price_list_api_with_the_region_and_type():
    import boto3
    from botocore.stub import Stubber
    from gitlab_cfn.report.pricelist import LivePrices

    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [_product("0.0000000000"), _product("0.2140000000")]}, {
            "ServiceCode": "AmazonEC2", "MaxResults": 100, "Filters": [
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "ap-northeast-1"},
                {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "c5.xlarge"},
                {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
                {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
                {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
                {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
                {"Type": "TERM_MATCH", "Field": "licenseModel", "Value": "No License required"}]})
        stub.add_response("get_products", {"PriceList": []}, None)
        live = LivePrices("ap-northeast-1", client)
        assert live.get("ec2_hour", "c5.xlarge").usd == 0.214
        assert live.get("ec2_hour", "c5.xlarge").usd == 0.214          # asked once
        with pytest.raises(ConfigError, match="no on-demand ec2_hour price in ap-northeast-1"):
            live.get("ec2_hour", "c5.8xlarge")
        stub.assert_no_pending_responses()


def test_the_regeneration_script_asks_for_every_taskcat_region_and_every_offered_type(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "price_table.py"
    spec = importlib.util.spec_from_file_location("price_table", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.regions() == ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1",
                                "ap-southeast-2", "ap-northeast-1"]
    compiler.write_build(config.from_dict({}), tmp_path / "build")
    wanted = script.keys(SNAPSHOT, tmp_path / "build")
    assert {"c5.4xlarge", "r6i.8xlarge", "t3a.small", "t2.micro"} <= set(wanted["ec2_hour"])
    assert "c5.8xlarge" not in wanted["ec2_hour"]
    assert {"db.r6g.8xlarge", "db.m6i.large"} <= set(wanted["rds_hour"])
    assert wanted["nat_hour"] == [None]


def test_every_type_a_build_offers_has_a_price(variant):
    """A user who picks another AllowedValue still gets an estimate. (The templates once offered
    c5.8xlarge, which EC2 does not sell: c5 goes 4xlarge, 9xlarge; this test found it.)"""
    table = SNAPSHOT["regions"]["us-east-1"]
    tables = {"InstanceType": "ec2_hour", "DBInstanceClass": "rds_hour", "CacheNodeType": "elasticache_hour"}
    missing = set()
    for st in build_tree(variant[1]).walk():
        for name, spec in (st.template.get("Parameters") or {}).items():
            for suffix, section in tables.items():
                if name.endswith(suffix):
                    missing |= {v for v in spec.get("AllowedValues", []) if v not in table[section]}
    assert not missing


# -- the regions of taskcat.yml besides us-east-1 --------------------------------------------------

def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tier(cfg: dict, name: str) -> stack.Stack:
    """One nested stack of a build, alone (its parameters at their defaults)."""
    return stack.tree(compiler.compile_data(config.from_dict(cfg)), root=f"{name}.template.yaml")


def test_every_taskcat_region_is_in_the_snapshot():
    assert set(_script("price_table").regions()) == set(SNAPSHOT["regions"])


def test_a_changed_instance_type_changes_the_total_by_that_types_price_difference_in_another_region():
    # eu-west-1 prices every resource of the application tier (the whole build lacks one figure there).
    region = "eu-west-1"
    table = SNAPSHOT["regions"][region]["ec2_hour"]
    base = estimate.estimate(tier({}, "app"), prices.Prices(region), estimate.load_assumptions())
    bigger = estimate.estimate(tier({"app": {"instance_type": "c5.2xlarge"}}, "app"), prices.Prices(region),
                               estimate.load_assumptions())
    step = (table["c5.2xlarge"]["price"] - table["c5.xlarge"]["price"]) * HOURS
    assert table["c5.xlarge"]["price"] != ec2("c5.xlarge")              # a price of its own, not us-east-1's
    assert bigger.total - base.total == pytest.approx(step * 2)        # min_size 2
    assert bigger.total_max - base.total_max == pytest.approx(step * 4)  # max_size 4
    assert {line.unit_price for line in base.lines if line.item.startswith("EC2")} == {table["c5.xlarge"]["price"]}


def test_a_region_lacking_a_figure_refuses_the_build_in_one_line_naming_it(capsys):
    import re

    err = _fails(capsys, ["estimate", "--config", "configs/three-az.yaml", "--region", "eu-west-1"],
                 "eu-west-1", "price snapshot")
    # The figure named is one the snapshot really lacks for that region (and has for us-east-1).
    (section,) = re.findall(r"no (\w+) price for eu-west-1", err)
    regions = SNAPSHOT["regions"]
    assert section in regions["us-east-1"]
    table = regions["eu-west-1"].get(section)
    assert table is None or any(key not in table for key in regions["us-east-1"][section])


def _linear_mismatches(table: dict, rule) -> list[str]:
    """Sourced figures of ``table`` (type -> price) that ``rule`` would derive differently."""
    return [t for t, price in table.items()
            if (derived := rule(table, t)) is not None and derived != pytest.approx(price, abs=1e-9)]


def test_the_linear_rule_reproduces_every_sourced_figure_it_could_have_derived():
    """ec2-linear derives the .large, .medium ... sizes of a region from its .xlarge; in us-east-1,
    where karpenter gives every size, the rule must give exactly the sourced figures."""
    script = _script("price_sources")
    rule = script.linear_derivation
    sourced = {t: e["price"] for t, e in SNAPSHOT["regions"]["us-east-1"]["ec2_hour"].items()}
    derivable = [t for t in sourced if rule(sourced, t) is not None]
    assert {"c5.large", "m5.large", "t3.micro", "t3a.nano"} <= set(derivable)
    assert _linear_mismatches(sourced, rule) == []
    # The check fails on a table the rule does not fit: one xlarge price moved, or t2, whose
    # t2.small (0.023) is not t2.xlarge/8 (0.0232) and is therefore left out of the rule.
    assert _linear_mismatches({**sourced, "m5.xlarge": 0.2}, rule) == ["m5.large"]
    families = script.LINEAR_FAMILIES

    def with_t2(table, t):
        families.add("t2")
        try:
            return rule(table, t)
        finally:
            families.discard("t2")
    assert "t2.small" in _linear_mismatches(sourced, with_t2)


def test_every_derived_figure_of_the_snapshot_is_what_its_rule_gives():
    rule = _script("price_sources").linear_derivation
    for region, table in SNAPSHOT["regions"].items():
        ec2_table = {t: e["price"] for t, e in table["ec2_hour"].items() if e["source"] != "ec2-linear"}
        for itype, entry in table["ec2_hour"].items():
            if entry["source"] == "ec2-linear":
                assert entry["price"] == pytest.approx(rule(ec2_table, itype)), (region, itype)
        rds = table.get("rds_hour", {})
        for cls, entry in rds.items():
            if entry["source"] == "rds-6i-as-5":
                assert entry["price"] == rds[cls.replace("6i.", "5.")]["price"], (region, cls)
    # The rule behind rds-6i-as-5, where both classes are sourced (us-east-1):
    us = SNAPSHOT["regions"]["us-east-1"]["rds_hour"]
    pairs = [(c, c.replace("6i.", "5.")) for c, e in us.items()
             if c.startswith(("db.m6i.", "db.r6i.")) and e["source"] != "rds-linear" and c.replace("6i.", "5.") in us]
    assert len(pairs) >= 4 and all(us[a]["price"] == us[b]["price"] for a, b in pairs)


def _cheaper_than_us_east_1(snapshot: dict) -> list[tuple[str, str, str]]:
    us = snapshot["regions"]["us-east-1"]
    cheaper = []
    for region, table in snapshot["regions"].items():
        for name in ("ec2_hour", "rds_hour", "elasticache_hour", "ebs_gb_month"):
            for key, entry in table.get(name, {}).items():
                if key in us.get(name, {}) and entry["price"] < us[name][key]["price"]:
                    cheaper.append((region, name, key))
    return cheaper


def test_other_regions_cost_more_than_us_east_1_where_both_are_sourced():
    """A guard against a table that gives one type another's figures (the ElastiCache table did:
    cache.m5.large 0.06 in us-west-2): no region of taskcat.yml is cheaper than us-east-1."""
    assert _cheaper_than_us_east_1(SNAPSHOT) == []
    bad = copy.deepcopy(SNAPSHOT)
    bad["regions"]["us-west-2"]["elasticache_hour"]["cache.t3.medium"]["price"] = 0.06
    assert _cheaper_than_us_east_1(bad) == [("us-west-2", "elasticache_hour", "cache.t3.medium")]
