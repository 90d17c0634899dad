"""A Gitaly node of a Gitaly Cluster booted with the real disk programs (support/disk.py).

The same program as the single Gitaly server (``userdata.body("gitaly")``); in a
cluster its storage is named after the node (GITALY_STORAGE, the name Praefect's
virtual storage gives it) and it accepts the Praefect internal token
(GITALY_SECRET_ARN), never the external one the application servers hold.
"""

import json

import pytest
from gitlab_cfn.compile import userdata, versions
from support.disk import Machine, namespaces_available, sparse_image
from test_gitaly_boot import install_cloudwatch_agent

pytestmark = pytest.mark.skipif(namespaces_available() is not None,
                                reason=f"the namespace machine cannot run: {namespaces_available()}")

DISK_LINK = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0fedcba9876543210"
INTERNAL = "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:PraefectInternalToken-AbCdEf"
EXTERNAL = "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:PraefectExternalToken-AbCdEf"
ENV = {
    "AWS_REGION": "ap-southeast-2",
    "CFN_STACK": "gitlab-production-GitalyClusterStack-1A2B3C4D5E6F7",
    "CFN_RESOURCE": "GitalyNode2",
    "GITLAB_DOMAIN": "gitlab.engineering.example.com",
    "GITALY_SECRET_ARN": INTERNAL,
    "GITALY_STORAGE": "gitaly-2",
    "SHELL_SECRET_ARN": "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:ShellSecret-AbCdEf",
    "DATA_VOLUME_ID": "vol-0fedcba9876543210",
    # As the template gives them (lib/cloudwatch.sh puts the log group prefix together).
    "LOG_GROUP_ID": "0a1b2c3d",
    "BUNDLE_PARAMETER": "/gitlab-cfn/gitlab-production/gitaly/boot-bundle",
    "BACKUP_BUCKET_NAME": "gl-backups-123456789012-ap-southeast-2-0a1b2c3d",
    "GITALY_VOLUME_WAIT": "20",
    "GITALY_READY_TIMEOUT": "10",
}


@pytest.fixture
def machine(tmp_path):
    m = Machine(tmp_path / "gitaly-2")
    m.put_secrets({INTERNAL: {"token": "praefectInternalT0ken"}, EXTERNAL: {"token": "praefectExternalT0ken"},
                   ENV["SHELL_SECRET_ARN"]: {"token": "shellT0ken"}})
    m.write("/etc/fstab", "proc /proc proc defaults 0 0\n")
    m.attach(sparse_image(tmp_path / "volume.img"), DISK_LINK)
    install_cloudwatch_agent(m)
    yield m
    m.detach()


@pytest.mark.parametrize("minor", [versions.SUPPORTED_MINORS[0], versions.SUPPORTED_MINORS[-1]],
                         ids=lambda m: f"{m[0]}.{m[1]}")
