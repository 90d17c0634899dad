"""The monitoring server (config ``monitoring.node``, tier ``prometheus``), in the templates.

Its scrape targets come from the stack (``SCRAPE_JOBS``: each role's exporters and the
CloudFormation logical ids EC2 service discovery selects), the security groups allow exactly
monitoring server -> each exporter port, the other servers are told to move their exporters only
when it exists, its role may DescribeInstances and DescribeAvailabilityZones in the stack's region and nothing
more; and the
access and flow checks (``gitlab-cfn check``) fail on each one-line bug in that wiring.
"""

from __future__ import annotations

import copy
import shutil

import pytest
from conftest import templates_for
from gitlab_cfn.compile import config, scrape, sizes
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.verify import access, flows
from test_access import model_of, one, res, user_data_vars

POC = {"monitoring": {"node": True}}
CLUSTER = {"size": "10k", "az_count": 3, "gitaly": {"keep_single_server": True}, "monitoring": {"node": True}}


def findings(templates) -> list[str]:
    model = model_of(templates)
    return [f.message for f in access.check(model).findings + flows.check(model).findings]


def changed(change, cfg=POC) -> list[str]:
    templates = copy.deepcopy(templates_for(cfg))
    change(templates)
    return findings(templates)


# -- config ---------------------------------------------------------------------------------------

def test_the_node_is_off_by_default_and_each_size_sets_gitlabs_instance_type():
    assert config.from_dict({}).monitoring.node is False
    for name, size in sizes.SIZES.items():
        cfg = config.from_dict({"size": name, "monitoring": {"node": True}})
        assert cfg.monitoring.instance_type == size.monitoring
    # GitLab's table: c5.large up to 5k, c5.xlarge from 10k.
    assert [s.monitoring for s in sizes.SIZES.values()] == ["c5.large"] * 3 + ["c5.xlarge"] * 3


@pytest.mark.parametrize("data, message", [
    ({"monitoring": {"node": "yes"}}, "monitoring.node: must be true or false (got 'yes')"),
    ({"monitoring": {"instance_type": "t3.large"}}, "monitoring.instance_type: burstable types are not allowed"),
    ({"monitoring": {"nodes": 2}}, "monitoring.nodes: unknown key (allowed: node, instance_type)"),
])
def test_bad_monitoring_settings_are_refused_naming_the_key(data, message):
    with pytest.raises(ConfigError) as exc:
        config.from_dict(data)
    assert message in str(exc.value)


# -- the templates --------------------------------------------------------------------------------

def scraped_values(templates) -> dict[str, str | None]:
    """METRICS_SCRAPED of every server's user data."""
    out = {}
    for tier, logical in (("app", "AppLaunchTemplate"), ("gitaly", "GitalyInstance")):
        out[logical] = user_data_vars(templates, tier, logical).get("METRICS_SCRAPED")
    return out


def test_without_the_node_nothing_changes_for_the_other_servers():
    templates = templates_for({})
    assert "prometheus" not in templates
    assert "MonitoringSecurityGroup" not in templates["security-groups"]["Resources"]
    assert set(scraped_values(templates).values()) == {None}
    assert "MonitoringInstanceType" not in templates["main"]["Parameters"]


def test_with_the_node_one_signalled_server_scrapes_what_the_stack_runs():
    templates = templates_for(POC)
    group = res(templates, "prometheus", "PrometheusAutoScalingGroup")
    assert (group["Properties"]["MinSize"], group["Properties"]["MaxSize"]) == ("1", "1")
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == 1
    values = user_data_vars(templates, "prometheus", "PrometheusLaunchTemplate")
    assert values["VPC_ID"] == {"Ref": "VpcId"}
    assert scrape.decode(values["SCRAPE_JOBS"]) == [
        ("gitlab-app", "node", 9100, ("AppAutoScalingGroup",)),
        ("gitlab-app", "workhorse", 9229, ("AppAutoScalingGroup",)),
        ("gitlab-app", "puma", 8083, ("AppAutoScalingGroup",)),
        ("gitlab-app", "sidekiq", 8082, ("AppAutoScalingGroup",)),   # the POC's Rails servers run Sidekiq
        ("gitaly", "node", 9100, ("GitalyInstance",)),
        ("gitaly", "gitaly", 9236, ("GitalyInstance",)),
    ]
    assert set(scraped_values(templates).values()) == {"true"}
    assert templates["main"]["Parameters"]["MonitoringInstanceType"]["Default"] == "c5.large"


