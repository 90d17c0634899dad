"""`gitlab-cfn publish` against the local stand-in: keys, idempotence, links, deploy from the URL."""

import json
import os
import subprocess
import urllib.error
import urllib.request
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from gitlab_cfn import __version__
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.compile.naming import TIERS, template_key
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.deploy import stack_states
from gitlab_cfn.operate.progress import Progress
from gitlab_cfn.operate.publish import PublishRequest, publish
from test_cli import EXE

REGIONS = ["us-east-1", "eu-west-1"]
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def build(tmp_path):
    out = tmp_path / "build"
    compiler.write_build(config.BuildConfig(), out)
    return out


def buckets(local_aws, name="gl-releases"):
    for region in REGIONS:
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        local_aws.client("s3", region).create_bucket(Bucket=f"{name}-{region}", **kwargs)


def run_publish(standin, build, *extra):
    return subprocess.run([EXE, "publish", "--endpoint-url", standin.endpoint, "--bucket", "gl-releases",
                           "--regions", ",".join(REGIONS), "--build", str(build), "--json", *extra],
                          capture_output=True, text=True, env=ENV, timeout=120)


def test_publish_in_two_regions_at_the_keys_the_parent_computes(local_aws, standin, build):
    buckets(local_aws)
    first = run_publish(standin, build)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["key_prefix"] == f"gitlab-cfn/{__version__}/"
    # Every template (the stack's and the portfolio's), the boot bundle, the manifest and the
    # product template, per region.
    every = len(json.loads((build / "manifest.json").read_text())["templates"])
    assert len(result["uploaded"]) == 2 * (every + 3) and result["skipped"] == []
    for region in REGIONS:
        s3 = local_aws.client("s3", region)
        # Every tier of the build (a Gitaly Cluster's praefect tier and the monitoring
        # server's prometheus tier are not in the default one).
        for tier in ["main", *[t for t in TIERS if t not in ("praefect", "prometheus")], "service-catalog"]:
            key = f"gitlab-cfn/{__version__}/{template_key(tier)}"
            head = s3.head_object(Bucket=f"gl-releases-{region}", Key=key)
            assert head["ContentType"] == "application/x-yaml"
            assert len(head["Metadata"]["sha256"]) == 64
        s3.head_object(Bucket=f"gl-releases-{region}", Key=f"gitlab-cfn/{__version__}/manifest.json")
        # The boot bundle, beside templates/ where the servers look for it.
        (bundle,) = json.loads((build / "manifest.json").read_text())["files"].values()
        head = s3.head_object(Bucket=f"gl-releases-{region}", Key=f"gitlab-cfn/{__version__}/{bundle['path']}")
        assert head["ContentType"] == "application/gzip" and head["Metadata"]["sha256"] == bundle["sha256"]

    again = run_publish(standin, build)
    assert again.returncode == 0
    assert json.loads(again.stdout)["uploaded"] == []
    assert len(json.loads(again.stdout)["skipped"]) == 2 * (every + 3)
    assert (build / "launch.md").read_text().count("[Launch Stack](") == 2


def test_a_published_version_is_not_overwritten_without_force(local_aws, standin, build, tmp_path):
    buckets(local_aws)
    assert run_publish(standin, build).returncode == 0
    other = tmp_path / "other"
    compiler.write_build(config.from_dict({"az_count": 3}), other)
    refused = run_publish(standin, other)
    assert refused.returncode == 2
    assert f"--version: {__version__} is already published with other content" in refused.stderr
    forced = run_publish(standin, other, "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["uploaded"]
    renamed = run_publish(standin, other, "--version", "0.1.0-3az")
    assert renamed.returncode == 0 and json.loads(renamed.stdout)["key_prefix"] == "gitlab-cfn/0.1.0-3az/"


def test_a_stale_build_and_a_missing_bucket_are_refused(local_aws, standin, build):
    missing = run_publish(standin, build)
    assert missing.returncode == 2
    assert "--bucket: bucket gl-releases-us-east-1 does not exist" in missing.stderr
    buckets(local_aws)
    path = build / "templates" / "app.template.yaml"
    path.write_text(path.read_text() + "# edited by hand\n")
    stale = run_publish(standin, build)
    assert stale.returncode == 2
    assert "is stale (templates/app.template.yaml changed since it was built)" in stale.stderr
    s3 = local_aws.client("s3", "us-east-1")
    assert s3.list_objects_v2(Bucket="gl-releases-us-east-1").get("KeyCount", 0) == 0  # nothing written


@pytest.mark.parametrize(("field", "value", "message"), [
    ("regions", ["mars-1"], "--regions: 'mars-1' is not a region name"),
    ("version", "1.0 beta", "--version: letters, digits"),
    ("regions", [], "--regions: give at least one region"),
])
def test_bad_publish_arguments(field, value, message):
    kwargs = {"bucket": "b", "regions": ["us-east-1"], field: value}
    with pytest.raises(ConfigError, match=message):
        PublishRequest(**kwargs)


def test_links_parse_and_the_parent_deploys_from_the_published_url(local_aws, standin, build):
    buckets(local_aws)
    result = publish(PublishRequest(bucket="gl-releases", regions=REGIONS, build_dir=build), local_aws,
                     Progress(quiet=True))
    for region in REGIONS:
        link = urlparse(result.links[region])
        assert link.netloc == f"{region}.console.aws.amazon.com" and parse_qs(link.query)["region"] == [region]
        fragment = parse_qs(link.fragment.split("?", 1)[1])
        url = unquote(fragment["templateURL"][0])
        assert url == result.urls[region]
        assert fragment["param_TemplateBucketName"] == [f"gl-releases-{region}"]
        assert fragment["param_TemplateBucketRegion"] == [region]
        assert fragment["param_TemplateKeyPrefix"] == [f"gitlab-cfn/{__version__}/"]
        # The template URL names the main template in the stand-in's S3 (a private
        # bucket: fetched with credentials, as CloudFormation does; anonymously refused).
        bucket, key = urlparse(url).netloc.split(".")[0], urlparse(url).path.lstrip("/")
        body = local_aws.client("s3", region).get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (build / "templates" / "main.template.yaml").read_bytes()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{standin.endpoint}/{bucket}/{key}", timeout=10)

        # Launch from the published URL, with the parameters the link fills in.
        local_aws.client("ec2", region).create_key_pair(KeyName="ops")
        cert = local_aws.client("acm", region).request_certificate(DomainName="gitlab.example.test")["CertificateArn"]
        local_aws.client("ssm", region).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value="ami-0a11ab5e1c0de1851", Type="String")
        parameters = {
            "TemplateBucketName": fragment["param_TemplateBucketName"][0],
            "TemplateBucketRegion": fragment["param_TemplateBucketRegion"][0],
            "TemplateKeyPrefix": fragment["param_TemplateKeyPrefix"][0],
            "AvailabilityZones": f"{region}a,{region}b", "DomainName": "gitlab.example.test", "CertificateArn": cert,
            "GitSshCIDR": "203.0.113.0/24", "RemoteAccessCIDR": "198.51.100.0/24", "KeyPairName": "ops",
            "GitalyAmiId": "ami-0a11ab5e1c0de1851"}
        cfn = local_aws.client("cloudformation", region)
        stack_id = cfn.create_stack(StackName="launched", TemplateURL=url, Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
                                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])["StackId"]
        states = stack_states(cfn, stack_id)
        # The parent and every nested stack but DNS (no hosted zone).
        stacks = len(compiler.product_entries(json.loads((build / "manifest.json").read_text()))) - 1
        assert len(states) == stacks and {s.status for s in states} == {"CREATE_COMPLETE"}
