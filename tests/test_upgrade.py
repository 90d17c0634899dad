"""`gitlab-cfn upgrade`: the plan refuses what GitLab refuses, and the whole upgrade runs on the stand-in."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.errors import CheckFailed, ConfigError
from gitlab_cfn.operate import upgrade
from gitlab_cfn.operate.progress import Progress
from support import shellcheck
from test_cli import EXE

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gitlab-upgrade.sh"
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "eu-west-1"
OLD, NEW = "18.11.11", "19.0.8"


# -- the script the servers run ------------------------------------------------------------------

def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\nset -eu\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def machine(tmp_path):
    """A scratch root with strict stand-ins for dpkg, apt and GitLab's commands; each logs its argv."""
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    (root / "etc" / "gitlab").mkdir(parents=True)
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    state = tmp_path / "installed"
    state.write_text(f"{OLD}-ee.0")
    _fake(bin_dir, "dpkg-query", f"""
case "$*" in
  "-W -f \\${{Status}} gitlab-ee") printf 'install ok installed' ;;
  "-W -f \\${{Status}} gitlab-ce") exit 1 ;;
  "-W -f \\${{Version}} gitlab-ee") cat {state} ;;
  *) echo "dpkg-query: unexpected arguments: $*" >&2; exit 2 ;;
esac
""")
    _fake(bin_dir, "apt-get", f"""
echo "apt-get $*" >> {log}
case "$*" in
  "-o DPkg::Lock::Timeout=600 update -q") ;;
  "-o DPkg::Lock::Timeout=600 install -y -q -o Dpkg::Options::=--force-confold gitlab-ee="*)
    [ -f {root}/etc/gitlab/skip-auto-reconfigure ] || {{ echo "the package would reconfigure and migrate on its own" >&2; exit 1; }}
    last="${{@: -1}}"; v="${{last#*=}}"; case "$v" in [0-9]*.[0-9]*.[0-9]*-ee.0) printf '%s' "$v" > {state} ;; *) echo "E: Version '$v' not found" >&2; exit 100 ;; esac ;;
  *) echo "E: unexpected apt-get $*" >&2; exit 100 ;;
esac
""")
    _fake(bin_dir, "gitlab-ctl", f"""
echo "gitlab-ctl $*" >> {log}
case "$*" in reconfigure|"hup gitaly") ;; *) echo "gitlab-ctl: unexpected $*" >&2; exit 1 ;; esac
""")
    _fake(bin_dir, "gitlab-rake", f"""
echo "gitlab-rake $* SKIP_POST_DEPLOYMENT_MIGRATIONS=${{SKIP_POST_DEPLOYMENT_MIGRATIONS:-}}" >> {log}
[ "$*" = "db:migrate" ] || {{ echo "rake: unknown task $*" >&2; exit 1; }}
""")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GITLAB_CFN_ROOT": str(root),
           "GITLAB_CFN_PORT_WAIT": "1"}

    def run(*args):
        result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)
        return result, (log.read_text().splitlines() if log.exists() else [])

    run.state = state
    return run


def test_the_package_is_upgraded_in_place_without_the_package_migrating_on_its_own(machine):
    result, calls = machine("package", NEW)
    assert result.returncode == 0, result.stderr
    assert calls == ["apt-get -o DPkg::Lock::Timeout=600 update -q",
                     "apt-get -o DPkg::Lock::Timeout=600 install -y -q -o Dpkg::Options::=--force-confold "
                     f"gitlab-ee={NEW}-ee.0",
                     "gitlab-ctl reconfigure"]
    assert machine.state.read_text() == f"{NEW}-ee.0"


def test_an_installed_version_is_not_installed_again(machine):
    machine.state.write_text(f"{NEW}-ee.0")
    result, calls = machine("package", NEW)
    assert result.returncode == 0, result.stderr
    assert calls == ["gitlab-ctl reconfigure"]


