"""Bad input never ends in a traceback: one table, every subcommand.

Each row runs the console script as a user would and expects one error line
(``gitlab-cfn: error: ...``) naming the flag or field and what is allowed, exit 2
for bad input or 1 for a failure, and nothing half made:

- rows pointed at a recording HTTP endpoint (``--endpoint-url``) that are bad input
  must not have sent a single request: refused before anything was uploaded or changed;
- rows that write (``build --out``) must leave no folder and no staging folder behind;
- rows on the stand-in check the account afterwards (no bucket, no stack).

Add a row whenever a new case is found.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from gitlab_cfn.compile import compiler, config
from test_aws_errors import Endpoint as Answering
from test_aws_errors import bad_endpoint  # noqa: F401  (fixture)
from test_cli import EXE

# One attempt: botocore's retries before giving up are tests/test_aws_errors.py's subject.
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "1",
       "PYTHONWARNINGS": "ignore"}
STACK = ["--stack-name", "gl", "--region", "eu-west-1"]
ROLE = "arn:aws:iam::123456789012:role/Developers"
GOOD = {"AvailabilityZones": "eu-west-1a,eu-west-1b", "DomainName": "gitlab.example.test",
        "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
        "GitSshCIDR": "203.0.113.0/24", "RemoteAccessCIDR": "198.51.100.0/24", "KeyPairName": "ops"}


@dataclass
class Ctx:
    build: Path
    tmp: Path
    url: str

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    code: int
    says: tuple[str, ...]                   # every one of these is in the error line
    mode: str = "500"                       # how the recording endpoint answers
    any_of: tuple[str, ...] = ()            # one of these is in the error line
    writes: Callable[[Ctx], Path] | None = None   # must not exist afterwards
    extra: list[str] = field(default_factory=list)


def deploy(*args):
    return lambda c: ["deploy", "--build", str(c.build), *STACK, "--yes", "--endpoint-url", c.url,
                      *[a(c) if callable(a) else a for a in args]]


def params(data) -> Callable[[Ctx], str]:
    return lambda c: c.file("p.json", data if isinstance(data, str) else json.dumps(data))


def on_endpoint(*argv):
    return lambda c: [*argv, "--endpoint-url", c.url]


REGION_EVERYWHERE = [
    ("deploy", lambda r: lambda c: ["deploy", "--build", str(c.build), "--stack-name", "gl", "--region", r,
                                    "--params", params(GOOD)(c), "--endpoint-url", c.url]),
    ("destroy", lambda r: on_endpoint("destroy", "--stack-name", "gl", "--region", r, "--confirm", "gl")),
    ("status", lambda r: on_endpoint("status", "--stack-name", "gl", "--region", r)),
    ("outputs", lambda r: on_endpoint("outputs", "--stack-name", "gl", "--region", r)),
    ("events", lambda r: on_endpoint("events", "--stack-name", "gl", "--region", r)),
    ("diff", lambda r: lambda c: ["diff", "--stack-name", "gl", "--region", r, "--build", str(c.build),
                                  "--endpoint-url", c.url]),
    ("upgrade", lambda r: lambda c: ["upgrade", "--stack-name", "gl", "--region", r, "--gitlab-version", "19.3.0",
                                     "--build", str(c.build), "--yes", "--endpoint-url", c.url]),
    ("bake-ami", lambda r: on_endpoint("bake-ami", "--gitlab-version", "19.3.0", "--region", r)),
    ("publish", lambda r: lambda c: ["publish", "--build", str(c.build), "--bucket", "gl-releases", "--regions", r,
                                     "--endpoint-url", c.url]),
    ("catalog-publish", lambda r: on_endpoint("catalog", "publish", "--portfolio-stack", "p", "--bucket", "gl-releases",
                                              "--regions", r)),
    ("catalog-deploy", lambda r: on_endpoint("catalog", "deploy", "--principal-arn", ROLE, "--bucket", "gl-releases",
                                             "--regions", r)),
]
STACK_NAME_EVERYWHERE = [
    ("deploy", lambda n: lambda c: ["deploy", "--build", str(c.build), "--stack-name", n, "--region", "eu-west-1",
                                    "--params", params(GOOD)(c), "--endpoint-url", c.url]),
    ("destroy", lambda n: on_endpoint("destroy", "--stack-name", n, "--region", "eu-west-1", "--confirm", n)),
    ("status", lambda n: on_endpoint("status", "--stack-name", n, "--region", "eu-west-1")),
    ("events", lambda n: on_endpoint("events", "--stack-name", n, "--region", "eu-west-1")),
    ("upgrade", lambda n: lambda c: ["upgrade", "--stack-name", n, "--region", "eu-west-1", "--gitlab-version",
                                     "19.3.0", "--build", str(c.build), "--yes", "--endpoint-url", c.url]),
    ("catalog-deploy", lambda n: on_endpoint("catalog", "deploy", "--portfolio-stack", n, "--principal-arn", ROLE,
                                             "--bucket", "gl-releases", "--regions", "eu-west-1")),
]
AWS_FAILING = [
    ("status", on_endpoint("status", *STACK)),
    ("outputs", on_endpoint("outputs", *STACK)),
    ("events", on_endpoint("events", *STACK)),
    ("diff", lambda c: ["diff", *STACK, "--build", str(c.build), "--endpoint-url", c.url]),
    ("upgrade", lambda c: ["upgrade", *STACK, "--gitlab-version", "19.3.0", "--build", str(c.build), "--yes",
                           "--endpoint-url", c.url]),
    ("catalog-publish", on_endpoint("catalog", "publish", "--portfolio-stack", "p", "--bucket", "gl-releases",
                                    "--regions", "eu-west-1")),
    ("catalog-deploy", on_endpoint("catalog", "deploy", "--principal-arn", ROLE, "--bucket", "gl-releases",
                                   "--regions", "eu-west-1")),
]

TABLE = [
    # --out that cannot be written: impossible (under /proc) or under a file.
    Case("build-out-impossible", lambda c: ["build", "--out", "/proc/gitlab-cfn-build"], 2, ("--out:", "/proc/")),
    Case("build-out-under-a-file", lambda c: ["build", "--out", c.file("plain", "x") + "/build"], 2,
         ("--out:", "File exists"), writes=lambda c: c.tmp / "plain" / "build"),
    # A YAML config or parameter file naming a key twice.
    Case("config-duplicate-key", lambda c: ["build", "--out", str(c.tmp / "b"), "--config",
                                            c.file("c.yaml", "az_count: 2\nnat_gateways: single\naz_count: 3\n")],
         2, ("--config:", "'az_count' given twice", "lines 1 and 3"), writes=lambda c: c.tmp / "b"),
    Case("config-nested-duplicate-key", lambda c: ["build", "--out", str(c.tmp / "b"), "--config", c.file(
        "c.yaml", "database:\n  storage_type: gp3\n  storage_type: io1\n")], 2,
        ("--config:", "'storage_type' given twice", "lines 2 and 3"), writes=lambda c: c.tmp / "b"),
    Case("config-mapping-for-a-string", lambda c: ["build", "--out", str(c.tmp / "b"), "--config",
                                                   c.file("c.yaml", "nat_gateways: {per-az: true}\n")],
         2, ("nat_gateways: must be one of per-az, single",), writes=lambda c: c.tmp / "b"),
    Case("config-monitoring-burstable", lambda c: ["build", "--out", str(c.tmp / "b"), "--config",
                                                   c.file("c.yaml", "monitoring: {node: true, instance_type: t3.large}\n")],
         2, ("monitoring.instance_type: burstable types are not allowed",), writes=lambda c: c.tmp / "b"),
    Case("diagram-out-impossible", lambda c: ["diagram", "--build", str(c.build), "--out", "/proc/gitlab-cfn.png"],
         2, ("--out:", "/proc/gitlab-cfn.png")),
    Case("diagram-out-under-a-file", lambda c: ["diagram", "--build", str(c.build), "--out",
                                                c.file("plain", "x") + "/a.png"], 2, ("--out:", "File exists"),
         writes=lambda c: c.tmp / "plain" / "a.png"),
    Case("diagram-dot-under-a-file", lambda c: ["diagram", "--build", str(c.build), "--out", str(c.tmp / "a.png"),
                                                "--dot", c.file("plain", "x") + "/a.dot"], 2, ("--dot:",),
         writes=lambda c: c.tmp / "a.png"),
    Case("estimate-region-misspelt", lambda c: ["estimate", "--build", str(c.build), "--region", "eu-wst-1"], 2,
         ("--region:", "eu-wst-1")),
    Case("estimate-assume-not-a-number", lambda c: ["estimate", "--build", str(c.build), "--assume", "lb_gb=lots"], 2,
         ("--assume:", "KEY=NUMBER")),
    Case("lint-no-build", lambda c: ["lint", "--build", str(c.tmp / "none")], 2, ("--build: no manifest.json",)),
    Case("check-no-build", lambda c: ["check", "--build", str(c.tmp / "none")], 2, ("--build: no manifest.json",)),
    Case("params-duplicate-key", deploy("--params", params('{"DomainName": "a.test", "DomainName": "b.test"}')),
         2, ("--params:", "'DomainName' given twice")),
    Case("params-list-duplicate-key", deploy("--params", params([
        {"ParameterKey": "KeyPairName", "ParameterValue": "a"}, {"ParameterKey": "KeyPairName", "ParameterValue": "b"}])),
        2, ("--params:", "ParameterKey KeyPairName given twice")),
    Case("param-inline-twice", deploy("--param", "KeyPairName=a", "--param", "KeyPairName=b"), 2,
         ("--param: KeyPairName given twice",)),
    Case("param-inline-no-equals", deploy("--param", "KeyPairName"), 2, ("--param:", "is not KEY=VALUE")),
    # A mapping or a nested list where a string is expected.
    Case("param-value-mapping", deploy("--params", params({**GOOD, "DomainName": {"name": "gitlab.example.test"}})),
         2, ("--params: DomainName: a mapping", "a string")),
    Case("param-value-list-of-lists", deploy("--params", params({**GOOD, "AvailabilityZones": [["eu-west-1a"]]})),
         2, ("--params: AvailabilityZones:", "list of strings")),
    Case("params-not-json-or-yaml", deploy("--params", params("{not: [valid")), 2, ("--params:", "neither JSON nor YAML")),
    Case("params-shape-parameters", deploy("--params", params({"Parameters": {**GOOD, "Nope": "1"}})), 2,
         ("Nope: not a parameter of this template",)),
    # Availability Zones of another region than --region.
    Case("zones-of-another-region", deploy("--params", params({**GOOD, "AvailabilityZones": "us-east-1a,us-east-1b"})),
         2, ("AvailabilityZones: us-east-1a, us-east-1b not in region eu-west-1",)),
    # Tags, role.
    Case("tags-reserved", deploy("--params", params(GOOD), "--tags", "aws:owner=me"), 2, ("--tags: aws:owner",
                                                                                        "reserved")),
    Case("tags-no-equals", deploy("--params", params(GOOD), "--tags", "team"), 2, ("--tags:", "KEY=VALUE")),
    Case("role-arn-not-a-role", deploy("--params", params(GOOD), "--role-arn", "arn:aws:iam::123:user/me"), 2,
         ("--role-arn:", "IAM role ARN")),
    # Other arguments.
    Case("local-and-endpoint", lambda c: ["status", *STACK, "--local", "--endpoint-url", c.url], 2,
         ("--local and --endpoint-url exclude each other",)),
    Case("bake-ami-local", lambda c: ["bake-ami", "--gitlab-version", "19.3.0", "--region", "eu-west-1", "--local"], 2,
         ("--local: the stand-in cannot bake an image",)),
    Case("events-limit-zero", on_endpoint("events", *STACK, "--limit", "0"), 2, ("--limit:", "at least 1")),
    Case("catalog-principal-not-iam", on_endpoint("catalog", "deploy", "--principal-arn", "me", "--bucket", "gl-releases",
                                                  "--regions", "eu-west-1"), 2, ("--principal-arn:", "IAM role or group")),
    Case("diff-not-build-folders", lambda c: ["diff", str(c.tmp), str(c.tmp)], 2, ("OLD:", "not a build folder")),
    Case("deploy-no-build", lambda c: ["deploy", "--build", str(c.tmp / "none"), *STACK, "--endpoint-url", c.url], 2,
         ("--build",)),
]
for name, argv in REGION_EVERYWHERE:
    flag = "--regions" if name in ("publish", "catalog-publish", "catalog-deploy") else "--region"
    TABLE.append(Case(f"{name}-region-misspelt", argv("eu-wst-1"), 2, (f"{flag}: 'eu-wst-1' is not an AWS region",
                                                                       "did you mean eu-west-1?")))
    TABLE.append(Case(f"{name}-region-upper-case", argv("EU-WEST-1"), 2, (f"{flag}: 'EU-WEST-1' is not an AWS region",
                                                                          "did you mean eu-west-1?", "lower case")))
for name, argv in STACK_NAME_EVERYWHERE:
    for label, bad in (("underscore", "git_lab"), ("digit-first", "1gitlab"), ("too-long", "g" * 129)):
        flag = "--portfolio-stack" if name == "catalog-deploy" else "--stack-name"
        TABLE.append(Case(f"{name}-stack-name-{label}", argv(bad), 2, (f"{flag}: ", "is not a CloudFormation stack name",
                                                                       "at most 128 characters")))
for name, argv in AWS_FAILING:
    # A HEAD answer has no body: S3 throttling then shows as its status, 503.
    for mode, words in (("500", ("500",)), ("throttling", ("Throttling", "(503)")),
                        ("garbage", ("not an AWS response",))):
        TABLE.append(Case(f"{name}-aws-{mode}", argv, 1, ("gitlab-cfn: error: AWS: ",), mode=mode, any_of=words))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad-input") / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_bad_input(case, build, tmp_path, bad_endpoint):  # noqa: F811
    Answering.mode = case.mode
    ctx = Ctx(build, tmp_path, f"http://127.0.0.1:{bad_endpoint.server_address[1]}")
    argv = case.argv(ctx)
    result = subprocess.run([EXE, *argv], capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == case.code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gitlab-cfn: error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.splitlines()[-1]
    for words in case.says:
        assert words in errors[0], errors[0]
    assert not case.any_of or any(words in errors[0] for words in case.any_of), errors[0]
    if case.code == 2:
        assert Answering.requests == [], f"bad input, yet {len(Answering.requests)} requests were sent"
    if case.writes:
        target = case.writes(ctx)
        assert not target.exists()
        if target.parent.is_dir():
            assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_the_table_covers_every_subcommand(tmp_path):
    from gitlab_cfn.cli import parser

    top = parser()
    names = set(next(a for a in top._actions if a.dest == "command").choices)
    covered = {case.argv(Ctx(tmp_path, tmp_path, "http://127.0.0.1:1"))[0] for case in TABLE}
    # The stand-in takes no input.
    assert names - covered == {"standin"}


# -- on the stand-in: the account is looked at afterwards ---------------------------------------

def test_a_missing_image_parameter_is_caught_before_anything_is_uploaded(build, local_aws, standin, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**GOOD, "GitalyAmiId": "ami-0a11ab5e1c0de1851"}))
    result = subprocess.run([EXE, "deploy", "--build", str(build), *STACK, "--params", str(path), "--endpoint-url",
                             standin.endpoint, "--poll-seconds", "0.2"], capture_output=True, text=True, env=ENV,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("gitlab-cfn: error:")]
    assert line.startswith("gitlab-cfn: error: GitLabAmiId: SSM parameter /gitlab-cfn/ami/gitlab does not exist "
                           "in eu-west-1; nothing was uploaded")
    assert local_aws.client("s3", "eu-west-1").list_buckets()["Buckets"] == []
    assert local_aws.client("cloudformation", "eu-west-1").describe_stacks()["Stacks"] == []


def test_destroy_of_a_rolled_back_stack_works(local_aws, standin):
    cfn = local_aws.client("cloudformation", "eu-west-1")
    cfn.create_stack(StackName="gl", TemplateBody=json.dumps({"Resources": {"Broken": {"Type": "AWS::Foo::Bar"}}}))
    assert cfn.describe_stacks(StackName="gl")["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    # deploy refuses to build on it, and names the way out ...
    refused = subprocess.run([EXE, "status", *STACK, "--endpoint-url", standin.endpoint], capture_output=True,
                             text=True, env=ENV, timeout=60)
    assert refused.returncode == 0 and refused.stdout.startswith("FAILED: Broken (AWS::Foo::Bar) in stack gl: ")
    # ... which works (ROLLBACK_FAILED and DELETE_FAILED: test_deploy.test_destroy_recovers_a_failed_stack).
    done = subprocess.run([EXE, "destroy", *STACK, "--confirm", "gl", "--endpoint-url", standin.endpoint,
                           "--poll-seconds", "0.2"], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [s for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"] == []
