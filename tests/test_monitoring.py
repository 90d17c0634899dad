"""Logs, metrics and alarms: the logs and monitoring tiers, the boot's CloudWatch agent
configuration (scripts/lib/cloudwatch.sh), and the fake agent control script that
checks it as the agent would.

Values that must agree are read from their source: the agent configuration is the one
the boot library writes (run with bash), compared with the templates' policy and alarms.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import props
from gitlab_cfn.compile import catalog, compiler, config
from gitlab_cfn.compile.observability import (
    LOG_FAMILIES,
    RETENTION_DAYS,
    ROLE_FAMILIES,
    log_group_logical_id,
)
from gitlab_cfn.operate.deploy import check_params

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
FAKE = REPO / "tests" / "support" / "fakebin" / "amazon-cloudwatch-agent-ctl.py"
PREFIX = "/gitlab-cfn/gitlab-production/0a1b2c3d"


def bash(script: str, env: dict | None = None, root: Path | None = None) -> subprocess.CompletedProcess:
    """The boot libraries sourced by bash, then ``script``."""
    program = f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/cloudwatch.sh'}\n{script}\n"
    full_env = {"PATH": os.environ["PATH"], "AWS_REGION": "eu-west-1", "LOG_GROUP_PREFIX": PREFIX,
                **({"GITLAB_CFN_ROOT": str(root)} if root else {}), **(env or {})}
    return subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=full_env, timeout=60)


def agent_config(role: str) -> dict:
    done = bash(f"cloudwatch_config {role}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fake_ctl(root: Path) -> Path:
    """The fake control script where the image has the agent's, under a scratch root."""
    path = root / "opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path[:0] = [{str(FAKE.parent)!r}, "
                    f"{str(REPO / 'templates_src')!r}]\n" + FAKE.read_text())
    path.chmod(0o755)
    return path


def ctl(config_path: Path, *extra: str, prefix: str = PREFIX, log: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOG_GROUP_PREFIX": prefix, "PYTHONPATH": str(REPO / "templates_src")}
    if log:
        env["GITLAB_CFN_FAKES_LOG"] = str(log)
    return subprocess.run([sys.executable, str(FAKE), "-a", "fetch-config", "-m", "ec2", "-s",
                           "-c", f"file:{config_path}", *extra], capture_output=True, text=True, env=env, timeout=60)


# -- the boot library and the compile side agree ----------------------------------------------

def test_the_boot_library_ships_the_families_and_files_of_observability():
    for family, paths in LOG_FAMILIES.items():
        done = bash(f"cloudwatch_log_files {family}")
        assert done.returncode == 0 and tuple(done.stdout.split()) == paths, family
    for role, families in ROLE_FAMILIES.items():
        done = bash(f"cloudwatch_role_families {role}")
        assert done.returncode == 0 and tuple(done.stdout.split()) == families, role
    assert bash("cloudwatch_log_files nosuch").returncode != 0
    assert bash("cloudwatch_role_families bastion").returncode != 0


@pytest.mark.parametrize("role", sorted(ROLE_FAMILIES))
def test_each_role_config_is_accepted_by_the_agent_check(tmp_path, role):
    cfg = agent_config(role)
    files = cfg["logs"]["logs_collected"]["files"]["collect_list"]
    assert [(e["file_path"], e["log_group_name"]) for e in files] == [
        (path, f"{PREFIX}/{family}") for family in ROLE_FAMILIES[role] for path in LOG_FAMILIES[family]]
    assert cfg["metrics"]["namespace"] == "gitlab-cfn/gitlab-production"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    done = ctl(path, log=tmp_path / "fakes.log")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "fakes.log").read_text())["action"] == "fetch-config"


def _refused(tmp_path, cfg, *extra, prefix=PREFIX) -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    done = ctl(path, *extra, prefix=prefix)
    assert done.returncode != 0
    return done.stderr