def test_bad_arguments_and_a_closed_port_fail(machine):
    assert machine("package", "19.0")[0].returncode == 1
    assert machine("dance")[0].returncode == 1
    # Nothing listens on the port after the restart: the upgrade is not done.
    closed, calls = machine("package", NEW, "1")
    assert closed.returncode == 1 and "nothing accepts connections on port 1" in closed.stderr
    # Gitaly takes the new binary with a graceful restart, not a full one.
    assert calls[-1] == "gitlab-ctl hup gitaly"


def test_post_deployment_migrations_run_without_the_skip(machine):
    result, calls = machine("post-deployment-migrations")
    assert result.returncode == 0, result.stderr
    assert calls == ["gitlab-rake db:migrate SKIP_POST_DEPLOYMENT_MIGRATIONS="]


def test_the_script_is_sent_whole_through_a_here_document():
    commands = upgrade._script_commands("package", NEW, "8075")
    assert commands[0] == f"bash -s -- package {NEW} 8075 <<'GITLAB_CFN_UPGRADE_SCRIPT'"
    assert commands[-1] == "GITLAB_CFN_UPGRADE_SCRIPT"
    assert "\n".join(commands[1:-1]) == SCRIPT.read_text().rstrip("\n")


def test_the_script_is_shellcheck_clean():
    shellcheck.assert_clean(SCRIPT, shell=None)


# -- on the stand-in -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("upgrade") / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


def _image(local_aws, version: str, fresh: bool = False) -> str:
    """An image of a GitLab version, tagged as bake-ami tags it."""
    ec2 = local_aws.client("ec2", REGION)
    from gitlab_cfn.operate.local import STANDIN_GITLAB_AMI

    if version == OLD and not fresh:
        image = STANDIN_GITLAB_AMI
    else:
        builder = ec2.run_instances(ImageId=STANDIN_GITLAB_AMI, MinCount=1, MaxCount=1,
                                    InstanceType="c5.xlarge")["Instances"][0]["InstanceId"]
        image = ec2.create_image(InstanceId=builder, Name=f"gitlab {version}")["ImageId"]
        ec2.terminate_instances(InstanceIds=[builder])
    ec2.create_tags(Resources=[image], Tags=[{"Key": upgrade.VERSION_TAG, "Value": version}])
    return image


def _deploy(standin, build, *extra):
    command = [EXE, "deploy", "--endpoint-url", standin.endpoint, "--stack-name", "gl", "--region", REGION,
               "--build", str(build), "--poll-seconds", "0.2", *extra]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


def _deployed(local_aws, standin, build, tmp_path, **given):
    from gitlab_cfn.operate import local
    from gitlab_cfn.operate.deploy import _parent_template

    template, _ = _parent_template(build)
    ssm = local_aws.client("ssm", REGION)
    ssm.put_parameter(Name="/gitlab-cfn/ami/gitlab", Value=_image(local_aws, OLD), Type="String",
                      DataType="aws:ec2:image")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**local.fill(local_aws, REGION, template, given, 2), **given}))
    created = _deploy(standin, build, "--params", str(params))
    assert created.returncode == 0, created.stderr


def _request(build, version=NEW, **kw):
    kw.setdefault("yes", True)
    return upgrade.UpgradeRequest(stack_name="gl", region=REGION, gitlab_version=version, build_dir=build,
                                  poll=0.2, **kw)


def _bake(local_aws, version):
    """What bake-ami leaves: an image of the version, named by the image parameter."""
    image = _image(local_aws, version)
    local_aws.client("ssm", REGION).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value=image, Type="String",
                                                  DataType="aws:ec2:image", Overwrite=True)
    return image