def test_a_cluster_scrapes_sidekiq_praefect_and_every_gitaly_server():
    templates = templates_for(CLUSTER)
    jobs = scrape.decode(user_data_vars(templates, "prometheus", "PrometheusLaunchTemplate")["SCRAPE_JOBS"])
    by_role = {}
    for role, exporter, port, ids in jobs:
        by_role.setdefault(role, {})[exporter] = (port, ids)
    assert set(by_role["gitlab-app"]) == {"node", "workhorse", "puma"}    # Sidekiq has servers of its own
    assert by_role["gitlab-sidekiq"] == {"node": (9100, ("SidekiqAutoScalingGroup",)),
                                         "sidekiq": (8082, ("SidekiqAutoScalingGroup",))}
    assert by_role["praefect"]["praefect"] == (9652, ("PraefectAutoScalingGroup",))
    assert by_role["gitaly"]["gitaly"] == (9236, ("GitalyInstance", "Gitaly1Instance", "Gitaly2Instance",
                                                  "Gitaly3Instance"))
    for tier, logical in (("praefect", "PraefectLaunchTemplate"), ("app", "SidekiqLaunchTemplate"),
                          ("gitaly", "Gitaly2Instance")):
        assert user_data_vars(templates, tier, logical)["METRICS_SCRAPED"] == "true"
    assert templates["main"]["Parameters"]["MonitoringInstanceType"]["Default"] == "c5.xlarge"


def monitoring_rules(templates) -> tuple[set, set]:
    """(ingress into other groups from the monitoring group, egress of the monitoring group)."""
    resources = templates["security-groups"]["Resources"]
    monitoring = {"Fn::GetAtt": ["MonitoringSecurityGroup", "GroupId"]}
    ingress = {(r["Properties"]["GroupId"]["Fn::GetAtt"][0], r["Properties"]["FromPort"], r["Properties"]["ToPort"])
               for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"
               and r["Properties"].get("SourceSecurityGroupId") == monitoring}
    egress = {(r["Properties"].get("DestinationSecurityGroupId", {}).get("Fn::GetAtt", [r["Properties"].get("CidrIp")])[0],
               r["Properties"]["FromPort"]) for r in resources.values()
              if r["Type"] == "AWS::EC2::SecurityGroupEgress" and r["Properties"]["GroupId"] == monitoring}
    return ingress, egress


def test_the_security_groups_allow_exactly_monitoring_to_each_exporter():
    ingress, egress = monitoring_rules(templates_for(CLUSTER))
    expected = {("AppSecurityGroup", p) for p in (9100, 9229, 8083)} | \
        {("SidekiqSecurityGroup", p) for p in (9100, 8082)} | \
        {("GitalySecurityGroup", p) for p in (9100, 9236)} | {("PraefectSecurityGroup", p) for p in (9100, 9652)}
    assert {(g, low) for g, low, high in ingress} == expected
    assert all(low == high for _, low, high in ingress)
    assert egress == expected | {("0.0.0.0/0", 443), ("0.0.0.0/0", 80)}
    inbound = [r for r in templates_for(CLUSTER)["security-groups"]["Resources"].values()
               if r["Type"] == "AWS::EC2::SecurityGroupIngress"
               and r["Properties"]["GroupId"] == {"Fn::GetAtt": ["MonitoringSecurityGroup", "GroupId"]}]
    assert [r["Properties"]["FromPort"] for r in inbound] == [22]       # SSH from the bastions only


# -- gitlab-cfn check: passes, and fails on each one-line bug ----------------------------------------

@pytest.mark.parametrize("cfg", [POC, CLUSTER], ids=["poc", "10k-cluster"])
def test_the_checks_pass_with_the_scrape_flows_and_the_discovery_call(cfg):
    model = model_of(templates_for(cfg))
    result = flows.check(model)
    assert [f.message for f in result.findings] == []
    scrapes = {(f.destination.label.split(":")[1], f.port) for _, f in result.flows
               if f.source.endswith("PrometheusLaunchTemplate") and f.why.startswith("$SCRAPE_JOBS")}
    jobs = scrape.jobs(config.from_dict(cfg))
    assert len(scrapes) == len({(i, j.port) for j in jobs for i in j.logical_ids})
    checked = access.check(model)
    assert [f.message for f in checked.findings] == []
    for action in ("ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"):
        discovery = [d for d in checked.decisions if d.request.action == action]
        assert [(d.server.logical, d.allowed) for d in discovery] == [("PrometheusLaunchTemplate", True)]


def test_a_missing_ingress_rule_to_an_exporter_fails():
    def drop(t):
        del t["security-groups"]["Resources"]["AppFromMonitoringPumametrics"]
    one(changed(drop), "PrometheusLaunchTemplate", "AppLaunchTemplate:8083", "no ingress rule")


def test_a_missing_egress_rule_to_an_exporter_fails():
    def drop(t):
        del t["security-groups"]["Resources"]["MonitoringToGitalyGitalymetrics"]
    one(changed(drop), "PrometheusLaunchTemplate", "GitalyInstance:9236", "no egress rule")