def test_the_agent_check_refuses_what_the_agent_refuses(tmp_path):
    good = agent_config("gitlab-app")
    entry = good["logs"]["logs_collected"]["files"]["collect_list"][0]
    # A misspelt key: the agent's collect_list items are closed (additionalProperties false).
    bad = json.loads(json.dumps(good))
    bad["logs"]["logs_collected"]["files"]["collect_list"][0] = {**entry, "log_group_nam": "x"}
    assert "log_group_nam" in _refused(tmp_path, bad)
    # A retention the agent's enum (CloudWatch's values) does not have.
    bad = json.loads(json.dumps(good))
    bad["logs"]["logs_collected"]["files"]["collect_list"][0] = {**entry, "retention_in_days": 45}
    assert "45 is not one of" in _refused(tmp_path, bad)
    # An interval out of the agent's range, a timezone it does not know.
    bad = json.loads(json.dumps(good))
    bad["agent"]["metrics_collection_interval"] = 0
    assert "metrics_collection_interval" in _refused(tmp_path, bad)
    bad = json.loads(json.dumps(good))
    bad["logs"]["logs_collected"]["files"]["collect_list"][0] = {**entry, "timezone": "CET"}
    assert "'CET' is not one of" in _refused(tmp_path, bad)
    # A file GitLab does not write there (Rails logs are under gitlab-rails/).
    bad = json.loads(json.dumps(good))
    bad["logs"]["logs_collected"]["files"]["collect_list"][0] = {
        **entry, "file_path": "/var/log/gitlab/rails/production_json.log"}
    assert "not a log GitLab or cloud-init writes" in _refused(tmp_path, bad)
    # Another stack's groups, or a namespace the agent's policy does not allow.
    assert "not one of the stack's groups" in _refused(tmp_path, good, prefix="/gitlab-cfn/other/0a1b2c3d")
    bad = json.loads(json.dumps(good))
    bad["metrics"]["namespace"] = "CWAgent"
    assert "the policy allows gitlab-cfn/gitlab-production only" in _refused(tmp_path, bad)
    # An option the control script does not have.
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(good))
    assert ctl(path, "-x").returncode != 0


def test_configure_writes_the_config_and_loads_it_with_the_control_script(tmp_path):
    fake_ctl(tmp_path)
    log = tmp_path / "fakes.log"
    done = bash("configure_cloudwatch_agent gitaly", root=tmp_path,
                env={"GITLAB_CFN_FAKES_LOG": str(log), "PYTHONPATH": str(REPO / "templates_src")})
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json").read_text())
    assert written == agent_config("gitaly")
    assert json.loads(log.read_text())["config"] == f"{tmp_path}/opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json"
    assert "metrics to gitlab-cfn/gitlab-production" in done.stderr