def test_a_cluster_node_serves_its_node_storage_with_the_internal_token(machine, minor):
    """The oldest and newest supported versions boot; the file is the same on all
    (test_the_cluster_gitlab_rb_is_documented_on_every_supported_version)."""
    release = versions.SETTINGS_RELEASE[minor]
    machine.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", f"{release}-ee\n")
    result = machine.boot(userdata.body("gitaly"), ENV)
    assert result.returncode == 0, result.stderr
    reconfigured = json.loads((machine.state / "reconfigured.json").read_text())
    assert reconfigured["release"] == release
    gitaly = reconfigured["gitaly"]
    assert gitaly["storage"] == [{"name": "gitaly-2", "path": "/var/opt/gitlab/git-data/repositories"}]
    assert gitaly["auth"] == {"token": "praefectInternalT0ken"}
    assert gitaly["listen_addr"] == "0.0.0.0:8075"
    # Server-side repository backups go straight to the stack's backups bucket, in its region
    # (configure_gitaly.md, "Configure S3 storage"): what the package writes to config.toml's [backup].
    assert gitaly["backup"] == {"go_cloud_url": "s3://gl-backups-123456789012-ap-southeast-2-0a1b2c3d?region=ap-southeast-2"}
    assert [s["--exit-code"] for s in machine.signals()] == ["0"]
    assert "praefectInternalT0ken" not in result.stderr + result.stdout
    # Each cluster node ships Gitaly's log to the stack's groups, like the single server.
    agent = json.loads(machine.upper("/opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json").read_text())
    groups = {e["log_group_name"] for e in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    assert groups == {"/gitlab-cfn/gitlab-production/0a1b2c3d/gitaly", "/gitlab-cfn/gitlab-production/0a1b2c3d/boot"}


def test_the_cluster_gitlab_rb_is_documented_on_every_supported_version(machine, tmp_path):
    from support.disk import evaluate_gitlab_rb, undocumented

    machine.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", "19.3.0-ee\n")
    result = machine.boot(userdata.body("gitaly"), ENV)
    assert result.returncode == 0, result.stderr
    rb = machine.upper("/etc/gitlab/gitlab.rb")
    evaluated = evaluate_gitlab_rb(rb)
    for release in versions.SETTINGS_RELEASE.values():
        assert undocumented(evaluated, release) == [], release


def test_the_backup_keys_are_checked_against_each_version(machine):
    """backup/go_cloud_url are documented beside the template (configure_gitaly.md) for a hash
    each supported version's cookbook writes whole (data beyond_template); a misspelt key is not."""
    from support.gitlab_rb import unknown_settings

    machine.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", "19.3.0-ee\n")
    assert machine.boot(userdata.body("gitaly"), ENV).returncode == 0
    rb = machine.upper("/etc/gitlab/gitlab.rb").read_text()
    assert "go_cloud_url" in rb and unknown_settings(rb) == []
    assert unknown_settings(rb.replace("go_cloud_url:", "gocloud_url:")) == ["gitaly['configuration'][:gocloud_url]"]
    facts = versions.settings()
    for release in versions.SETTINGS_RELEASE.values():
        assert facts[release]["beyond_template"]["gitaly['configuration']"]["symbols"] == ["backup", "go_cloud_url"]


def test_a_bucket_name_s3_refuses_fails_the_boot(machine):
    machine.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", "19.3.0-ee\n")
    result = machine.boot(userdata.body("gitaly"), {**ENV, "BACKUP_BUCKET_NAME": "Backups_Bucket"})
    assert result.returncode == 1
    assert "error: BACKUP_BUCKET_NAME: 'Backups_Bucket' is not an S3 bucket name" in result.stderr
    assert not machine.upper("/etc/gitlab/gitlab.rb").exists()


def test_a_storage_name_praefect_cannot_address_fails_the_boot_before_anything_is_written(machine):
    machine.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", "19.3.0-ee\n")
    result = machine.boot(userdata.body("gitaly"), {**ENV, "GITALY_STORAGE": "Gitaly 2"})
    assert result.returncode == 1
    assert "error: GITALY_STORAGE: 'Gitaly 2' is not a storage name (default, or a cluster node's name such as gitaly-1)" \
        in result.stderr
    assert [s["--exit-code"] for s in machine.signals()] == ["1"]
    assert machine.calls("gitlab-ctl") == []
    assert not machine.upper("/etc/gitlab/gitlab.rb").exists()


def test_no_private_address_for_the_exporters_fails_the_boot_in_one_line(machine):
    """With a monitoring server (METRICS_SCRAPED) the exporters listen on the private IPv4
    address; this machine's network namespace has none (only loopback), so lib/exporters.sh's
    metrics_host fails, and the boot stops there: no gitlab.rb missing its exporter lines or the
    configuration's closing brace, no reconfigure, a FAILURE signal."""
    machine.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", "19.3.0-ee\n")
    result = machine.boot(userdata.body("gitaly"), {**ENV, "METRICS_SCRAPED": "true"})
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert error.endswith("error: this server has no private IPv4 address for its exporters (hostname -I: '')")
    assert [s["--exit-code"] for s in machine.signals()] == ["1"]
    assert machine.calls("gitlab-ctl") == []
    assert not machine.upper("/etc/gitlab/gitlab.rb").exists()
