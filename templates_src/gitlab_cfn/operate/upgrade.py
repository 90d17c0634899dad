"""``gitlab-cfn upgrade``: GitLab's zero-downtime upgrade of a deployed stack, in one command.

GitLab's order for multi-node Linux package installations (gitlab docs,
``doc/update/zero_downtime.md``): one minor version at a time; the Gitaly
servers first; then the Rails servers one by one, running only the regular
migrations (``SKIP_POST_DEPLOYMENT_MIGRATIONS=true``) while old servers still
serve; then, once every Rails server runs the new version, the post-deployment
migrations, once. Here:

1. **Plan, before any change, and one confirmation.** The running versions (the
   GitLab servers' images; the repository servers' ``gitlab-cfn:gitlab-version``
   tag, else their image's), the target image (the stack's own image parameter,
   which ``bake-ami`` writes; its version tag must be the target), the step
   (``versions.check_upgrade``: no downgrade, no skipped minor), PostgreSQL 17 for
   GitLab 19, and the SSM agent online on the servers commands go to. An upgrade
   that stopped between steps resumes at the step it stopped before.
2. **Gitaly in place.** The repository servers are never replaced (their image
   is pinned in the stack): the package is upgraded on each through SSM Run
   Command (``scripts/gitlab-upgrade.sh package``), which waits until Gitaly
   accepts connections again.
3. **The Rails servers roll.** ``deploy`` updates the stack with the previous
   parameter values; the image parameter now resolves to the new image, so the
   launch template changes and the Auto Scaling group replaces one server at a
   time, each running the regular migrations at boot under the bootstrap lock.
   The changes are shown, and an update that would lose data is refused, as for any
   deploy; it is the only deploy allowed to move the servers to another version.
4. **Post-deployment migrations, once**, on one in-service Rails server
   (``scripts/gitlab-upgrade.sh post-deployment-migrations``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gitlab_cfn.compile import versions
from gitlab_cfn.compile.catalog import GITLAB_AMI_PARAMETER
from gitlab_cfn.compile.userdata import SCRIPTS_DIR
from gitlab_cfn.errors import CheckFailed, ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.bake import VERSION_TAG
from gitlab_cfn.operate.deploy import image_version, nested_resources
from gitlab_cfn.operate.progress import Progress

UPGRADE_SCRIPT = SCRIPTS_DIR / "gitlab-upgrade.sh"
GITALY_PORT = 8075
STABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
# SSM Run Command's final statuses (API reference, GetCommandInvocation: Status).
COMMAND_DONE = {"Success", "Cancelled", "TimedOut", "Failed", "Cancelling"}
# A rolling update waits this long for each new server (app tier, UPDATE_TIMEOUT).
ROLL_MINUTES_PER_SERVER = 45
# Groups beside the Rails servers' that a version change replaces, one server at a time
# (the monitoring server's too: its launch template takes GitLabAmiId).
ROLLED = ("PraefectAutoScalingGroup", "SidekiqAutoScalingGroup", "PrometheusAutoScalingGroup")


@dataclass
class UpgradeRequest:
    stack_name: str
    region: str
    gitlab_version: str
    build_dir: Path = Path("build")
    yes: bool = False
    poll: float = 10
    command_timeout: int = 3600
    allow_replace: set[str] = field(default_factory=set)
    bucket: str | None = None
    prefix: str | None = None


@dataclass
class Plan:
    stack_id: str
    rails: str             # the version the GitLab servers run
    gitaly: str            # the version the repository servers run
    target: str
    image_parameter: str
    image: str
    repository_servers: list[str]
    group: str
    capacity: int
    # The other groups the same stack update rolls, by logical id: servers in each. The
    # Praefect group rolls first (the application's template takes the cluster's address
    # from it), then the Rails and Sidekiq groups.
    rolled: dict[str, int] = field(default_factory=dict)

    @property
    def roll_minutes(self) -> int:
        """The stack update's time limit: every server it replaces, one at a time, and one more."""
        return max(120, (self.capacity + sum(self.rolled.values()) + 1) * ROLL_MINUTES_PER_SERVER)

    @property
    def steps(self) -> list[str]:
        steps = []
        if self.gitaly != self.target:
            steps.append("gitaly")
        if self.rails != self.target:
            steps.append("roll")
        return steps + ["migrations"]

    def lines(self) -> list[str]:
        lines = [f"GitLab {self.rails} -> {self.target} (Gitaly servers on {self.gitaly})",
                 f"image {self.image} (GitLab {self.target}), from {self.image_parameter}"]
        if "gitaly" in self.steps:
            lines.append(f"repository servers upgraded in place: {', '.join(self.repository_servers)}")
        else:
            lines.append(f"repository servers already run {self.target}: {', '.join(self.repository_servers)}")
        if "roll" in self.steps:
            lines.append(f"GitLab servers rolled, one at a time: Auto Scaling group {self.group} "
                         f"({self.capacity} servers"
                         + "".join(f", then {n} of {lid}" for lid, n in sorted(self.rolled.items()))
                         + f"; up to {self.roll_minutes} min)")
        else:
            lines.append(f"GitLab servers already run {self.target}")
        lines.append("post-deployment migrations: once, after the roll")
        return lines


