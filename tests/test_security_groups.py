import pytest
from conftest import resources, templates_for

ANY4, ANY6 = "0.0.0.0/0", "::/0"


def _name(ref):
    """'AppSecurityGroup' from {'Fn::GetAtt': ['AppSecurityGroup', 'GroupId']}."""
    return ref["Fn::GetAtt"][0].removesuffix("SecurityGroup") if isinstance(ref, dict) and "Fn::GetAtt" in ref else ref


def ingress(template):
    """{(target group, port, source)} for every ingress rule."""
    rules = set()
    for res in resources(template, "AWS::EC2::SecurityGroupIngress").values():
        p = res["Properties"]
        assert p["FromPort"] == p["ToPort"] and p["IpProtocol"] == "tcp"
        source = p.get("SourceSecurityGroupId") or p.get("CidrIp") or p.get("CidrIpv6")
        if isinstance(source, dict) and "Ref" in source:
            source = source["Ref"]
        rules.add((_name(p["GroupId"]), p["FromPort"], _name(source)))
    return rules


def test_exact_ingress_rules(default):
    assert ingress(default["security-groups"]) == {
        ("LoadBalancer", 80, ANY4), ("LoadBalancer", 80, ANY6),
        ("LoadBalancer", 443, ANY4), ("LoadBalancer", 443, ANY6),
        ("LoadBalancer", 22, "GitSshCIDR"),
        ("App", 80, "LoadBalancer"), ("App", 22, "LoadBalancer"), ("App", 22, "Bastion"),
        ("Database", 5432, "App"),
        ("Cache", 6379, "App"),
        ("Gitaly", 8075, "App"), ("Gitaly", 22, "Bastion"),
        ("Bastion", 22, "RemoteAccessCIDR"),
    }


def test_without_bastions_nothing_opens_ssh_from_them():
    sg = templates_for({"bastions": False})["security-groups"]
    assert "BastionSecurityGroup" not in sg["Resources"]
    assert all(source != "Bastion" for _, _, source in ingress(sg))
    assert "RemoteAccessCIDR" not in sg["Parameters"]
    assert "RemoteAccessCIDR" not in templates_for({"bastions": False})["main"]["Parameters"]


def test_every_rule_has_a_description(variant):
    _, _, t = variant
    sg = t["security-groups"]
    rules = list(resources(sg, "AWS::EC2::SecurityGroupIngress").values()) + list(
        resources(sg, "AWS::EC2::SecurityGroupEgress").values())
    assert rules
    for rule in rules:
        assert rule["Properties"]["Description"].strip()
    for group in resources(sg, "AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"]["SecurityGroupEgress"]:
            assert rule["Description"].strip()


def test_only_the_load_balancer_web_ports_are_open_to_the_world(variant):
    _, _, t = variant
    for target, port, source in ingress(t["security-groups"]):
        if source in (ANY4, ANY6):
            assert (target, port) in {("LoadBalancer", 80), ("LoadBalancer", 443)}


def test_ssh_cidr_parameters_have_no_default(default):
    params = default["main"]["Parameters"]
    for name in ("GitSshCIDR", "RemoteAccessCIDR"):
        assert "Default" not in params[name]


@pytest.mark.parametrize("group", ["Database", "Cache", "LoadBalancer"])
def test_groups_start_with_no_outbound_access(default, group):
    sg = default["security-groups"]
    inline = sg["Resources"][f"{group}SecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert inline == [{"IpProtocol": "icmp", "FromPort": 252, "ToPort": 86,
                       "CidrIp": "255.255.255.255/32", "Description": "Disallow all traffic"}]


def test_egress_pairs_match_group_to_group_ingress(default):
    sg = default["security-groups"]
    egress = {
        (_name(r["Properties"]["GroupId"]), r["Properties"]["FromPort"],
         _name(r["Properties"].get("DestinationSecurityGroupId", r["Properties"].get("CidrIp"))))
        for r in resources(sg, "AWS::EC2::SecurityGroupEgress").values()
    }
    for target, port, source in ingress(sg):
        if source in {"LoadBalancer", "App", "Bastion"}:
            assert (source, port, target) in egress
    # Data stores never get an outbound rule.
    assert not {e for e in egress if e[0] in {"Database", "Cache"}}