def test_the_plan_refuses_before_anything_changes(local_aws, standin, build, tmp_path):
    with pytest.raises(ConfigError, match="--stack-name: no stack gl in eu-west-1"):
        upgrade.plan(_request(build), local_aws)
    _deployed(local_aws, standin, build, tmp_path)
    # The image parameter still names the running version's image.
    with pytest.raises(ConfigError, match=f"an image of GitLab {OLD}, not {NEW}; bake it first"):
        upgrade.plan(_request(build), local_aws)
    # Skipping 19.0 is refused whatever the image says.
    _bake(local_aws, "19.1.6")
    with pytest.raises(ConfigError, match="skips a minor version; upgrade one minor at a time"):
        upgrade.plan(_request(build, "19.1.6"), local_aws)
    with pytest.raises(ConfigError, match="not supported"):
        upgrade.plan(_request(build, "18.10.2"), local_aws)
    # Run Command reaches a server only through its SSM agent, which needs the managed policy.
    _bake(local_aws, NEW)
    iam = local_aws.client("iam", REGION)
    (role,) = [r["RoleName"] for r in iam.list_roles()["Roles"] if "GitalyRole" in r["RoleName"]]
    policy = [a["PolicyArn"] for a in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
              if a["PolicyArn"].endswith("/AmazonSSMManagedInstanceCore")][0]
    iam.detach_role_policy(RoleName=role, PolicyArn=policy)
    with pytest.raises(CheckFailed, match="SSM Run Command cannot reach i-[0-9a-f]+: the SSM agent is not online"):
        upgrade.plan(_request(build), local_aws)
    iam.attach_role_policy(RoleName=role, PolicyArn=policy)
    assert upgrade.plan(_request(build), local_aws).steps == ["gitaly", "roll", "migrations"]
    # Without a terminal and without --yes, nothing happens.
    refused = subprocess.run([EXE, "upgrade", "--endpoint-url", standin.endpoint, "--stack-name", "gl",
                              "--region", REGION, "--gitlab-version", NEW, "--build", str(build)],
                             capture_output=True, text=True, env=ENV, timeout=120, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "--yes: no terminal" in refused.stderr.splitlines()[-1]
    assert local_aws.client("ssm", REGION).list_commands()["Commands"] == []


def test_gitlab_19_needs_postgresql_17(local_aws, standin, build, tmp_path):
    _deployed(local_aws, standin, build, tmp_path, DBEngineVersion="16")
    _bake(local_aws, NEW)
    with pytest.raises(ConfigError, match="GitLab 19.0.8 needs PostgreSQL 17 or later; the database .* runs 16"):
        upgrade.plan(_request(build), local_aws)


def test_a_plain_deploy_never_moves_gitlab_to_another_version(local_aws, standin, build, tmp_path):
    _deployed(local_aws, standin, build, tmp_path)
    asg = local_aws.client("autoscaling", REGION)

    def servers():
        return {i["InstanceId"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
                for i in g["Instances"]}

    before = servers()
    _bake(local_aws, NEW)
    refused = _deploy(standin, build, "--yes")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1].endswith(
        f"nothing was changed; move GitLab with gitlab-cfn upgrade --stack-name gl --region {REGION} "
        f"--gitlab-version {NEW}")
    assert servers() == before
    # The same version baked again (a patched system, say) rolls the servers as before.
    rebaked = _image(local_aws, OLD, fresh=True)
    local_aws.client("ssm", REGION).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value=rebaked, Type="String",
                                                  DataType="aws:ec2:image", Overwrite=True)
    rolled = _deploy(standin, build, "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert f"GitLab {OLD}, as before" in rolled.stderr
    assert servers() and not servers() & before


def test_an_upgrade_that_stopped_resumes_where_it_stopped(local_aws, standin, build, tmp_path):
    _deployed(local_aws, standin, build, tmp_path)
    _bake(local_aws, NEW)

    def fails(*args, **kwargs):
        raise CheckFailed("the roll timed out")

    with pytest.raises(CheckFailed, match="the roll timed out"):
        upgrade.upgrade(_request(build), local_aws, Progress(quiet=True), deploy_fn=fails)
    ssm = local_aws.client("ssm", REGION)
    assert len(ssm.list_commands()["Commands"]) == 1  # the Gitaly package
    resumed = upgrade.plan(_request(build), local_aws)
    assert (resumed.rails, resumed.gitaly, resumed.steps) == (OLD, NEW, ["roll", "migrations"])
    result = upgrade.upgrade(_request(build), local_aws, Progress(quiet=True))
    commands = ssm.list_commands()["Commands"]
    assert len(commands) == 2 and commands[-1]["Parameters"]["commands"][0].startswith(
        "bash -s -- post-deployment-migrations")
    assert result.status == "UPDATE_COMPLETE"
    # Everything done: a third run only runs the post-deployment migrations again (idempotent).
    assert upgrade.plan(_request(build), local_aws).steps == ["migrations"]


def test_upgrade_end_to_end_on_the_standin(local_aws, standin, build, tmp_path):
    _deployed(local_aws, standin, build, tmp_path)
    ec2 = local_aws.client("ec2", REGION)
    asg = local_aws.client("autoscaling", REGION)
    cfn = local_aws.client("cloudformation", REGION)
    gitaly_before = [i["InstanceId"] for r in ec2.describe_instances(
        Filters=[{"Name": "tag:Name", "Values": ["*gitaly*"]},
                 {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
    assert len(gitaly_before) == 1
    group = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="gl")["Stacks"][0]["Outputs"]}[
        "AutoScalingGroupName"]
    servers_before = {i["InstanceId"] for i in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]}

    new_image = _bake(local_aws, NEW)
    done = subprocess.run([EXE, "upgrade", "--endpoint-url", standin.endpoint, "--stack-name", "gl",
                           "--region", REGION, "--gitlab-version", NEW, "--build", str(build), "--yes",
                           "--poll-seconds", "0.2", "--json"], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["current"], result["target"], result["image"]) == (OLD, NEW, new_image)

    # Gitaly: upgraded in place, not replaced.
    assert result["repository_servers"] == gitaly_before
    gitaly = ec2.describe_instances(InstanceIds=gitaly_before)["Reservations"][0]["Instances"][0]
    assert gitaly["State"]["Name"] == "running"
    assert {t["Key"]: t["Value"] for t in gitaly["Tags"]}[upgrade.VERSION_TAG] == NEW

    # The Rails servers rolled onto the new image.
    servers_after = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
    assert servers_after and not servers_before & {i["InstanceId"] for i in servers_after}
    images = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in servers_after])[
        "Reservations"] for i in r["Instances"]}
    assert images == {new_image}

    # SSM Run Command: the package on Gitaly first, then the post-deployment migrations, once.
    commands = sorted(local_aws.client("ssm", REGION).list_commands()["Commands"], key=lambda c: c["RequestedDateTime"])
    assert [(c["InstanceIds"], c["Parameters"]["commands"][0]) for c in commands] == [
        (gitaly_before, f"bash -s -- package {NEW} 8075 <<'GITLAB_CFN_UPGRADE_SCRIPT'"),
        ([result["migrations_on"]], "bash -s -- post-deployment-migrations <<'GITLAB_CFN_UPGRADE_SCRIPT'"),
    ]
    assert result["migrations_on"] in {i["InstanceId"] for i in servers_after}