def test_configure_without_the_agent_installed_fails_in_one_line(tmp_path):
    done = bash("configure_cloudwatch_agent gitaly", root=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "the CloudWatch agent is not installed" in line


# -- the templates ---------------------------------------------------------------------------

def test_a_kept_encrypted_log_group_per_family(default):
    resources = default["logs"]["Resources"]
    groups = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert sorted(groups) == sorted(log_group_logical_id(f) for f in LOG_FAMILIES)
    for family in LOG_FAMILIES:
        group = groups[log_group_logical_id(family)]
        assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == "Retain"
        p = group["Properties"]
        assert p["KmsKeyId"] == {"Ref": "KmsKeyArn"}
        assert p["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert p["LogGroupName"]["Fn::Sub"][0] == "${Prefix}/" + family
    prefix = default["logs"]["Outputs"]["LogGroupPrefix"]["Value"]
    assert prefix["Fn::Join"][1][0] == {"Fn::Sub": "/gitlab-cfn/${ParentStackName}"}


def test_retention_takes_only_cloudwatch_values(default):
    spec = default["main"]["Parameters"]["LogRetentionDays"]
    assert spec["AllowedValues"] == list(RETENTION_DAYS) and spec["Type"] == "Number"
    template = default["main"]
    assert not [p for p in check_params(template, {"LogRetentionDays": "400"}) if p.startswith("LogRetentionDays")]
    (problem,) = [p for p in check_params(template, {"LogRetentionDays": "45"}) if p.startswith("LogRetentionDays")]
    assert "1, 3, 5, 7, 14, 30" in problem


def test_alarm_email_is_an_address_or_empty(default):
    spec = default["main"]["Parameters"]["AlarmEmail"]
    pattern = re.compile(spec["AllowedPattern"])
    for good in ("", "ops@example.com", "first.last+gitlab@mail.example.co.uk"):
        assert pattern.fullmatch(good), good
    for bad in ("ops", "ops@", "@example.com", "ops@example", "ops example@example.com", "ops@-x.com"):
        assert not pattern.fullmatch(bad), bad
    (problem,) = [p for p in check_params(default["main"], {"AlarmEmail": "not-an-address"})
                  if p.startswith("AlarmEmail")]
    assert "e-mail address" in problem


def test_the_key_lets_cloudwatch_logs_encrypt_only_the_stack_groups_and_alarms_use_the_topic(default):
    statements = {s["Sid"]: s for s in props(default["storage"], "DataKey")["KeyPolicy"]["Statement"]}
    logs = statements["CloudWatchLogsForStackGroups"]
    assert logs["Principal"] == {"Service": [{"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}]}
    assert logs["Condition"] == {"StringLike": {"kms:EncryptionContext:aws:logs:arn": {"Fn::Sub": (
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/gitlab-cfn/${ParentStackName}/*")}}}
    assert "kms:ScheduleKeyDeletion" not in logs["Action"] and "kms:PutKeyPolicy" not in logs["Action"]
    alarms = statements["CloudWatchAlarmsToStackTopic"]
    assert alarms["Principal"] == {"Service": ["cloudwatch.amazonaws.com"]}
    assert sorted(alarms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def _agent_statements(template, logical_id):
    return {s["Sid"]: s for s in props(template, logical_id)["PolicyDocument"]["Statement"]}


def test_the_agent_may_write_only_its_stack_logs_and_metrics(default):
    app = _agent_statements(default["logs"], "AppCloudWatchAgent")
    gitaly = _agent_statements(default["gitaly"], "GitalyCloudWatchAgent")
    assert app == gitaly
    assert props(default["logs"], "AppCloudWatchAgent")["Roles"] == [{"Ref": "InstanceRoleName"}]
    assert props(default["gitaly"], "GitalyCloudWatchAgent")["Roles"] == [{"Ref": "GitalyRole"}]
    actions = {a for s in app.values() for a in s["Action"]}
    assert actions == {"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents",
                       "cloudwatch:PutMetricData"}
    group = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/gitlab-cfn/${ParentStackName}/*"
    assert app["StreamsInStackGroups"]["Resource"] == [{"Fn::Sub": group}]
    # The namespace the boot writes its metrics to is the one the condition allows.
    condition = app["PutStackMetrics"]["Condition"]["StringEquals"]["cloudwatch:namespace"]
    assert condition == {"Fn::Sub": "gitlab-cfn/${ParentStackName}"}
    assert agent_config("gitaly")["metrics"]["namespace"] == condition["Fn::Sub"].replace(
        "${ParentStackName}", "gitlab-production")
    # Neither role keeps the broad managed policy (CreateLogGroup, PutMetricData anywhere).
    for template, role in ((default["storage"], "InstanceRole"), (default["gitaly"], "GitalyRole")):
        arns = [a["Fn::Sub"] for a in props(template, role)["ManagedPolicyArns"]]
        assert not any("CloudWatchAgentServerPolicy" in a for a in arns), role


def test_servers_boot_after_the_log_groups_exist(default):
    main = default["main"]["Resources"]
    # The servers' user data carries the groups' id (lib/cloudwatch.sh puts the prefix together).
    for stack in ("AppStack", "GitalyStack"):
        assert main[stack]["Properties"]["Parameters"]["LogGroupId"] == {
            "Fn::GetAtt": ["LogsStack", "Outputs.LogGroupId"]}, stack
    grant = default["logs"]["Resources"]["AppCloudWatchAgent"]
    assert sorted(grant["DependsOn"]) == sorted(log_group_logical_id(f) for f in LOG_FAMILIES)


def test_every_alarm_notifies_the_encrypted_topic(default):
    resources = default["monitoring"]["Resources"]
    topic = resources["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "KmsKeyArn"}
    assert topic["Subscription"] == {"Fn::If": ["AlarmEmailGiven", [
        {"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}], {"Ref": "AWS::NoValue"}]}
    alarms = {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert sorted(alarms) == sorted([
        "LoadBalancerUnhealthyAlarm", "LoadBalancer5xxAlarm", "AppInServiceAlarm", "DatabaseCpuAlarm",
        "DatabaseStorageAlarm", "CacheMemoryAlarm", "CacheEvictionsAlarm", "GitalyDiskAlarm", "BackupAlarm"])
    for lid, p in alarms.items():
        assert p["AlarmActions"] == p["OKActions"] == [{"Ref": "AlarmTopic"}], lid


def test_the_gitaly_disk_alarm_names_the_metric_the_agent_publishes(default):
    alarm = props(default["monitoring"], "GitalyDiskAlarm")
    cfg = agent_config("gitaly")
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    # The dimension set is one the agent aggregates by; the disk plugin adds path.
    assert sorted(dims) in [sorted(a) for a in cfg["metrics"]["aggregation_dimensions"]]
    disk = cfg["metrics"]["metrics_collected"]["disk"]
    assert dims["Role"] == disk["append_dimensions"]["Role"] == "gitaly"
    assert dims["Stack"] == {"Ref": "ParentStackName"}
    assert dims["path"] in disk["resources"] and disk["drop_device"] is True
    # The agent names the disk plugin's used_percent disk_used_percent.
    assert alarm["MetricName"] == "disk_" + "used_percent" and "used_percent" in disk["measurement"]
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}


def test_the_alarms_name_the_stack_resources(default):
    main = default["main"]["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    assert main["LoadBalancerName"] == {"Fn::GetAtt": ["AppStack", "Outputs.LoadBalancerName"]}
    assert main["DatabaseInstanceId"] == {"Fn::GetAtt": ["DatabaseStack", "Outputs.DatabaseInstanceId"]}
    assert main["RedisReplicationGroupId"] == {"Fn::GetAtt": ["CacheStack", "Outputs.RedisReplicationGroupId"]}
    assert main["AutoScalingGroupName"] == {"Fn::GetAtt": ["AppStack", "Outputs.AutoScalingGroupName"]}
    assert props(default["app"], "LoadBalancer") is not None
    assert default["app"]["Outputs"]["LoadBalancerName"]["Value"] == {"Ref": "LoadBalancer"}
    assert default["database"]["Outputs"]["DatabaseInstanceId"]["Value"] == {"Ref": "Database"}
    assert default["cache"]["Outputs"]["RedisReplicationGroupId"]["Value"] == {"Ref": "RedisReplicationGroup"}


def test_the_dashboard_is_valid_json_naming_every_alarm(default):
    body, values = props(default["monitoring"], "Dashboard")["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", body))
    params = set(default["monitoring"]["Parameters"])
    alarms = {lid for lid, r in default["monitoring"]["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {n for n in names if n.endswith(".Arn")} == {f"{a}.Arn" for a in alarms}
    assert names - {f"{a}.Arn" for a in alarms} <= params | set(values) | {"AWS::Region"}
    filled = re.sub(r"\$\{[A-Za-z0-9:.]+\}", "x", body)
    widgets = json.loads(filled)["widgets"]
    assert len(widgets) == 9 and widgets[0]["type"] == "alarm"


def test_the_builds_of_every_variant_wire_the_new_tiers():
    for cfg in ({}, {"az_count": 3}, {"bastions": False}):
        names = list(compiler.compile_data(config.from_dict(cfg)))
        assert "logs.template.yaml" in names and "monitoring.template.yaml" in names
    assert "LogRetentionDays" in catalog.parameters(config.BuildConfig())


def test_bad_operations_parameters_exit_2_before_anything_is_sent(tmp_path):
    """The CLI: a retention CloudWatch does not offer, a sender that is neither an address nor a
    domain, a copy target that is not a backup vault: exit 2, each named on its line, nothing sent."""
    from test_cli import EXE

    out = tmp_path / "build"
    compiler.write_build(config.BuildConfig(), out)
    params = tmp_path / "p.yaml"
    params.write_text("LogRetentionDays: 45\nEmailSender: gitlab@\nBackupCopyVaultArn: my-dr-vault\n")
    # An endpoint nothing listens on: any AWS call would fail with exit 1, not 2.
    result = subprocess.run([EXE, "deploy", "--build", str(out), "--stack-name", "x", "--region", "eu-west-1",
                             "--params", str(params), "--endpoint-url", "http://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert result.returncode == 2, result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith("gitlab-cfn: error: ") and first.endswith("parameter problems:")
    named = {line.strip().split(":", 1)[0] for line in rest}
    assert {"LogRetentionDays", "EmailSender", "BackupCopyVaultArn"} <= named, rest
    (retention,) = [line for line in rest if line.strip().startswith("LogRetentionDays:")]
    assert "45" in retention and "3653" in retention


def test_a_cluster_has_a_disk_alarm_per_gitaly_server_and_the_agent_on_every_role():
    from conftest import templates_for

    t = templates_for({"size": "10k", "gitaly": {"keep_single_server": True}})
    alarms = {lid: r["Properties"] for lid, r in t["monitoring"]["Resources"].items()
              if r["Type"] == "AWS::CloudWatch::Alarm" and lid.endswith("DiskAlarm")}
    assert sorted(alarms) == ["Gitaly1DiskAlarm", "Gitaly2DiskAlarm", "Gitaly3DiskAlarm", "GitalyDiskAlarm"]
    main = t["main"]["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    for lid, alarm in alarms.items():
        prefix = lid.removesuffix("DiskAlarm")
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims["InstanceId"] == {"Ref": f"{prefix}InstanceId"}
        assert main[f"{prefix}InstanceId"] == {"Fn::GetAtt": ["GitalyStack", f"Outputs.{prefix}InstanceId"]}
    # Without the kept server, the cluster nodes only.
    alone = templates_for({"size": "10k"})["monitoring"]["Resources"]
    assert sorted(lid for lid in alone if lid.endswith("DiskAlarm")) == ["Gitaly1DiskAlarm", "Gitaly2DiskAlarm",
                                                                       "Gitaly3DiskAlarm"]
    # The agent's grant on the Sidekiq role, on Praefect's, and on the Gitaly servers' (one role).
    assert t["logs"]["Resources"]["AppCloudWatchAgent"]["Properties"]["Roles"] == [
        {"Ref": "InstanceRoleName"}, {"Ref": "SidekiqRoleName"}]
    assert t["praefect"]["Resources"]["PraefectCloudWatchAgent"]["Properties"]["Roles"] == [{"Ref": "PraefectRole"}]
    assert "PraefectCloudWatchAgent" in t["praefect"]["Resources"]["PraefectAutoScalingGroup"]["DependsOn"]
    for n in (1, 2, 3):
        node = t["gitaly"]["Resources"][f"Gitaly{n}Instance"]
        assert "GitalyCloudWatchAgent" in node["DependsOn"]
        assert node["Properties"]["IamInstanceProfile"] == {"Ref": "GitalyInstanceProfile"}
    for tier in ("storage", "praefect"):
        for r in t[tier]["Resources"].values():
            if r["Type"] == "AWS::IAM::Role":
                assert not any("CloudWatchAgentServerPolicy" in str(a) for a in r["Properties"].get("ManagedPolicyArns", []))


def test_the_agent_check_refuses_aggregation_sets_the_agent_would_never_publish(tmp_path):
    """The real agent adds an aggregation set to a metric only when the metric has all of its
    dimensions and more (plugins/outputs/cloudwatch/cloudwatch.go, ProcessRollup); any other
    set is skipped silently, so an alarm on it never gets data. The fake refuses it."""
    good = agent_config("gitaly")
    rollups = good["metrics"]["aggregation_dimensions"]
    # A misspelt dimension: the schema takes any string.
    bad = json.loads(json.dumps(good))
    bad["metrics"]["aggregation_dimensions"] = [*rollups[:-1], ["InstanceId", "Stack", "Role", "Path"]]
    assert "['InstanceId', 'Stack', 'Role', 'Path'] is published for no metric" in _refused(tmp_path, bad)
    # As many dimensions as the disk metric has (device dropped, mode always, no host with
    # append_dimensions): the agent skips it.
    bad = json.loads(json.dumps(good))
    bad["metrics"]["aggregation_dimensions"] = [["InstanceId", "Stack", "Role", "fstype", "path"]]
    assert "is published for no metric" in _refused(tmp_path, bad)
    # Without drop_device the disk metric has one more dimension, and that set is published.
    bad["metrics"]["metrics_collected"]["disk"]["drop_device"] = False
    path = tmp_path / "with-device.json"
    path.write_text(json.dumps(bad))
    # (A loaded configuration is recorded: in the test's own log, never this machine's /var/log.)
    assert ctl(path, log=tmp_path / "fakes.log").returncode == 0
    # Each set the boot writes is published for some metric of every role that ships metrics.
    for role in sorted(ROLE_FAMILIES):
        cfg = agent_config(role)
        path = tmp_path / f"{role}.json"
        path.write_text(json.dumps(cfg))
        assert ctl(path, log=tmp_path / "fakes.log").returncode == 0, role
    assert len((tmp_path / "fakes.log").read_text().splitlines()) == 1 + len(ROLE_FAMILIES)


def test_the_per_server_disk_alarm_names_a_dimension_set_the_agent_publishes():
    cfg = agent_config("gitaly")
    assert ["InstanceId", "Stack", "Role", "path"] in cfg["metrics"]["aggregation_dimensions"]
    assert cfg["metrics"]["append_dimensions"] == {"InstanceId": "${aws:InstanceId}"}
