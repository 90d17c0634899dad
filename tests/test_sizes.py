"""``size:``: GitLab's reference architectures as build defaults.

Every size with 2 and 3 AZs builds within CloudFormation's limits, with the counts and
instance types of the size table (read from ``sizes.SIZES``, the table the docs show);
the contradictions a config can hold are refused naming the key; the templates of every
size lint and pass the IAM analysis (checkov runs once, on the ``cluster`` variant of
conftest); the move between sizes is checked by the replacement guard.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time

import pytest
from conftest import resources, templates_for
from gitlab_cfn.compile import compiler, config, sizes, userdata
from gitlab_cfn.compile.tiers.praefect import PRAEFECT_PORT
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.verify import gate, lint
from gitlab_cfn.verify.replacement import diff_builds
from test_cli import EXE as GITLAB_CFN

SIZES = list(sizes.SIZES)
AZS = (2, 3)
# CloudFormation's quotas per template (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html):
# resources, parameters, outputs, and the body of a template given by S3 URL (bytes).
LIMITS = {"resources": 500, "parameters": 200, "outputs": 200, "body": 1_000_000}


def built(size: str, az: int, **more) -> dict[str, dict]:
    return templates_for({"size": size, "az_count": az, **more})


def param_default(t: dict, tier: str, name: str):
    return t[tier]["Parameters"][name]["Default"]


def groups(t: dict) -> dict[str, dict]:
    return {lid: r["Properties"] for tier in t.values()
            for lid, r in resources(tier, "AWS::AutoScaling::AutoScalingGroup").items()}


def gitaly_servers(t: dict) -> list[str]:
    return sorted(resources(t["gitaly"], "AWS::EC2::Instance"))


@pytest.mark.parametrize("az", AZS)
@pytest.mark.parametrize("size", SIZES)
def test_each_size_builds_what_its_row_of_the_table_says(size, az):
    row = sizes.SIZES[size]
    t = built(size, az)
    asg = groups(t)
    # Rails
    assert int(asg["AppAutoScalingGroup"]["MinSize"]) == row.rails[0]
    assert param_default(t, "main", "AppInstanceType") == row.rails[1]
    # Sidekiq on its own group, and the Rails servers told to run none.
    assert int(asg["SidekiqAutoScalingGroup"]["MinSize"]) == row.sidekiq[0]
    assert param_default(t, "main", "SidekiqInstanceType") == row.sidekiq[1]
    assert _preamble(t, "app", "AppLaunchTemplate")["RUN_SIDEKIQ"] == "false"
    # PostgreSQL
    assert param_default(t, "main", "DBInstanceClass") == row.db_class == sizes.RDS_CLASS_OF[row.postgres]
    (db,) = resources(t["database"], "AWS::RDS::DBInstance").values()
    assert db["Properties"]["MultiAZ"] is True
    # Redis: one group, or cache and persistent groups from 10k; two nodes each.
    redis = resources(t["cache"], "AWS::ElastiCache::ReplicationGroup")
    assert sorted(redis) == (["RedisCacheReplicationGroup", "RedisReplicationGroup"] if row.separate_cache
                             else ["RedisReplicationGroup"])
    assert {r["Properties"]["NumCacheClusters"] for r in redis.values()} == {sizes.CACHE_NODES}
    assert param_default(t, "main", "CacheNodeType") == row.cache_node_type
    # Gitaly: one server, or a cluster of the table's count behind Praefect.
    assert param_default(t, "main", "GitalyInstanceType") == row.gitaly[1]
    if row.cluster:
        assert gitaly_servers(t) == [f"Gitaly{n}Instance" for n in range(1, row.gitaly[0] + 1)]
        assert int(asg["PraefectAutoScalingGroup"]["MinSize"]) == row.praefect[0]
        assert param_default(t, "main", "PraefectInstanceType") == row.praefect[1]
    else:
        assert gitaly_servers(t) == ["GitalyInstance"] and row.gitaly[0] == 1
        assert "PraefectAutoScalingGroup" not in asg


@pytest.mark.parametrize("az", AZS)
@pytest.mark.parametrize("size", ["poc", *SIZES])
def test_each_size_stays_within_cloudformation_limits_and_labels_its_parameters(size, az):
    t = built(size, az)
    for tier, template in t.items():
        text = compiler.render(template)
        counts = {"resources": len(template["Resources"]), "parameters": len(template.get("Parameters", {})),
                  "outputs": len(template.get("Outputs", {})), "body": len(text.encode())}
        for what, count in counts.items():
            assert count <= LIMITS[what], (tier, what, count)
    interface = t["main"]["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for g in interface["ParameterGroups"] for p in g["Parameters"]]
    assert sorted(grouped) == sorted(t["main"]["Parameters"]) == sorted(interface["ParameterLabels"])


def test_the_proof_of_concept_is_the_build_without_a_size():
    assert templates_for({"size": "poc"}) == templates_for({})
    assert config.from_dict({"size": "poc"}) == config.BuildConfig()


@pytest.mark.parametrize("az", AZS)
@pytest.mark.parametrize("size", [s for s in SIZES if sizes.SIZES[s].cluster])
def test_cluster_servers_spread_over_the_azs_with_volumes_and_pinned_images_of_their_own(size, az):
    t = built(size, az)
    g = t["gitaly"]["Resources"]
    nodes = sizes.SIZES[size].gitaly[0]
    subnets = [g[f"Gitaly{n}Instance"]["Properties"]["SubnetId"]["Ref"] for n in range(1, nodes + 1)]
    assert subnets == [f"PrivateSubnet{(n - 1) % az + 1}Id" for n in range(1, nodes + 1)]
    assert len(set(subnets)) == min(nodes, az)
    for n in range(1, nodes + 1):
        node = g[f"Gitaly{n}Instance"]["Properties"]
        assert node["ImageId"] == {"Ref": f"Gitaly{n}AmiId"}
        (mount,) = node["Volumes"]
        volume = g[mount["VolumeId"]["Ref"]]
        assert volume["DeletionPolicy"] == volume["UpdateReplacePolicy"] == "Snapshot"
        assert volume["Properties"]["Encrypted"] is True and volume["Properties"]["VolumeType"] == "gp3"
        assert node["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "GitalyLaunchTemplate"}
    # GitLab's IOPS guidance: at least 8,000 (an EBS volume's IOPS serve reads and writes).
    assert t["main"]["Parameters"]["GitalyNodeVolumeIops"]["Default"] >= 8000
    assert "GitalyVolumeIops" not in t["main"]["Parameters"]      # no single server: no parameter of its own
    # Never in a group that replaces them: no Gitaly server is launched by an Auto Scaling group.
    for props in groups(t).values():
        assert "Gitaly" not in json.dumps(props["LaunchTemplate"])


def test_praefect_sits_behind_an_internal_tcp_load_balancer():
    g = built("3k", 3)["praefect"]["Resources"]
    nlb = g["PraefectLoadBalancer"]["Properties"]
    assert (nlb["Type"], nlb["Scheme"]) == ("network", "internal")
    assert {"Key": "load_balancing.cross_zone.enabled", "Value": "true"} in nlb["LoadBalancerAttributes"]
    tg = g["PraefectTargetGroup"]["Properties"]
    assert (tg["Protocol"], tg["Port"], tg["HealthCheckProtocol"]) == ("TCP", PRAEFECT_PORT, "TCP")
    listener = g["PraefectListener"]["Properties"]
    assert (listener["Protocol"], listener["Port"]) == ("TCP", PRAEFECT_PORT)
    asg = g["PraefectAutoScalingGroup"]["Properties"]
    assert asg["TargetGroupARNs"] == [{"Ref": "PraefectTargetGroup"}]


def _sg_rules(t: dict) -> set[tuple[str, str, int]]:
    """(target group, source group, port) of every ingress rule between two groups."""
    found = set()
    for r in resources(t["security-groups"], "AWS::EC2::SecurityGroupIngress").values():
        p = r["Properties"]
        assert p["Description"]
        if "SourceSecurityGroupId" in p:
            found.add((p["GroupId"]["Fn::GetAtt"][0], p["SourceSecurityGroupId"]["Fn::GetAtt"][0], p["FromPort"]))
    return found


def test_every_new_flow_has_its_rule_and_nothing_more():
    poc = _sg_rules(templates_for({}))
    cluster = _sg_rules(built("3k", 2))
    new = cluster - poc
    assert new == {
        ("InternalLoadBalancerSecurityGroup", "AppSecurityGroup", 2305),
        ("InternalLoadBalancerSecurityGroup", "SidekiqSecurityGroup", 2305),
        ("PraefectSecurityGroup", "InternalLoadBalancerSecurityGroup", 2305),
        ("GitalySecurityGroup", "PraefectSecurityGroup", 8075),
        ("GitalySecurityGroup", "GitalySecurityGroup", 8075),
        ("DatabaseSecurityGroup", "PraefectSecurityGroup", 5432),
        ("DatabaseSecurityGroup", "SidekiqSecurityGroup", 5432),
        ("CacheSecurityGroup", "SidekiqSecurityGroup", 6379),
        ("SidekiqSecurityGroup", "BastionSecurityGroup", 22),
        ("PraefectSecurityGroup", "BastionSecurityGroup", 22),
    }
    # The application servers reach Gitaly through Praefect only, unless the single server is kept.
    assert poc - cluster == {("GitalySecurityGroup", "AppSecurityGroup", 8075)}
    kept = _sg_rules(built("3k", 2, gitaly={"keep_single_server": True}))
    assert ("GitalySecurityGroup", "AppSecurityGroup", 8075) in kept
    for r in resources(built("3k", 2)["security-groups"], "AWS::EC2::SecurityGroupIngress").values():
        assert "CidrIp" not in r["Properties"] or r["Properties"]["GroupId"]["Fn::GetAtt"][0] in (
            "LoadBalancerSecurityGroup", "BastionSecurityGroup")


def _grants(t: dict) -> dict[str, tuple[set[str], set[str]]]:
    """IAM grant id -> (roles, resources it names), over every tier."""
    out = {}
    for template in t.values():
        for lid, r in resources(template, "AWS::IAM::Policy").items():
            p = r["Properties"]
            names = set()
            for s in p["PolicyDocument"]["Statement"]:
                for res in s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]:
                    names.add(json.dumps(res, sort_keys=True))
            out[lid] = ({json.dumps(x, sort_keys=True) for x in p["Roles"]}, names)
    return out


def test_each_cluster_secret_is_readable_by_the_roles_that_use_it_only():
    g = _grants(built("3k", 2))
    ref = lambda x: json.dumps({"Ref": x}, sort_keys=True)  # noqa: E731
    assert g["PraefectInternalTokenRead"] == ({ref("GitalyRole")}, {ref("PraefectInternalTokenSecret")})
    assert g["PraefectExternalTokenRead"] == ({ref("InstanceRoleName"), ref("SidekiqRoleName")},
                                              {ref("PraefectExternalTokenSecret")})
    assert g["PraefectSecretsRead"] == ({ref("PraefectRole")}, {
        ref("PraefectExternalTokenSecret"), ref("PraefectInternalTokenSecretArn"), ref("PraefectDatabaseSecret"),
        ref("DatabaseSecretArn")})
    # The cluster's Gitaly servers read the shell secret and the internal token, not the POC's token.
    assert g["GitalyTokenSecretRead"][1] == {ref("GitLabShellSecret")}
    own = _grants(built("3k", 2, praefect={"database": "own"}))
    assert ref("PraefectDatabaseMasterSecretArn") in own["PraefectSecretsRead"][1]
    assert ref("DatabaseSecretArn") not in own["PraefectSecretsRead"][1]


def test_sidekiq_has_a_role_of_its_own_without_the_secrets_it_does_not_use():
    t = built("2k", 2)
    g = _grants(t)
    ref = lambda x: json.dumps({"Ref": x}, sort_keys=True)  # noqa: E731
    sidekiq = ref("SidekiqRoleName")
    reads = {lid for lid, (roles, _) in g.items() if sidekiq in roles}
    assert reads == {"SidekiqSecretsRead", "SidekiqBootRead", "DatabaseSecretRead", "RedisAuthSecretRead",
                     "GitalyTokenSecretRead", "AppCloudWatchAgent"}
    assert g["SidekiqSecretsRead"][1] == {ref("RailsSecretsSecret")}
    assert sidekiq not in g["AppSecretsRead"][0] and sidekiq not in g["AppSecretsWrite"][0]
    data = t["app"]["Resources"]["SidekiqLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Arn": {"Ref": "SidekiqInstanceProfileArn"}}
    role = t["storage"]["Resources"]["SidekiqRole"]["Properties"]
    assert [p["PolicyName"] for p in role["Policies"]] == ["gitlab-object-storage", "gitlab-data-key"]


# -- the contract with the boot scripts: what each new role's preamble exports -------------------

def _preamble(t: dict, tier: str, lid: str) -> dict:
    res = t[tier]["Resources"][lid]["Properties"]
    data = res["LaunchTemplateData"]["UserData"] if "LaunchTemplateData" in res else res["UserData"]
    sub = data["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"]
    return {name: value for name, value in sub[1].items()}


COMMON = {"AWS_REGION", "CFN_STACK", "CFN_RESOURCE", "BOOT_ROLE", "BUNDLE_PARAMETER"}


def test_preambles_follow_the_contract_with_the_boot_scripts():
    t = built("10k", 3, gitaly={"keep_single_server": True})
    app = _preamble(t, "app", "AppLaunchTemplate")
    sidekiq = _preamble(t, "app", "SidekiqLaunchTemplate")
    assert (app["RUN_SIDEKIQ"], sidekiq["RUN_SIDEKIQ"]) == ("false", "true")
    assert (app["BOOT_ROLE"], sidekiq["BOOT_ROLE"]) == ("gitlab-app", "gitlab-sidekiq")
    assert set(app) - set(sidekiq) == {"HOST_KEYS_SECRET_ARN", "ROOT_PASSWORD_SECRET_ARN"}
    for values in (app, sidekiq):
        assert values["GITALY_STORAGE"] == "default" and values["GITALY2_STORAGE"] == "cluster"
        assert values["GITALY_ADDRESS"] == {"Ref": "GitalyAddress"}
        assert values["GITALY2_ADDRESS"] == {"Ref": "Gitaly2Address"}
        assert {"REDIS_CACHE_HOST", "REDIS_CACHE_PORT", "REDIS_CACHE_SECRET_ARN"} <= set(values)
    praefect = _preamble(t, "praefect", "PraefectLaunchTemplate")
    assert set(praefect) == COMMON | {
        "BUNDLE_SHA256", "DB_HOST", "DB_PORT", "DB_SECRET_ARN", "PRAEFECT_DB_NAME",
        "PRAEFECT_DB_SECRET_ARN", "PRAEFECT_EXTERNAL_SECRET_ARN", "PRAEFECT_INTERNAL_SECRET_ARN",
        "GITALY_NODES", "VIRTUAL_STORAGE", "LOG_GROUP_ID"}
    assert praefect["LOG_GROUP_ID"] == {"Ref": "LogGroupId"}
    assert praefect["VIRTUAL_STORAGE"] == "cluster" and praefect["PRAEFECT_DB_NAME"] == "praefect_production"
    nodes = praefect["GITALY_NODES"]["Fn::Sub"]
    assert nodes[0] == "gitaly-1=${Ip1},gitaly-2=${Ip2},gitaly-3=${Ip3}"
    assert nodes[1]["Ip2"] == {"Ref": "Gitaly2PrivateIp"}
    assert t["gitaly"]["Outputs"]["Gitaly2PrivateIp"]["Value"] == {"Fn::GetAtt": ["Gitaly2Instance", "PrivateIp"]}
    node = _preamble(t, "gitaly", "Gitaly2Instance")
    assert node["GITALY_STORAGE"] == "gitaly-2"
    assert node["GITALY_SECRET_ARN"] == {"Ref": "PraefectInternalTokenSecret"}
    # The kept single server's user data is the POC's, unchanged (a change would stop it).
    assert _preamble(t, "gitaly", "GitalyInstance") == _preamble(templates_for({}), "gitaly", "GitalyInstance")
    alone = _preamble(built("3k", 2), "praefect", "PraefectLaunchTemplate")
    assert alone["VIRTUAL_STORAGE"] == "default"


@pytest.mark.parametrize("role", ["gitlab-sidekiq", "praefect"])
def test_new_roles_user_data_fits_at_its_longest(role):
    t = built("50k", 3, gitaly={"nodes": 9, "keep_single_server": True})
    lid = {"gitlab-sidekiq": ("app", "SidekiqLaunchTemplate"), "praefect": ("praefect", "PraefectLaunchTemplate")}[role]
    worst = userdata.worst_size(role, {k: v for k, v in _preamble(t, *lid).items() if k != "BOOT_ROLE"})
    print(f"worst-case user data of {role}: {worst} bytes")
    # EC2's limit, with room for a few more variables.
    assert worst < userdata.MAX_BYTES - 4096, worst


# -- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, key", [
    ({"size": "3k", "gitaly": {"nodes": 2}}, "gitaly.nodes"),
    ({"gitaly": {"nodes": 2}}, "gitaly.nodes"),
    ({"size": "3k", "praefect": {"nodes": 2}}, "praefect.nodes"),
    ({"gitaly": {"nodes": 3}, "praefect": {"nodes": 1}}, "praefect.nodes"),
    ({"size": "5k", "app": {"instance_type": "t3.xlarge"}}, "app.instance_type"),
    ({"size": "3k", "praefect": {"instance_type": "t3a.large"}}, "praefect.instance_type"),
    ({"size": "2k", "database": {"instance_class": "db.t3.large"}}, "database.instance_class"),
    ({"size": "2k", "cache": {"node_type": "cache.t3.medium"}}, "cache.node_type"),
    ({"gitaly": {"keep_single_server": True}}, "gitaly.keep_single_server"),
    ({"size": "2k", "gitaly": {"keep_single_server": True}}, "gitaly.keep_single_server"),
    ({"size": "1k"}, "size"),
    ({"size": "3k", "gitaly": {"volume_iops": 70000}}, "gitaly.volume_iops"),
])
def test_contradictions_are_refused_naming_the_key(data, key):
    with pytest.raises(ConfigError) as raised:
        config.from_dict(data)
    message = str(raised.value)
    assert message.startswith(f"{key}: ") and "\n" not in message, message


def test_a_two_node_cluster_is_refused_on_the_command_line_with_nothing_written(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("size: 3k\ngitaly:\n  nodes: 2\n")
    run = subprocess.run([GITLAB_CFN, "build", "--config", str(cfg), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "gitlab-cfn: error: gitaly.nodes: a Gitaly Cluster needs at least 3 Gitaly servers whatever the "
        "number of AZs; use 1 (one server) or 3 to 9 (got 2)"]
    assert not (tmp_path / "out").exists()


def test_explicit_keys_override_the_size():
    cfg = config.from_dict({"size": "10k", "app": {"min_size": 4}, "gitaly": {"nodes": 5},
                            "cache": {"separate_cache": False}})
    assert (cfg.app.min_size, cfg.app.instance_type) == (4, "c5.9xlarge")
    assert (cfg.gitaly.nodes, cfg.gitaly.instance_type) == (5, "m5.4xlarge")
    assert cfg.cache.separate_cache is False and cfg.cache.node_type == "cache.m5.xlarge"
    t = templates_for({"size": "10k", "gitaly": {"nodes": 5}})
    assert gitaly_servers(t) == [f"Gitaly{n}Instance" for n in range(1, 6)]


# -- lint and the IAM analysis over every size ---------------------------------------------------

def test_every_template_of_every_size_lints_clean_and_passes_the_iam_analysis(tmp_path):
    """Each distinct template of every size × AZ count, once (the POC's are linted by
    test_lint): cfn-lint with the project's rules in one region, then the gate's IAM
    analysis and skip audit over each build (checkov: conftest's ``cluster`` variant)."""
    poc = {hashlib.sha256(text.encode()).hexdigest()
           for az in AZS for text in compiler.compile_templates(config.from_dict({"az_count": az})).values()}
    seen = set()
    findings = []
    for size in SIZES:
        for az in AZS:
            folder = tmp_path / f"{size}-{az}"
            compiler.write_build(config.from_dict({"size": size, "az_count": az}), folder)
            findings += [str(f) for f in gate.run_gate(folder, with_checkov=False).findings]
            for path in sorted((folder / "templates").iterdir()):
                text = path.read_text()
                digest = hashlib.sha256(text.encode()).hexdigest()
                if digest in poc or digest in seen:
                    continue
                seen.add(digest)
                findings += [f"{size}-{az}: {f}" for f in lint.lint_text(path.name, text, ("us-east-1",))]
    print(f"linted {len(seen)} distinct templates of {len(SIZES) * len(AZS)} builds")
    assert findings == []
    assert len(seen) > 30


# -- build time ----------------------------------------------------------------------------------

def test_every_size_and_az_count_builds_in_under_five_seconds():
    """Measured as this process's CPU time (the build's own cost; the wall clock of a shared
    machine also counts the other processes), both printed."""
    wall, cpu = time.perf_counter(), time.process_time()
    slowest = 0.0
    for size in ["poc", *SIZES]:
        for az in AZS:
            one = time.process_time()
            compiler.compile_templates(config.from_dict({"size": size, "az_count": az}))
            slowest = max(slowest, time.process_time() - one)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{len(SIZES) + 1} sizes x {len(AZS)} AZ counts: {cpu:.2f}s CPU ({wall:.2f}s wall), "
          f"slowest single build {slowest:.2f}s CPU")
    assert cpu < 5.0 and slowest < 1.0