def test_praefect_servers_are_not_upgraded_in_place(machine):
    """The Praefect servers are replaced by their group's roll inside the stack update (their
    boot migrates under the lock): the script has no in-place step for them."""
    result, calls = machine("praefect", NEW, "deploy")
    assert result.returncode == 1 and calls == []
    assert "usage: gitlab-upgrade.sh package VERSION [PORT] | post-deployment-migrations" in result.stderr


def test_the_roll_s_time_counts_every_group_the_stack_update_replaces():
    """The stack update rolls the Praefect group, then the Rails and Sidekiq groups: 45 minutes
    a server at most, for every one of them, and one more."""
    plan = upgrade.Plan("id", OLD, OLD, NEW, "/p", "ami-1", ["i-1"], "app-group", 3,
                        rolled={"PraefectAutoScalingGroup": 3, "SidekiqAutoScalingGroup": 2})
    assert plan.roll_minutes == (3 + 3 + 2 + 1) * upgrade.ROLL_MINUTES_PER_SERVER
    assert ("GitLab servers rolled, one at a time: Auto Scaling group app-group (3 servers, then 3 of "
            "PraefectAutoScalingGroup, then 2 of SidekiqAutoScalingGroup; up to 405 min)") in plan.lines()
    alone = upgrade.Plan("id", OLD, OLD, NEW, "/p", "ami-1", ["i-1"], "app-group", 1)
    assert alone.roll_minutes == 120      # at least two hours
