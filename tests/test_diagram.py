"""gitlab-cfn diagram: drawn from the built templates, it names every tier the build has and
none it does not; new tiers are drawn without code changes; bad input is one line."""

from __future__ import annotations

import re
import shutil

import pytest
from gitlab_cfn.cli import main
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.report import diagram, stack

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (make build)")


def named_tiers(dot: str) -> set[str]:
    """The tiers a diagram names: every node and subnet label ends with [tier]."""
    return set(re.findall(r"\[([a-z][a-z0-9-]*)\]", dot))


def built_tiers(build_dir) -> set[str]:
    """Every nested stack of the build, from the manifest (the parent and the portfolio are not tiers)."""
    manifest = compiler.read_manifest(build_dir)
    return set(manifest["templates"]) - {"main", compiler.PORTFOLIO}


def write(tmp_path, cfg: dict):
    out = tmp_path / "build"
    compiler.write_build(config.from_dict(cfg), out)
    return out


@needs_dot
@pytest.mark.parametrize("cfg", [{}, {"bastions": False, "nat_gateways": "single"}, {"az_count": 3}],
                         ids=["poc", "no-bastion", "three-az"])
def test_the_diagram_names_every_tier_of_the_build_and_no_other(tmp_path, cfg):
    build = write(tmp_path, cfg)
    path, dot = diagram.render(stack.load(build), tmp_path / "architecture.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert named_tiers(dot) == built_tiers(build)
    if not cfg.get("bastions", True):
        assert "bastion" not in named_tiers(dot)


def test_the_tier_check_fails_when_a_tier_is_missing_from_the_drawing(tmp_path):
    build = write(tmp_path, {})
    model = diagram.build_model(stack.load(build))
    model.nodes = {k: n for k, n in model.nodes.items() if n.tier != "cache"}
    assert named_tiers(diagram.dot_source(model)) == built_tiers(build) - {"cache"}


def test_counts_subnets_and_flows_come_from_the_templates(tmp_path):
    build = write(tmp_path, {"az_count": 3, "app": {"min_size": 3, "max_size": 6}})
    model = diagram.build_model(stack.load(build))
    labels = {n.label.split("\n")[0]: n for n in model.nodes.values()}
    assert "c5.xlarge x 3-6 across 3 AZs" in labels["AppAutoScalingGroup"].label
    assert sorted({s["az"] for s in model.subnets.values()}) == ["AZ 1", "AZ 2", "AZ 3"]
    assert sum(s["public"] for s in model.subnets.values()) == 3
    ports = {(model.nodes[a].label.split("\n")[0], model.nodes[b].label.split("\n")[0]): p
             for (a, b), p in model.edges.items()}
    assert ports[("AppAutoScalingGroup", "Database")] == {"5432"}
    assert ports[("AppAutoScalingGroup", "RedisReplicationGroup")] == {"6379"}
    assert ports[("AppAutoScalingGroup", "GitalyInstance")] == {"8075"}
    assert ports[("internet", "LoadBalancer")] == {"80", "443"}


def test_a_new_tier_is_drawn_without_code_changes():
    sidekiq = {
        "Parameters": {"Subnets": {"Type": "String"}, "Group": {"Type": "String"}},
        "Resources": {
            "SidekiqTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
                "InstanceType": "m5.xlarge", "SecurityGroupIds": [{"Ref": "Group"}]}}},
            "SidekiqGroup": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
                "MinSize": "2", "MaxSize": "4", "VPCZoneIdentifier": {"Ref": "Subnets"},
                "LaunchTemplate": {"LaunchTemplateId": {"Ref": "SidekiqTemplate"}}}},
            "InternalNlb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
                "Type": "network", "Scheme": "internal", "Subnets": {"Ref": "Subnets"}}}}}
    net = {"Resources": {
        "SubnetA": {"Type": "AWS::EC2::Subnet", "Properties": {"AvailabilityZone": {"Fn::Select": [0, ["a", "b"]]}}},
        "SubnetB": {"Type": "AWS::EC2::Subnet", "Properties": {"AvailabilityZone": {"Fn::Select": [1, ["a", "b"]]}}},
        "Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"SecurityGroupIngress": [
            {"IpProtocol": "tcp", "FromPort": 9000, "ToPort": 9000, "CidrIp": "0.0.0.0/0"}]}}},
        "Outputs": {"Subnets": {"Value": {"Fn::Join": [",", [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}]]}},
                    "Group": {"Value": {"Fn::GetAtt": ["Sg", "GroupId"]}}}}
    parent = {"Resources": {
        "NetStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "t/net.template.yaml"}},
        "SidekiqStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {
            "TemplateURL": "t/sidekiq.template.yaml",
            "Parameters": {"Subnets": {"Fn::GetAtt": ["NetStack", "Outputs.Subnets"]},
                           "Group": {"Fn::GetAtt": ["NetStack", "Outputs.Group"]}}}}}}
    root = stack.tree({"main.template.yaml": parent, "net.template.yaml": net, "sidekiq.template.yaml": sidekiq})
    model = diagram.build_model(root)
    dot = diagram.dot_source(model)
    assert named_tiers(dot) == {"net", "sidekiq"}
    assert "m5.xlarge x 2-4 across 2 AZs" in dot
    assert "NLB internal" in dot
    assert {tuple(p) for p in model.edges.values()} == {("9000",)}


@needs_dot
def test_the_command_writes_the_diagram_beside_the_templates(tmp_path, capsys):
    build = write(tmp_path, {})
    assert main(["diagram", "--build", str(build), "--format", "svg", "--dot", str(tmp_path / "a.dot")]) == 0
    svg = (build / "architecture.svg").read_text()
    assert "<svg" in svg and "[gitaly]" in svg
    assert named_tiers((tmp_path / "a.dot").read_text()) == built_tiers(build)


def test_a_bad_format_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["diagram", "--build", str(tmp_path), "--format", "gif"])
    assert exc.value.code == 2
    assert "--format" in capsys.readouterr().err


def test_a_missing_build_is_one_line(tmp_path, capsys):
    assert main(["diagram", "--build", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--build" in err