# -- moving between sizes ------------------------------------------------------------------------

def _diff(tmp_path, old: dict, new: dict):
    compiler.write_build(config.from_dict(old), tmp_path / "old")
    compiler.write_build(config.from_dict(new), tmp_path / "new")
    return diff_builds(tmp_path / "old", tmp_path / "new")


def test_poc_to_a_cluster_deletes_the_gitaly_server_unless_it_is_kept(tmp_path):
    report = _diff(tmp_path, {}, {"size": "3k"})
    blocking = sorted(c.name for c in report if c.blocking)
    assert blocking == ["gitaly:GitalyDataVolume", "gitaly:GitalyInstance", "gitaly:GitalyTokenSecret"]
    kept = _diff(tmp_path, {}, {"size": "3k", "gitaly": {"keep_single_server": True}})
    # The backup selection names the new nodes' volumes: AWS Backup replaces a selection on any
    # change (its recovery points stay in the vault); nothing else is more than "may replace".
    assert [c.name for c in kept if c.blocking or c.action != "may replace"] == ["backup:BackupSelection"]
    assert not any(c.blocking or c.holds_data for c in kept)


def test_removing_a_cluster_server_is_refused(tmp_path):
    report = _diff(tmp_path, {"size": "3k", "gitaly": {"nodes": 4}}, {"size": "3k"})
    assert sorted(c.name for c in report if c.blocking) == ["gitaly:Gitaly4DataVolume", "gitaly:Gitaly4Instance"]


