"""``gitlab-cfn upgrade``: GitLab's zero-downtime upgrade of a deployed stack, in one command.

GitLab's order for multi-node Linux package installations (gitlab docs,
``doc/update/zero_downtime.md``): one minor version at a time; the Gitaly
servers first; then the Rails servers one by one, running only the regular
migrations (``SKIP_POST_DEPLOYMENT_MIGRATIONS=true``) while old servers still
serve; then, once every Rails server runs the new version, the post-deployment
migrations, once. Here:

1. **Plan, before any change.** The running version (the repository server's
   ``gitlab-cfn:gitlab-version`` tag, else its image's), the target image (the
   region's image parameter, which ``bake-ami`` writes; its version tag must be
   the target), and the step (``versions.check_upgrade``: no downgrade, no
   skipped minor).
2. **Gitaly in place.** The repository servers are never replaced (their image
   is pinned in the stack): the package is upgraded on each through SSM Run
   Command (``scripts/gitlab-upgrade.sh package``), which waits until Gitaly
   accepts connections again.
3. **The Rails servers roll.** ``deploy`` updates the stack with the previous
   parameter values; the image parameter now resolves to the new image, so the
   launch template changes and the Auto Scaling group replaces one server at a
   time, each running the regular migrations at boot under the bootstrap lock.
   The change sets are shown and confirmed as for any deploy.
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
from gitlab_cfn.operate.progress import Progress

UPGRADE_SCRIPT = SCRIPTS_DIR / "gitlab-upgrade.sh"
# The tag bake-ami puts on every image it makes, and upgrade on every server it upgrades in place.
VERSION_TAG = "gitlab-cfn:gitlab-version"
GITALY_PORT = 8075
STABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
# SSM Run Command's final statuses (API reference, GetCommandInvocation: Status).
COMMAND_DONE = {"Success", "Cancelled", "TimedOut", "Failed", "Cancelling"}


@dataclass
class UpgradeRequest:
    stack_name: str
    region: str
    gitlab_version: str
    build_dir: Path = Path("build")
    image_parameter: str = GITLAB_AMI_PARAMETER
    yes: bool = False
    poll: float = 10
    command_timeout: int = 3600
    allow_replace: set[str] = field(default_factory=set)


@dataclass
class Plan:
    stack_id: str
    current: str
    target: str
    image: str
    repository_servers: list[str]
    group: str

    def lines(self) -> list[str]:
        return [f"GitLab {self.current} -> {self.target}",
                f"image {self.image} (GitLab {self.target})",
                f"repository servers upgraded in place: {', '.join(self.repository_servers) or 'none'}",
                f"Rails servers rolled: Auto Scaling group {self.group}",
                "post-deployment migrations: once, after the roll"]


@dataclass
class UpgradeResult:
    current: str
    target: str
    image: str
    repository_servers: list[str]
    migrations_on: str
    commands: list[str]
    status: str


def _resources(cfn, stack_id: str) -> list[dict]:
    """Every resource of the stack and its nested stacks."""
    found, queue = [], [stack_id]
    while queue:
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=queue.pop(0)):
            for r in page["StackResourceSummaries"]:
                found.append(r)
                if r["ResourceType"] == "AWS::CloudFormation::Stack" and r.get("PhysicalResourceId"):
                    queue.append(r["PhysicalResourceId"])
    return found


def _tags(items: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _image_version(ec2, image: str, what: str) -> str:
    images = ec2.describe_images(ImageIds=[image])["Images"]
    if not images:
        raise ConfigError(f"{what}: image {image} does not exist in this region")
    version = _tags(images[0].get("Tags")).get(VERSION_TAG)
    if not version:
        raise ConfigError(f"{what}: image {image} has no {VERSION_TAG} tag; bake it with gitlab-cfn bake-ami")
    return version


def plan(request: UpgradeRequest, aws: Aws) -> Plan:
    """Everything the upgrade will do, checked before anything changes."""
    target = ".".join(map(str, versions.check_supported(request.gitlab_version)))
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
    resources = _resources(cfn, stack["StackId"])
    servers = sorted(r["PhysicalResourceId"] for r in resources
                     if r["ResourceType"] == "AWS::EC2::Instance" and r["LogicalResourceId"].startswith("Gitaly"))
    groups = [r["PhysicalResourceId"] for r in resources
              if r["ResourceType"] == "AWS::AutoScaling::AutoScalingGroup"
              and r["LogicalResourceId"] == "AppAutoScalingGroup"]
    if not servers or not groups:
        raise CheckFailed(f"{request.stack_name} has no Gitaly server or no GitLab Auto Scaling group; "
                          "is it a gitlab-cfn stack?")

    described = ec2.describe_instances(InstanceIds=servers)["Reservations"]
    instance = described[0]["Instances"][0]
    current = _tags(instance.get("Tags")).get(VERSION_TAG) or \
        _image_version(ec2, instance["ImageId"], "running version")

    try:
        image = aws.client("ssm", request.region).get_parameter(Name=request.image_parameter)["Parameter"]["Value"]
    except Exception as exc:
        if "ParameterNotFound" in str(exc):
            raise ConfigError(f"--image-parameter: {request.image_parameter} does not exist in {request.region}; "
                              f"bake the image first: gitlab-cfn bake-ami --gitlab-version {target} "
                              f"--region {request.region}") from None
        raise
    found = _image_version(ec2, image, "--image-parameter")
    if found != target:
        raise ConfigError(f"--gitlab-version: {request.image_parameter} holds {image}, an image of GitLab "
                          f"{found}, not {target}; bake it first: gitlab-cfn bake-ami --gitlab-version "
                          f"{target} --region {request.region}")
    versions.check_upgrade(current, target)
    if current == target:
        raise ConfigError(f"--gitlab-version: {request.stack_name} already runs GitLab {target}")
    return Plan(stack["StackId"], current, target, image, servers, groups[0])


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
    commands = []
    ec2 = aws.client("ec2", request.region)
    for server in the_plan.repository_servers:
        commands.append(run_on(aws, request.region, server, ["package", the_plan.target, str(GITALY_PORT)],
                               f"GitLab {the_plan.target} package", progress, request.poll,
                               request.command_timeout))
        ec2.create_tags(Resources=[server], Tags=[{"Key": VERSION_TAG, "Value": the_plan.target}])

    result = (deploy_fn or deploying.deploy)(
        deploying.DeployRequest(stack_name=request.stack_name, region=request.region,
                                build_dir=request.build_dir, params={}, allow_replace=request.allow_replace,
                                assume_yes=request.yes, poll=request.poll), aws, progress)

    servers = in_service(aws, request.region, the_plan.group)
    if not servers:
        raise CheckFailed(f"no server of {the_plan.group} is in service to run the post-deployment migrations")
    commands.append(run_on(aws, request.region, servers[0], ["post-deployment-migrations"],
                           "post-deployment migrations", progress, request.poll, request.command_timeout))
    return UpgradeResult(the_plan.current, the_plan.target, the_plan.image, the_plan.repository_servers,
                         servers[0], commands, result.status)


def as_json(result: UpgradeResult) -> str:
    return json.dumps(asdict(result), indent=2, sort_keys=True)