@dataclass
class UpgradeResult:
    current: str
    target: str
    image: str
    repository_servers: list[str]
    migrations_on: str
    commands: list[str]
    status: str


def _tags(items: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _image_version(ec2, image: str, what: str) -> str:
    version = image_version(ec2, image)
    if not version:
        raise ConfigError(f"{what}: image {image} does not exist in this region or has no {VERSION_TAG} tag; "
                          "bake it with gitlab-cfn bake-ami")
    return version


def _lowest(found: list[str]) -> str:
    return min(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def _check_database(aws: Aws, region: str, resources: list[dict], target: tuple[int, int, int]) -> None:
    """GitLab 19 refuses PostgreSQL older than 17 (its package's preinst, PG_MIN_VERSION)."""
    if target[:2] < versions.POSTGRESQL_17_FROM:
        return
    rds = aws.client("rds", region)
    for r in resources:
        if r["ResourceType"] == "AWS::RDS::DBInstance" and r.get("PhysicalResourceId"):
            engine = rds.describe_db_instances(DBInstanceIdentifier=r["PhysicalResourceId"])["DBInstances"][0]
            major = int(str(engine.get("EngineVersion", "0")).split(".")[0] or 0)
            if major < 17:
                raise ConfigError(
                    f"--gitlab-version: GitLab {'.'.join(map(str, target))} needs PostgreSQL 17 or later; the "
                    f"database {r['PhysicalResourceId']} runs {engine.get('EngineVersion')}; upgrade it first "
                    "(a major version upgrade of the RDS instance), then run upgrade again; nothing was changed")


def _check_managed(aws: Aws, region: str, instances: list[str]) -> None:
    """SSM Run Command reaches only managed nodes whose agent is online."""
    info = aws.client("ssm", region).describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": instances}])["InstanceInformationList"]
    online = {i["InstanceId"] for i in info if i.get("PingStatus") == "Online"}
    missing = [i for i in instances if i not in online]
    if missing:
        raise CheckFailed(f"SSM Run Command cannot reach {', '.join(missing)}: the SSM agent is not online "
                          "(its role needs AmazonSSMManagedInstanceCore and a route to the SSM endpoints); "
                          "nothing was changed")


def plan(request: UpgradeRequest, aws: Aws) -> Plan:
    """Everything the upgrade will do, checked before anything changes. A stack left between
    steps by an earlier upgrade (Gitaly upgraded, or the servers rolled) resumes where it stopped."""
    parsed = versions.check_supported(request.gitlab_version)
    target = ".".join(map(str, parsed))
    cfn = aws.client("cloudformation", request.region)
    ec2 = aws.client("ec2", request.region)
    try:
        stack = cfn.describe_stacks(StackName=request.stack_name)["Stacks"][0]
    except Exception as exc:
        if "does not exist" in str(exc):
            raise ConfigError(f"--stack-name: no stack {request.stack_name} in {request.region}") from None
        raise
    if stack["StackStatus"] not in STABLE:
        raise ConfigError(f"--stack-name: {request.stack_name} is {stack['StackStatus']}; upgrade a stack "
                          f"that is one of {', '.join(sorted(STABLE))}")
    resources = [r for _, r in nested_resources(cfn, stack["StackId"])]
    servers = sorted(r["PhysicalResourceId"] for r in resources
                     if r["ResourceType"] == "AWS::EC2::Instance" and r["LogicalResourceId"].startswith("Gitaly"))
    groups = [r["PhysicalResourceId"] for r in resources
              if r["ResourceType"] == "AWS::AutoScaling::AutoScalingGroup"
              and r["LogicalResourceId"] == "AppAutoScalingGroup"]
    if not servers or not groups:
        raise CheckFailed(f"{request.stack_name} has no Gitaly server or no GitLab Auto Scaling group; "
                          "is it a gitlab-cfn stack?")

    gitaly_versions = []
    for reservation in ec2.describe_instances(InstanceIds=servers)["Reservations"]:
        for instance in reservation["Instances"]:
            gitaly_versions.append(_tags(instance.get("Tags")).get(VERSION_TAG)
                                   or _image_version(ec2, instance["ImageId"], "running version"))
    app = in_service(aws, request.region, groups[0])
    images = {i["ImageId"] for r in (ec2.describe_instances(InstanceIds=app)["Reservations"] if app else [])
              for i in r["Instances"]}
    rails_versions = [_image_version(ec2, image, "running version") for image in sorted(images)]
    parameters = {p["ParameterKey"]: p for p in stack.get("Parameters", [])}
    image_parameter = parameters.get("GitLabAmiId", {}).get("ParameterValue") or GITLAB_AMI_PARAMETER
    if not rails_versions:
        rails_versions = [_image_version(ec2, parameters.get("GitLabAmiId", {}).get("ResolvedValue", ""),
                                         "running version")]
    gitaly, rails = _lowest(gitaly_versions), _lowest(rails_versions)

    try:
        image = aws.client("ssm", request.region).get_parameter(Name=image_parameter)["Parameter"]["Value"]
    except Exception as exc:
        if "ParameterNotFound" in str(exc):
            raise ConfigError(f"GitLabAmiId: the stack's image parameter {image_parameter} does not exist in "
                              f"{request.region}; bake the image first: gitlab-cfn bake-ami --gitlab-version "
                              f"{target} --region {request.region}") from None
        raise
    found = _image_version(ec2, image, "GitLabAmiId")
    if found != target:
        raise ConfigError(f"--gitlab-version: the stack's image parameter {image_parameter} names {image}, an "
                          f"image of GitLab {found}, not {target}; bake it first: gitlab-cfn bake-ami "
                          f"--gitlab-version {target} --region {request.region} --ssm-parameter {image_parameter}")
    # The step is judged from the GitLab servers, which move last: Gitaly may already be on
    # the target (an upgrade that stopped after its first step), never further.
    versions.check_upgrade(rails, target)
    if gitaly not in (rails, target):
        raise CheckFailed(f"the repository servers run GitLab {gitaly} and the GitLab servers {rails}; "
                          f"gitlab-cfn upgrade moves both from one version to {target}")
    _check_database(aws, request.region, resources, parsed)
    _check_managed(aws, request.region, servers + app[:1])
    capacity = len(app) or 1
    others = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources
              if r["ResourceType"] == "AWS::AutoScaling::AutoScalingGroup" and r["LogicalResourceId"] in ROLLED}
    rolled = {}
    if others:
        described = aws.client("autoscaling", request.region).describe_auto_scaling_groups(
            AutoScalingGroupNames=sorted(others.values()))["AutoScalingGroups"]
        sizes = {g["AutoScalingGroupName"]: g["DesiredCapacity"] for g in described}
        rolled = {lid: sizes.get(name, 0) for lid, name in others.items()}
    return Plan(stack["StackId"], rails, gitaly, target, image_parameter, image, servers, groups[0], capacity,
                rolled)


def _script_commands(*args: str) -> list[str]:
    """The commands of AWS-RunShellScript: bash runs gitlab-upgrade.sh's text from a here-document."""
    text = UPGRADE_SCRIPT.read_text()
    marker = "GITLAB_CFN_UPGRADE_SCRIPT"
    if marker in text:  # pragma: no cover - a guard on the script itself
        raise CheckFailed(f"{UPGRADE_SCRIPT} contains {marker}")
    return [f"bash -s -- {' '.join(args)} <<'{marker}'", *text.splitlines(), marker]


def run_on(aws: Aws, region: str, instance: str, args: list[str], what: str, progress: Progress,
           poll: float, timeout: int) -> str:
    """Run gitlab-upgrade.sh on an instance through SSM Run Command; its command id."""
    ssm = aws.client("ssm", region)
    command = ssm.send_command(
        InstanceIds=[instance], DocumentName="AWS-RunShellScript",
        Comment=f"gitlab-cfn upgrade: {what}"[:100],
        TimeoutSeconds=min(timeout, 2592000),
        Parameters={"commands": _script_commands(*args), "executionTimeout": [str(timeout)]},
    )["Command"]["CommandId"]
    deadline = time.monotonic() + timeout + 120
    while True:
        try:
            invocation = ssm.get_command_invocation(CommandId=command, InstanceId=instance)
        except Exception as exc:
            # The invocation appears a moment after SendCommand returns.
            if "InvocationDoesNotExist" not in str(exc) or time.monotonic() > deadline:
                raise
            invocation = {"Status": "Pending"}
        status = invocation["Status"]
        if status in COMMAND_DONE:
            break
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what} on {instance}: no result after {timeout} s (command {command})")
        progress.update(f"{what} on {instance}: {status}")
        time.sleep(poll)
    if status != "Success":
        errors = (invocation.get("StandardErrorContent") or "").strip().splitlines()
        raise CheckFailed(f"{what} on {instance} ended {status} (command {command})"
                          + (f": {errors[-1]}" if errors else ""))
    progress.done(f"{what} on {instance}: done (command {command})")
    return command