def test_growing_through_the_sizes_replaces_no_data(tmp_path):
    path = [{}, {"size": "2k"}, {"size": "3k", "gitaly": {"keep_single_server": True}},
            {"size": "5k", "gitaly": {"keep_single_server": True}}, {"size": "10k", "gitaly": {"keep_single_server": True}},
            {"size": "50k", "gitaly": {"keep_single_server": True}}]
    for n, (old, new) in enumerate(zip(path, path[1:])):
        report = _diff(tmp_path / str(n), old, new)
        assert [str(c) for c in report if c.holds_data] == [], (old, new)


def test_the_size_table_in_the_docs_is_the_code_s():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "sizes.md").read_text()
    assert sizes.table_markdown() in text
    assert sizes.SOURCE in text
    assert re.search(r"\b1k\b", text)


# The single server's volume settings: the parameters a POC stack was created with must stay
# valid (a deploy reuses their previous values) and its volume must not change type.
VOLUME_PARAMS = ("GitalyVolumeSize", "GitalyVolumeIops")


def _single_volume(t: dict) -> tuple[dict, dict]:
    volume = t["gitaly"]["Resources"]["GitalyDataVolume"]["Properties"]
    params = {name: {k: v for k, v in t["main"]["Parameters"][name].items() if k != "Description"}
              for name in VOLUME_PARAMS}
    return {k: v for k, v in volume.items() if k != "AvailabilityZone"}, params


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_the_single_gitaly_server_keeps_the_volume_the_poc_built(size, lean):
    extra = {"gitaly": {"volume_type": "gp3"}} if lean else {}
    kept = {"keep_single_server": True} if sizes.SIZES[size].cluster else {}
    poc = _single_volume(templates_for(extra))
    grown = _single_volume(templates_for({**extra, "size": size, "gitaly": {**extra.get("gitaly", {}), **kept}}))
    assert grown == poc
    if sizes.SIZES[size].cluster:   # the new cluster servers take the size's volume
        t = built(size, 2, gitaly=kept)
        node = t["gitaly"]["Resources"]["Gitaly1DataVolume"]["Properties"]
        assert (node["VolumeType"], node["Iops"]) == ("gp3", {"Ref": "GitalyNodeVolumeIops"})
        assert param_default(t, "main", "GitalyNodeVolumeIops") == sizes.GITALY_CLUSTER_IOPS


@pytest.mark.parametrize("kept", [False, True])
def test_the_cluster_s_gitaly_servers_are_updated_one_at_a_time(kept):
    """One GitalyInstanceType drives every server, and a type change stops and starts each:
    each server depends on the previous one, so CloudFormation never stops two at once."""
    extra = {"gitaly": {"keep_single_server": True, "nodes": 4}} if kept else {}
    g = built("3k", 3, **extra)["gitaly"]["Resources"]
    chain = (["GitalyInstance"] if kept else []) + [f"Gitaly{n}Instance" for n in range(1, 5 if kept else 4)]
    servers = sorted(lid for lid, r in g.items() if r["Type"] == "AWS::EC2::Instance")
    assert sorted(chain) == servers
    for before, after in zip(chain, chain[1:]):
        assert before in g[after]["DependsOn"], (before, after)
        assert [d for d in g[after]["DependsOn"] if d in servers] == [before]
    assert not [d for d in g[chain[0]].get("DependsOn", []) if d in servers]
