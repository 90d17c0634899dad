"""Each server's network flows against security groups, routes and ACLs (verify/flows.py).

Every build passes with the flows GitLab needs; a narrowed or removed rule on either side,
a missing route, a NAT gateway cut off from the internet, a network ACL deny or a TLS
mismatch each fail with the finding that names them.
"""

from __future__ import annotations

import copy

import pytest
from conftest import templates_for
from gitlab_cfn.verify import flows
from test_access import BUILDS, model_of, one, res, user_data_vars


def check(templates) -> flows.FlowResult:
    return flows.check(model_of(templates))


def changed(change, cfg: dict | None = None) -> list[str]:
    templates = copy.deepcopy(templates_for(cfg or {}))
    change(templates)
    return [f.message for f in check(templates).findings]


def edges(result: flows.FlowResult) -> set[tuple[str, str, int]]:
    return {(f.source.split(":")[1], f.destination.label.split(":")[1] if f.destination else f.service or "internet",
             f.port) for _, f in result.flows}


# -- every build passes, with the flows GitLab needs ---------------------------------------------

# GitLab's ports (PostgreSQL 5432, Redis 6379, Gitaly 8075, HTTPS 443) and what each server reaches.
EXPECTED = {
    ("AppLaunchTemplate", "Database", 5432), ("AppLaunchTemplate", "RedisReplicationGroup", 6379),
    ("AppLaunchTemplate", "GitalyInstance", 8075), ("AppLaunchTemplate", "secretsmanager", 443),
    ("AppLaunchTemplate", "s3", 443), ("AppLaunchTemplate", "ssm", 443),
    ("AppLaunchTemplate", "cloudformation", 443),
    ("GitalyInstance", "LoadBalancer", 443), ("GitalyInstance", "secretsmanager", 443),
    ("GitalyInstance", "s3", 443), ("GitalyInstance", "internet", 80),
    ("LoadBalancer", "AppLaunchTemplate", 80), ("LoadBalancer", "AppLaunchTemplate", 22),
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_build_passes_the_flow_check(name):
    cfg = BUILDS[name]
    result = check(templates_for(cfg))
    assert [f.message for f in result.findings] == []
    if "size" not in cfg:            # the POC shape: one Gitaly server (a cluster goes through Praefect)
        assert edges(result) >= EXPECTED
    bastions = {e for e in edges(result) if e[0].startswith("Bastion")}
    assert bool(bastions) == cfg.get("bastions", True)
    redis = [f for _, f in result.flows if f.port == 6379]
    assert redis and all(f.tls is True for f in redis)      # gitlab.rb's redis_ssl, read from the script


def test_each_private_subnet_of_the_group_is_checked():
    result = check(templates_for({"az_count": 3}))
    source = next(place for place, f in result.flows if f.source.endswith("AppLaunchTemplate"))
    assert len(source.subnets) == 3


# -- security groups -----------------------------------------------------------------------------

def sg(t, logical):
    return res(t, "security-groups", logical)["Properties"]


def test_removed_egress_rule_fails():
    def drop(t):
        del t["security-groups"]["Resources"]["AppToDatabasePostgres"]
    one(changed(drop), "AppLaunchTemplate", "Database:5432", "no egress rule")


def test_egress_on_the_wrong_port_fails():
    def narrow(t):
        sg(t, "AppToDatabasePostgres")["FromPort"] = sg(t, "AppToDatabasePostgres")["ToPort"] = 5433
    one(changed(narrow), "AppLaunchTemplate", "Database:5432", "no egress rule")


def test_egress_to_the_wrong_group_fails():
    def wrong(t):
        sg(t, "AppToCacheRedis")["DestinationSecurityGroupId"] = {"Fn::GetAtt": ["DatabaseSecurityGroup", "GroupId"]}
    one(changed(wrong), "RedisReplicationGroup:6379", "no egress rule")


def test_removed_ingress_rule_fails():
    def drop(t):
        del t["security-groups"]["Resources"]["GitalyFromAppGitaly"]
    one(changed(drop), "GitalyInstance:8075", "no ingress rule")


def test_gitaly_without_https_egress_cannot_reach_aws_or_the_internal_api():
    def drop(t):
        del t["security-groups"]["Resources"]["GitalyToInternetHttps"]
    findings = changed(drop)
    one(findings, "GitalyInstance", "secretsmanager:443", "no egress rule")
    one(findings, "GitalyInstance", "LoadBalancer:443", "no egress rule")


def test_load_balancer_instance_port_must_be_open_on_the_app():
    def move(t):
        for listener in res(t, "app", "LoadBalancer")["Properties"]["Listeners"]:
            if listener["InstancePort"] == "80":
                listener["InstancePort"] = "8080"
    one(changed(move), "LoadBalancer", "AppLaunchTemplate:8080", "no egress rule")


def test_a_security_group_without_egress_rules_keeps_aws_default_egress():
    def drop(t):   # no SecurityGroupEgress: AWS adds allow-all egress, so only ingress decides
        del sg(t, "DatabaseSecurityGroup")["SecurityGroupEgress"]
    assert changed(drop) == []


# -- routes --------------------------------------------------------------------------------------

def test_missing_route_to_the_nat_fails():
    def drop(t):
        del t["network"]["Resources"]["PrivateDefaultRoute2"]
    finding = one(changed(drop), "AppLaunchTemplate", "no route out of", "PrivateSubnet2")
    assert "has no route to 0.0.0.0/0" in finding


def test_route_to_the_wrong_gateway_fails():
    def wrong(t):   # a private subnet routed straight to the internet gateway: no public address
        route = res(t, "network", "PrivateDefaultRoute1")["Properties"]
        del route["NatGatewayId"]
        route["GatewayId"] = {"Ref": "InternetGateway"}
    one(changed(wrong), "GitalyInstance", "no public address")


def test_nat_gateway_cut_off_from_the_internet_fails():
    def drop(t):
        del t["network"]["Resources"]["PublicDefaultRoute"]
    findings = changed(drop)
    one(findings, "AppLaunchTemplate", "the NAT gateway's subnet does not reach the internet")
    one(findings, "BastionA", "no route out of")


def test_bastion_without_public_address_cannot_reach_the_internet():
    def private(t):
        res(t, "bastion", "BastionA")["Properties"]["NetworkInterfaces"][0]["AssociatePublicIpAddress"] = False
    findings = changed(private)
    one(findings, "BastionA", "no public address")
    assert not any("BastionB" in f for f in findings)


def test_an_s3_gateway_endpoint_replaces_the_nat_for_s3_only():
    def endpoint_without_nat(t):
        net = t["network"]["Resources"]
        for route in ("PrivateDefaultRoute1", "PrivateDefaultRoute2"):
            del net[route]
        net["S3Endpoint"] = {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}, "VpcEndpointType": "Gateway",
            "VpcId": {"Ref": "Vpc"}, "RouteTableIds": [{"Ref": "PrivateRouteTable1"}, {"Ref": "PrivateRouteTable2"}]}}
    findings = changed(endpoint_without_nat)
    assert not any("-> s3:443" in f for f in findings)
    one(findings, "AppLaunchTemplate", "secretsmanager:443", "no route out of")