def test_an_exporter_rule_on_the_wrong_port_fails():
    def narrow(t):
        rule = res(t, "security-groups", "PraefectFromMonitoringPraefectmetrics")["Properties"]
        rule["FromPort"] = rule["ToPort"] = 9653
    one(changed(narrow, CLUSTER), "PrometheusLaunchTemplate", "PraefectLaunchTemplate:9652", "no ingress rule")


def test_a_scrape_job_naming_no_server_of_the_stack_fails():
    def rename(t):
        values = user_data_vars(t, "prometheus", "PrometheusLaunchTemplate")
        values["SCRAPE_JOBS"] = values["SCRAPE_JOBS"].replace("GitalyInstance", "GitalyServer")
    one(changed(rename), "PrometheusLaunchTemplate", "GitalyServer is no server of the stack")


def test_a_malformed_scrape_job_fails():
    def garble(t):
        values = user_data_vars(t, "prometheus", "PrometheusLaunchTemplate")
        values["SCRAPE_JOBS"] = values["SCRAPE_JOBS"].replace(":9100:", ":node-port:", 1)
    one(changed(garble), "PrometheusLaunchTemplate", "is not role:exporter:port:LogicalId")


def test_without_the_discovery_grant_prometheus_is_denied():
    def drop(t):
        del t["prometheus"]["Resources"]["PrometheusDiscovery"]
    one(changed(drop), "PrometheusLaunchTemplate", "Prometheus EC2 service discovery",
        "ec2:DescribeInstances on * is denied")


def test_discovery_without_the_zones_is_denied():
    """Prometheus's EC2 discovery reads the region's zones too (prometheus/prometheus
    discovery/aws/ec2.go: refreshAZIDs, and newer releases' credential check at start)."""
    def instances_only(t):
        statement = res(t, "prometheus", "PrometheusDiscovery")["Properties"]["PolicyDocument"]["Statement"][0]
        assert sorted(statement["Action"]) == ["ec2:DescribeAvailabilityZones", "ec2:DescribeInstances"]
        statement["Action"] = ["ec2:DescribeInstances"]
    one(changed(instances_only), "PrometheusLaunchTemplate", "Prometheus EC2 service discovery",
        "ec2:DescribeAvailabilityZones on * is denied")


def test_discovery_granted_in_another_region_only_is_denied():
    def elsewhere(t):
        statement = res(t, "prometheus", "PrometheusDiscovery")["Properties"]["PolicyDocument"]["Statement"][0]
        statement["Condition"]["StringEquals"]["aws:RequestedRegion"] = "eu-west-1"
    one(changed(elsewhere), "PrometheusLaunchTemplate", "ec2:DescribeInstances on * is denied")


# -- the diagram and the estimate read the new server from the templates -------------------------

@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (make build)")
def test_the_diagram_and_the_estimate_show_the_monitoring_server(tmp_path):
    from gitlab_cfn.compile import compiler
    from gitlab_cfn.report import diagram, estimate, prices, stack

    build = tmp_path / "build"
    compiler.write_build(config.from_dict({"size": "3k", "monitoring": {"node": True}}), build)
    # A 3k build with the monitoring server is one whose edges Graphviz's spline router gives up on.
    path, dot = diagram.render(stack.load(build), tmp_path / "architecture.svg", fmt="svg")
    assert "PrometheusAutoScalingGroup" in dot and "[prometheus]" in dot
    assert path.read_text().startswith("<?xml")
    model = diagram.build_model(stack.load(build))
    labels = {k: n.label.split("\n")[0] for k, n in model.nodes.items()}
    scraped = {labels[b]: sorted(ports) for (a, b), ports in model.edges.items()
               if labels.get(a) == "PrometheusAutoScalingGroup"}
    assert scraped == {"AppAutoScalingGroup": ["8083", "9100", "9229"], "SidekiqAutoScalingGroup": ["8082", "9100"],
                       "PraefectAutoScalingGroup": ["9100", "9652"],
                       **{f"Gitaly{n}Instance": ["9100", "9236"] for n in (1, 2, 3)}}
    priced = estimate.estimate(stack.load(build), prices.Prices("us-east-1"), estimate.load_assumptions())
    servers = [line for line in priced.lines if line.resource == "PrometheusAutoScalingGroup"]
    assert any("c5.large" in line.item for line in servers), [line.item for line in servers]


def test_without_the_agent_grant_its_boot_log_is_denied():
    def drop(t):
        del t["prometheus"]["Resources"]["PrometheusCloudWatchAgent"]
    one(changed(drop), "PrometheusLaunchTemplate", "CloudWatch agent (boot)", "logs:PutLogEvents", "is denied")
