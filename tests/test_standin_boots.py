"""A stand-in deploy whose servers really boot, and whose CreationPolicies wait for them.

``gitlab-cfn deploy`` sends the built stack (without bastions: they install
packages from the internet) to a stand-in that honours ``CreationPolicy``
(``standin/signals.py``); ``support/ec2.py`` boots every instance it launches
from its own user data on the real-program harness (the bootstrap downloads
the bundle the deploy uploaded; real AWS CLI, PostgreSQL with TLS, blkid/mkfs
on a loop device), and the fake ``cfn-signal`` sends ``SignalResource``. So
``CREATE_COMPLETE`` means: Gitaly and each application server booted and said
so; a boot that fails fails the deploy, as in CloudFormation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from gitlab_cfn.compile import compiler, config, userdata
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.standin import StandIn

from support.boot_fixtures import boot_tools, postgres  # noqa: F401  (fixtures)
from support.disk import namespaces_available
from support.ec2 import Hypervisor
from test_cli import EXE
from test_deploy import _seed

REGION = "eu-west-1"
BUILD = {"bastions": False}
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# The TLS mode of GitLab's database connection (RDS has rds.force_ssl): a one-line bug the boot must fail on.
TLS_LINE = "gitlab_rails['db_sslmode'] = 'require'"

pytestmark = pytest.mark.skipif(namespaces_available() is not None, reason=f"{namespaces_available()}")


@pytest.fixture(scope="module")
def waiting_standin():
    """A stand-in of its own: it holds each resource with a CreationPolicy until signalled (90 s at most)."""
    os.environ["GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT"] = "90"
    try:
        server = StandIn().start()
    finally:
        del os.environ["GITLAB_CFN_STANDIN_SIGNAL_TIMEOUT"]
    yield server
    server.stop()


def build(out, scripts=None, monkeypatch=None):
    if scripts is not None:
        monkeypatch.setattr(userdata, "SCRIPTS_DIR", scripts)
    compiler.write_build(config.from_dict(BUILD), out)
    return out


def deploy(standin, build_dir, tmp_path, hypervisor_base, postgres):
    standin.reset()
    aws = Aws(endpoint_url=standin.endpoint)
    params = tmp_path / "params.json"
    # No bastions: no RemoteAccessCIDR.
    params.write_text(json.dumps({k: v for k, v in _seed(aws, REGION).items() if k != "RemoteAccessCIDR"}))
    hypervisor = Hypervisor(standin, postgres, hypervisor_base, REGION).start()
    try:
        result = subprocess.run([EXE, "deploy", "--build", str(build_dir), "--poll-seconds", "0.5",
                                 "--endpoint-url", standin.endpoint, "--stack-name", "gl", "--region", REGION,
                                 "--params", str(params)], capture_output=True, text=True, env=ENV, timeout=300)
    finally:
        hypervisor.stop()
    return aws, hypervisor, result


def stack_holding(cfn, logical_id: str) -> dict:
    """The stack (parent or nested) that holds the resource LOGICAL_ID."""
    for stack in cfn.describe_stacks()["Stacks"]:
        resources = cfn.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
        if any(r.get("LogicalResourceId") == logical_id for r in resources):
            return stack
    raise AssertionError(f"no stack holds {logical_id}")


def stack_events(cfn, logical_id: str) -> list[dict]:
    """The events of LOGICAL_ID in every stack (parent or nested), oldest first."""
    found = []
    for stack in cfn.describe_stacks()["Stacks"]:
        events = cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"]
        found += [e for e in events if e["LogicalResourceId"] == logical_id]
    return sorted(found, key=lambda e: e["Timestamp"])


def app_template(build_dir) -> dict:
    return yaml.safe_load((build_dir / "templates" / "app.template.yaml").read_text())


def test_the_stack_completes_from_its_servers_signals(waiting_standin, postgres, tmp_path, boot_tools):
    build_dir = build(tmp_path / "build")
    aws, hypervisor, result = deploy(waiting_standin, build_dir, tmp_path, tmp_path / "servers", postgres)
    assert result.returncode == 0, result.stderr[-3000:] + "\n".join(hypervisor.errors) + "".join(
        f"\n--- {b.instance_id} ({b.role}):\n{b.result.stderr[-2000:]}" for b in hypervisor.booted.values() if b.result)
    assert result.stderr.splitlines()[-1] == "stack gl: CREATE_COMPLETE"
    assert hypervisor.errors == []

    # Each server booted its user data to the end and signalled SUCCESS with its own instance id.
    group = app_template(build_dir)["Resources"]["AppAutoScalingGroup"]
    count = group["CreationPolicy"]["ResourceSignal"]["Count"]
    apps, (gitaly,) = hypervisor.of_role("gitlab-app"), hypervisor.of_role("gitaly")
    assert len(apps) == count == 2
    for booted, resource in [(b, "AppAutoScalingGroup") for b in apps] + [(gitaly, "GitalyInstance")]:
        assert booted.result.returncode == 0, booted.result.stderr[-3000:]
        (sent,) = booted.server.signals()
        assert (sent["resource"], sent["exit_code"], sent["sent"]["unique_id"], sent["sent"]["status"]) == \
            (resource, 0, booted.instance_id, "SUCCESS")
    # ... the instances the group launched, from the bundle the deploy uploaded.
    asg = aws.client("autoscaling", REGION).describe_auto_scaling_groups()["AutoScalingGroups"]
    (members,) = [[i["InstanceId"] for i in g["Instances"]] for g in asg]
    assert sorted(members) == [b.instance_id for b in apps]
    assert all("running gitlab-app.sh of bundle" in b.result.stderr for b in apps)
    # The real database: one schema load (the first server, under the lock), over TLS.
    assert postgres.query("SELECT count(*) FROM schema_migrations") == [["1"]]
    # Gitaly formatted its volume (a loop device at the EBS NVMe path) and listened.
    assert "formatting it" in gitaly.result.stderr and "Gitaly accepts connections" in gitaly.result.stderr

    # Completed after, and because of, the signals: the app stack's CREATE_COMPLETE follows the last one.
    cfn = aws.client("cloudformation", REGION)
    app_stack = stack_holding(cfn, "AppAutoScalingGroup")
    (done,) = [e for e in stack_events(cfn, app_stack["StackName"]) if e["ResourceStatus"] == "CREATE_COMPLETE"]
    last_signal = max(b.server.signals()[0]["sent"]["at"] for b in apps)
    assert done["Timestamp"].timestamp() >= last_signal


def test_a_boot_that_fails_fails_the_deploy_naming_the_signal(waiting_standin, postgres, tmp_path, boot_tools,
                                                             monkeypatch):
    scripts = tmp_path / "scripts"
    shutil.copytree(userdata.SCRIPTS_DIR, scripts)
    app = scripts / "gitlab-app.sh"
    assert app.read_text().count(TLS_LINE) == 1
    app.write_text(app.read_text().replace(TLS_LINE, TLS_LINE.replace("require", "disable")))
    build_dir = build(tmp_path / "build", scripts, monkeypatch)
    aws, hypervisor, result = deploy(waiting_standin, build_dir, tmp_path, tmp_path / "servers", postgres)

    assert result.returncode != 0
    # The deploy reports the group and CloudFormation's reason: the FAILURE signal.
    reason = "Received 1 FAILURE signal(s) out of 2. Unable to satisfy 100% MinSuccessfulInstancesPercent requirement"
    assert "AppAutoScalingGroup" in result.stderr and reason in result.stderr, result.stderr[-3000:]
    cfn = aws.client("cloudformation", REGION)
    # The parent names the app stack that failed (rolled back and deleted); its events name the group.
    embedded = [re.search(r"Embedded stack (\S+) was not successfully created: The following resource\(s\) "
                          r"failed to create: \[AppAutoScalingGroup\]", e.get("ResourceStatusReason", ""))
                for e in cfn.describe_stack_events(StackName="gl")["StackEvents"] if e["ResourceStatus"] == "CREATE_FAILED"]
    (app_stack,) = {m.group(1) for m in embedded if m}
    failed = [e for e in cfn.describe_stack_events(StackName=app_stack)["StackEvents"]
              if e["LogicalResourceId"] == "AppAutoScalingGroup" and e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["ResourceStatusReason"] for e in failed] == [reason]
    assert cfn.describe_stacks(StackName="gl")["Stacks"][0]["StackStatus"] in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED")
    # Why: PostgreSQL refused the connection without TLS (pg_hba.conf: hostssl only).
    failures = [b for b in hypervisor.of_role("gitlab-app") if b.result and b.result.returncode != 0]
    assert failures, [b.result.stderr[-2000:] for b in hypervisor.of_role("gitlab-app") if b.result]
    assert any("no encryption" in b.result.stderr or "SSL off" in b.result.stderr for b in failures), \
        failures[0].result.stderr[-3000:]
    # The server that failed first said so: FAILURE, with its instance id; the rollback deleted
    # the group, and EC2 stopped whatever still ran.
    sent = [s["sent"] for b in failures for s in b.server.signals() if "sent" in s]
    assert sent and all(s["status"] == "FAILURE" for s in sent)
    assert {s["unique_id"] for s in sent} <= {b.instance_id for b in failures}
    assert all(b.terminated for b in hypervisor.of_role("gitlab-app") if b.result is None or b.result.returncode < 0)
    assert aws.client("autoscaling", REGION).describe_auto_scaling_groups()["AutoScalingGroups"] == []