def test_an_interface_endpoint_needs_its_security_group_to_admit_the_server():
    def endpoint(t):
        net = t["network"]["Resources"]
        net["EndpointGroup"] = {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "endpoints", "VpcId": {"Ref": "Vpc"}}}
        net["SecretsEndpoint"] = {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"},
            "VpcEndpointType": "Interface", "PrivateDnsEnabled": True, "VpcId": {"Ref": "Vpc"},
            "SubnetIds": [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}],
            "SecurityGroupIds": [{"Fn::GetAtt": ["EndpointGroup", "GroupId"]}]}}
    one(changed(endpoint), "AppLaunchTemplate", "secretsmanager endpoint's groups allow no TCP 443")

    def admitted(t):
        endpoint(t)
        t["network"]["Resources"]["EndpointGroup"]["Properties"]["SecurityGroupIngress"] = [
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": {"Ref": "VpcCidr"}}]
    assert changed(admitted) == []


# -- network ACLs --------------------------------------------------------------------------------

def with_acl(entries: list[dict], subnets=("PrivateSubnet1",)):
    def change(t):
        net = t["network"]["Resources"]
        net["PrivateAcl"] = {"Type": "AWS::EC2::NetworkAcl", "Properties": {"VpcId": {"Ref": "Vpc"}}}
        for i, entry in enumerate(entries):
            net[f"PrivateAclEntry{i}"] = {"Type": "AWS::EC2::NetworkAclEntry", "Properties": {
                "NetworkAclId": {"Ref": "PrivateAcl"}, **entry}}
        for subnet in subnets:
            net[f"{subnet}Acl"] = {"Type": "AWS::EC2::SubnetNetworkAclAssociation", "Properties": {
                "SubnetId": {"Ref": subnet}, "NetworkAclId": {"Ref": "PrivateAcl"}}}
    return change


ALLOW_ALL = [
    {"RuleNumber": 200, "Protocol": -1, "RuleAction": "allow", "Egress": False, "CidrBlock": "0.0.0.0/0"},
    {"RuleNumber": 200, "Protocol": -1, "RuleAction": "allow", "Egress": True, "CidrBlock": "0.0.0.0/0"},
]


def test_an_acl_allowing_everything_passes():
    assert changed(with_acl(ALLOW_ALL)) == []


def test_an_acl_deny_fails():
    deny = {"RuleNumber": 100, "Protocol": 6, "RuleAction": "deny", "Egress": True, "CidrBlock": "10.0.0.0/16",
            "PortRange": {"From": 5432, "To": 5432}}
    finding = one(changed(with_acl([deny] + ALLOW_ALL)), "AppLaunchTemplate", "Database:5432", "denies out")
    assert "PrivateAclEntry0" in finding


def test_an_acl_without_return_traffic_fails():
    entries = [  # out to PostgreSQL and HTTPS, but no inbound rule for the answers
        {"RuleNumber": 100, "Protocol": 6, "RuleAction": "allow", "Egress": True, "CidrBlock": "0.0.0.0/0",
         "PortRange": {"From": 0, "To": 65535}}]
    one(changed(with_acl(entries)), "AppLaunchTemplate", "allows no ingress 1024-65535")


def test_a_deny_rule_after_an_allow_does_not_apply():
    entries = [dict(ALLOW_ALL[1], RuleNumber=100), ALLOW_ALL[0],
               {"RuleNumber": 150, "Protocol": 6, "RuleAction": "deny", "Egress": True, "CidrBlock": "0.0.0.0/0",
                "PortRange": {"From": 5432, "To": 5432}}]
    assert changed(with_acl(entries)) == []


# -- TLS and table-driven flows ------------------------------------------------------------------

def test_redis_without_transit_encryption_fails():
    def plain(t):
        res(t, "cache", "RedisReplicationGroup")["Properties"]["TransitEncryptionEnabled"] = False
    one(changed(plain), "RedisReplicationGroup:6379", "speaks TLS", "does not offer it")


def test_a_new_host_variable_is_a_new_flow():
    def add(t):   # a second database endpoint on a port no rule opens
        variables = user_data_vars(t, "app", "AppLaunchTemplate")
        variables["ARCHIVE_DB_HOST"] = {"Ref": "DatabaseEndpoint"}
        variables["ARCHIVE_DB_PORT"] = "6432"
    one(changed(add), "AppLaunchTemplate", "Database:6432", "$ARCHIVE_DB_HOST", "no egress rule")


def test_a_host_without_its_port_is_a_finding():
    def drop(t):   # the compile side forgets REDIS_PORT (the preamble line and its value)
        sub = res(t, "app", "AppLaunchTemplate")["Properties"]["LaunchTemplateData"]["UserData"]
        sub = sub["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"]
        sub[0] = sub[0].replace("export REDIS_PORT='${REDIS_PORT}'\n", "")
        del sub[1]["REDIS_PORT"]
    one(changed(drop), "$REDIS_HOST has no $REDIS_PORT")


def test_node_lists_are_flows_to_each_node():
    def nodes(t):   # the contract's GITALY_NODES shape, passed through the parent as a parameter
        main = t["main"]["Resources"]["AppStack"]["Properties"]["Parameters"]
        main["GitalyNodes"] = {"Fn::Sub": ["gitaly-1=${Ip}", {"Ip": {"Fn::GetAtt": ["GitalyStack", "Outputs.GitalyPrivateIp"]}}]}
        t["app"]["Parameters"]["GitalyNodes"] = {"Type": "String"}
        user_data_vars(t, "app", "AppLaunchTemplate")["GITALY_NODES"] = {"Ref": "GitalyNodes"}
    templates = copy.deepcopy(templates_for({}))
    nodes(templates)
    result = check(templates)
    assert ("AppLaunchTemplate", "GitalyInstance", flows.NODE_PORT) in edges(result)
    assert any("$GITALY_NODES gitaly-1" == f.why for _, f in result.flows)
    assert result.findings == []


def test_the_gate_runs_both_checks(tmp_path):
    import shutil

    import yaml
    from gitlab_cfn.compile import compiler, config
    from gitlab_cfn.verify.gate import run_gate

    compiler.write_build(config.BuildConfig(), tmp_path / "build")
    assert [str(f) for f in run_gate(tmp_path / "build", with_checkov=False).findings] == []
    shutil.copytree(tmp_path / "build", tmp_path / "bad")
    for tier, change in (("security-groups", lambda t: t["Resources"].pop("AppToCacheRedis")),
                         ("cache", lambda t: t["Resources"]["RedisAuthSecretRead"]["Properties"].update(Roles=[]))):
        path = tmp_path / "bad" / "templates" / f"{tier}.template.yaml"
        template = yaml.safe_load(path.read_text())
        change(template)
        path.write_text(yaml.safe_dump(template))
    result = run_gate(tmp_path / "bad", with_checkov=False)
    assert {f.rule for f in result.findings} == {"GLC020", "GLC021"}
    assert "access+flows" in result.timings


def test_network_load_balancer_targets_are_flows():
    def nlb(t):   # an internal NLB in front of the Gitaly server, with a group of its own
        gitaly = t["gitaly"]["Resources"]
        gitaly["NlbGroup"] = {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "nlb", "VpcId": "vpc-1", "SecurityGroupEgress": [
                {"IpProtocol": "tcp", "FromPort": 8075, "ToPort": 8075,
                 "DestinationSecurityGroupId": {"Ref": "GitalySecurityGroupId"}}]}}
        gitaly["Nlb"] = {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
            "Type": "network", "Scheme": "internal", "Subnets": [{"Ref": "PrivateSubnet1Id"}],
            "SecurityGroups": [{"Ref": "NlbGroup"}]}}
        gitaly["NlbTargets"] = {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
            "Port": 8075, "Protocol": "TCP", "TargetType": "instance", "Targets": [{"Id": {"Ref": "GitalyInstance"}}]}}
        gitaly["NlbListener"] = {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {
            "LoadBalancerArn": {"Ref": "Nlb"}, "Port": 8075, "Protocol": "TCP",
            "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "NlbTargets"}}]}}
    templates = copy.deepcopy(templates_for({}))
    nlb(templates)
    result = check(templates)
    assert ("Nlb", "GitalyInstance", 8075) in edges(result)
    # Gitaly admits the application servers only: the load balancer's traffic is refused.
    one([f.message for f in result.findings], "gitaly.template.yaml:Nlb traffic", "GitalyInstance:8075",
        "no ingress rule")


def test_gitaly_cluster_nodes_reach_each_other():
    """Gitaly replicates a repository by calling the Gitaly node that holds it: every node of a
    cluster (the nodes the Praefect servers' GITALY_NODES name) reaches every other on 8075."""
    result = check(templates_for({"size": "3k"}))
    nodes = [f"Gitaly{n}Instance" for n in (1, 2, 3)]
    assert {(a, b, 8075) for a in nodes for b in nodes if a != b} <= edges(result)

    for rule in ("GitalyToGitalyGitaly", "GitalyFromGitalyGitaly"):
        def drop(t, rule=rule):
            del t["security-groups"]["Resources"][rule]
        findings = changed(drop, {"size": "3k"})
        one(findings, "Gitaly1Instance", "Gitaly2Instance", "8075")
        assert all("Gitaly replication" in f for f in findings), findings


# -- day-2 operations -----------------------------------------------------------------------------

CLUSTER = {"size": "10k", "gitaly": {"keep_single_server": True}}


def test_cloudwatch_endpoints_are_flows_of_every_server_with_the_agent():
    found = edges(check(templates_for(CLUSTER)))
    for server in ("AppLaunchTemplate", "SidekiqLaunchTemplate", "GitalyInstance", "Gitaly1Instance",
                   "PraefectLaunchTemplate"):
        assert {(server, "logs", 443), (server, "monitoring", 443)} <= found, server


def _sender(t):
    t["main"]["Parameters"]["EmailSender"]["Default"] = "example.com"


def test_smtp_to_ses_is_a_flow_of_the_app_and_sidekiq_servers_only_with_a_sender():
    templates = copy.deepcopy(templates_for(CLUSTER))
    _sender(templates)
    result = check(templates)
    assert [f.message for f in result.findings] == []
    smtp = {e for e in edges(result) if e[2] == 587}
    assert smtp == {("AppLaunchTemplate", "internet", 587), ("SidekiqLaunchTemplate", "internet", 587)}
    assert not {e for e in edges(check(templates_for(CLUSTER))) if e[2] == 587}


@pytest.mark.parametrize("rule, server", [("AppToSesSmtp", "AppLaunchTemplate"),
                                          ("SidekiqToSesSmtp", "SidekiqLaunchTemplate")])
def test_removed_smtp_egress_fails(rule, server):
    def change(t):
        _sender(t)
        del t["security-groups"]["Resources"][rule]
    one(changed(change, CLUSTER), server, "SMTP to Amazon SES", "587")