def in_service(aws: Aws, region: str, group: str) -> list[str]:
    described = aws.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return sorted(i["InstanceId"] for g in described["AutoScalingGroups"] for i in g["Instances"]
                  if i.get("LifecycleState") == "InService")


def upgrade(request: UpgradeRequest, aws: Aws, progress: Progress, deploy_fn=None) -> UpgradeResult:
    from gitlab_cfn.operate import deploy as deploying

    the_plan = plan(request, aws)
    for line in the_plan.lines():
        progress.done(f"plan: {line}")
    # Asked once, before the first change: the later steps are shown as they run, and an
    # update that would lose data is still refused by deploy's change-set guard.
    if not deploying.confirm(f"upgrade {request.stack_name} to GitLab {the_plan.target}?", request.yes):
        raise CheckFailed(f"the upgrade of {request.stack_name} was not confirmed; nothing was changed")
    commands = []
    ec2 = aws.client("ec2", request.region)
    if "gitaly" in the_plan.steps:
        for server in the_plan.repository_servers:
            commands.append(run_on(aws, request.region, server, ["package", the_plan.target, str(GITALY_PORT)],
                                   f"GitLab {the_plan.target} package", progress, request.poll,
                                   request.command_timeout))
            ec2.create_tags(Resources=[server], Tags=[{"Key": VERSION_TAG, "Value": the_plan.target}])
    status = "UNCHANGED"
    if "roll" in the_plan.steps:
        result = (deploy_fn or deploying.deploy)(
            deploying.DeployRequest(
                stack_name=request.stack_name, region=request.region, build_dir=request.build_dir, params={},
                bucket=request.bucket, prefix=request.prefix, allow_replace=request.allow_replace,
                assume_yes=True, version_change=True, poll=request.poll,
                timeout=the_plan.roll_minutes * 60),
            aws, progress)
        status = result.status

    servers = in_service(aws, request.region, the_plan.group)
    if not servers:
        raise CheckFailed(f"no server of {the_plan.group} is in service to run the post-deployment migrations")
    commands.append(run_on(aws, request.region, servers[0], ["post-deployment-migrations"],
                           "post-deployment migrations", progress, request.poll, request.command_timeout))
    return UpgradeResult(the_plan.rails, the_plan.target, the_plan.image, the_plan.repository_servers,
                         servers[0], commands, status)


def as_json(result: UpgradeResult) -> str:
    return json.dumps(asdict(result), indent=2, sort_keys=True)
