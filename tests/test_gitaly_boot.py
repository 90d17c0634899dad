"""The Gitaly server's boot, with the real disk programs on loop devices (see support/disk.py).

The program is exactly what a Gitaly instance runs (``userdata.body("gitaly")``),
run by bash from a file with the preamble's variables exported, as root, with the
real paths, inside mount and network namespaces: util-linux's blkid, wipefs,
mount, findmnt, e2fsprogs' mkfs.ext4 act on a sparse file behind a loop device.
Only gitlab-ctl (strict: GitLab's settings of the installed version; it starts
a TCP listener where gitlab.rb says Gitaly listens), cfn-signal and aws are fakes.
"""

import hashlib
import json
import subprocess
import sys

import pytest
from gitlab_cfn.compile import userdata, versions
from support.disk import Machine, namespaces_available, sparse_image

# The volume mounts before GitLab's services start, and they do not start without it:
# a nofail mount is otherwise not ordered before them (systemd.mount(5)).
OPTIONS = ("defaults,nofail,noatime,x-systemd.before=gitlab-runsvdir.service,"
           "x-systemd.required-by=gitlab-runsvdir.service")

pytestmark = pytest.mark.skipif(namespaces_available() is not None,
                                reason=f"the namespace machine cannot run: {namespaces_available()}")

VOLUME_ID = "vol-0123456789abcdef0"
DISK_LINK = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
DATA_DIR = "/var/opt/gitlab/git-data"
ENV = {
    "AWS_REGION": "ap-southeast-2",
    "CFN_STACK": "gitlab-production-GitalyStack-1A2B3C4D5E6F7",
    "CFN_RESOURCE": "GitalyInstance",
    "GITLAB_DOMAIN": "gitlab.engineering.example.com",
    "GITALY_SECRET_ARN": "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:GitalyToken-AbCdEf",
    "SHELL_SECRET_ARN": "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:ShellSecret-AbCdEf",
    "DATA_VOLUME_ID": VOLUME_ID,
    "LOG_GROUP_PREFIX": "/gitlab-cfn/gitlab-production/0a1b2c3d",
    "GITALY_VOLUME_WAIT": "20",
    "GITALY_READY_TIMEOUT": "10",
}
FSTAB = "# /etc/fstab: static file system information.\nproc /proc proc defaults 0 0\n"


def program() -> str:
    return userdata.body("gitaly")


@pytest.fixture
def machine(tmp_path):
    m = Machine(tmp_path / "gitaly")
    m.put_secrets({ENV["GITALY_SECRET_ARN"]: {"token": "gitalyT0ken"},
                   ENV["SHELL_SECRET_ARN"]: {"token": "shellT0ken"}})
    m.write("/etc/fstab", FSTAB)
    installed(m, versions.latest_example())
    install_cloudwatch_agent(m)
    yield m
    m.detach()


def install_cloudwatch_agent(m: Machine) -> None:
    """The agent's control script, as the AMI has it (the fake of support/fakebin)."""
    from support.boot import FAKEBIN, REPO

    header = (f"#!{sys.executable}\nimport sys\nsys.path[:0] = [{str(FAKEBIN)!r}, "
              f"{str(REPO / 'templates_src')!r}]\n")
    m.write("/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl",
            header + (FAKEBIN / "amazon-cloudwatch-agent-ctl.py").read_text(), 0o755)


def installed(m: Machine, version: str) -> None:
    m.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", f"{version}-ee\n")


def uuid_of(image) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(image)],
                          capture_output=True, text=True).stdout.strip()


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fstab_lines(m: Machine) -> list[str]:
    return m.upper("/etc/fstab").read_text().splitlines()


def assert_failed(m: Machine, result, reason: str) -> None:
    assert result.returncode != 0
    assert reason in result.stderr, result.stderr
    assert [s["--exit-code"] for s in m.signals()] == ["1"]


# -- formatting: only a blank volume ---------------------------------------------------------------

@pytest.mark.parametrize("minor", versions.SUPPORTED_MINORS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_a_blank_volume_is_formatted_mounted_by_uuid_and_gitaly_listens(machine, tmp_path, minor):
    release = versions.SETTINGS_RELEASE[minor]
    installed(machine, release)
    image = sparse_image(tmp_path / "volume.img")
    machine.attach(image, DISK_LINK)
    result = machine.boot(program(), ENV)
    assert result.returncode == 0, result.stderr

    uuid = uuid_of(image)
    assert uuid, "the volume was not formatted"
    assert fstab_lines(machine) == FSTAB.splitlines() + [f"UUID={uuid} {DATA_DIR} ext4 {OPTIONS} 0 2"]
    assert "is blank (no signature, no partition table): formatting it" in result.stderr
    # The fake reconfigure accepted gitlab.rb for this version and Gitaly listened where it said.
    reconfigured = json.loads((machine.state / "reconfigured.json").read_text())
    assert reconfigured["release"] == release
    assert reconfigured["gitaly"]["listen_addr"] == "0.0.0.0:8075"
    assert reconfigured["gitaly"]["storage"] == [{"name": "default", "path": f"{DATA_DIR}/repositories"}]
    assert "Gitaly accepts connections on port 8075" in result.stderr
    assert machine.signals() == [{"--exit-code": "0", "--stack": ENV["CFN_STACK"],
                                  "--resource": "GitalyInstance", "--region": "ap-southeast-2"}]
    rb = machine.upper("/etc/gitlab/gitlab.rb")
    assert oct(rb.stat().st_mode & 0o777) == "0o600"
    assert "gitalyT0ken" not in result.stderr and "shellT0ken" not in result.stderr
    # The CloudWatch agent was given its configuration (which its fake control script
    # validated): Gitaly's log and the boot log, the data volume's disk metrics.
    agent = json.loads(machine.upper("/opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json").read_text())
    shipped = {e["file_path"]: e["log_group_name"] for e in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    assert shipped == {"/var/log/gitlab/gitaly/current": ENV["LOG_GROUP_PREFIX"] + "/gitaly",
                       "/var/log/cloud-init-output.log": ENV["LOG_GROUP_PREFIX"] + "/boot"}
    assert agent["metrics"]["metrics_collected"]["disk"]["resources"] == ["/", DATA_DIR]
    loaded = [json.loads(line) for line in machine.upper("/var/log/gitlab-cfn-fakes.log").read_text().splitlines()]
    assert [e["action"] for e in loaded if e["command"] == "amazon-cloudwatch-agent-ctl"] == ["fetch-config"]


def test_reboot_mounts_the_volume_by_uuid_and_a_second_boot_changes_nothing(machine, tmp_path):
    image = sparse_image(tmp_path / "volume.img")
    machine.attach(image, DISK_LINK)
    first = machine.boot(program(), ENV)
    assert first.returncode == 0, first.stderr
    # Repositories written while mounted land on the volume, not on the root disk.
    wrote = machine.shell(f"mount {DATA_DIR} && echo project > {DATA_DIR}/repositories/project.git && umount {DATA_DIR}")
    assert wrote.returncode == 0, wrote.stderr
    uuid = uuid_of(image)
    fstab = machine.upper("/etc/fstab").read_bytes()

    # Reboot: nothing is mounted; `mount -a` (as systemd does from fstab) finds the volume by its UUID.
    rebooted = machine.shell(f"mountpoint -q {DATA_DIR} && exit 9; mount -a; "
                             f"findmnt -n -o UUID,FSTYPE --mountpoint {DATA_DIR}; cat {DATA_DIR}/repositories/project.git")
    assert rebooted.returncode == 0, rebooted.stderr
    assert rebooted.stdout.split() == [uuid, "ext4", "project"]

    # A second run of the boot program after the reboot: no format, no new fstab line, data kept.
    (machine.state / "signals.log").unlink()
    second = machine.boot(program(), ENV, before="mount -a")
    assert second.returncode == 0, second.stderr
    assert "formatting" not in second.stderr
    assert machine.upper("/etc/fstab").read_bytes() == fstab
    assert uuid_of(image) == uuid
    kept = machine.shell(f"mount -a; cat {DATA_DIR}/repositories/project.git")
    assert kept.stdout == "project\n"
    assert [s["--exit-code"] for s in machine.signals()] == ["0"]


def test_a_volume_that_holds_a_filesystem_is_kept_and_mounted(machine, tmp_path):
    # The instance was replaced; the volume comes back with its repositories.
    content = tmp_path / "content"
    (content / "repositories/@hashed/ab/cd").mkdir(parents=True)
    (content / "repositories/@hashed/ab/cd/abcd.git").write_text("a repository\n")
    image = sparse_image(tmp_path / "volume.img")
    subprocess.run(["mkfs.ext4", "-q", "-d", str(content), str(image)], check=True)
    uuid = uuid_of(image)
    machine.attach(image, DISK_LINK)
    result = machine.boot(program(), ENV)
    assert result.returncode == 0, result.stderr
    assert f"holds ext4 {uuid}: keeping its data" in result.stderr
    assert uuid_of(image) == uuid
    assert fstab_lines(machine)[-1] == f"UUID={uuid} {DATA_DIR} ext4 {OPTIONS} 0 2"
    seen = machine.shell(f"mount -a; cat {DATA_DIR}/repositories/@hashed/ab/cd/abcd.git")
    assert seen.stdout == "a repository\n", seen.stderr


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_a_partition_table_without_filesystem_is_never_formatted(machine, tmp_path, label):
    image = sparse_image(tmp_path / "volume.img")
    subprocess.run(["sfdisk", "--quiet", str(image)], input=f"label: {label}\n,\n", text=True, check=True)
    before = digest(image)
    machine.attach(image, DISK_LINK)
    result = machine.boot(program(), ENV)
    assert_failed(machine, result, f"data volume {VOLUME_ID} holds a {label} partition table")
    assert "formats only blank volumes" in result.stderr
    assert digest(image) == before
    assert fstab_lines(machine) == FSTAB.splitlines()
    assert machine.calls("gitlab-ctl") == []


def test_ambiguous_signatures_are_never_formatted(machine, tmp_path):
    # An ext4 superblock and an ISO 9660 volume descriptor: blkid -p exits 8.
    image = sparse_image(tmp_path / "volume.img")
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    with open(image, "r+b") as f:
        f.seek(32768)
        f.write(b"\x01CD001\x01")
    before = digest(image)
    machine.attach(image, DISK_LINK)
    result = machine.boot(program(), ENV)
    assert_failed(machine, result, f"data volume {VOLUME_ID} holds ambiguous signatures (ext4 0x438 iso9660 0x8001)")
    assert digest(image) == before


def test_a_stale_fstab_line_for_the_data_folder_is_replaced_not_duplicated(machine, tmp_path):
    stale = f"UUID=00000000-1111-2222-3333-444444444444 {DATA_DIR} ext4 defaults,nofail,noatime 0 2"
    machine.write("/etc/fstab", FSTAB + stale + "\n")
    image = sparse_image(tmp_path / "volume.img")
    machine.attach(image, DISK_LINK)
    result = machine.boot(program(), ENV)
    assert result.returncode == 0, result.stderr
    assert fstab_lines(machine) == FSTAB.splitlines() + [
        f"UUID={uuid_of(image)} {DATA_DIR} ext4 {OPTIONS} 0 2"]


def test_another_filesystem_mounted_on_the_data_folder_fails_the_boot(machine, tmp_path):
    machine.attach(sparse_image(tmp_path / "volume.img"), DISK_LINK)
    result = machine.boot(program(), ENV, before=f"mkdir -p {DATA_DIR} && mount -t tmpfs tmpfs {DATA_DIR}")
    assert_failed(machine, result, f"{DATA_DIR} holds filesystem unknown, not the data volume's")
    assert machine.calls("gitlab-ctl") == []


# -- the device comes late, or never ------------------------------------------------------------------

def test_the_boot_waits_for_a_volume_that_appears_late(machine, tmp_path):
    image = sparse_image(tmp_path / "volume.img")
    machine.attach(image, DISK_LINK, delay=3)
    result = machine.boot(program(), ENV)
    assert result.returncode == 0, result.stderr
    assert uuid_of(image)
    assert [s["--exit-code"] for s in machine.signals()] == ["0"]


def test_a_volume_that_never_appears_fails_the_boot(machine):
    result = machine.boot(program(), {**ENV, "GITALY_VOLUME_WAIT": "2"})
    assert_failed(machine, result, f"data volume {VOLUME_ID} never appeared (waited 2s)")
    assert machine.calls("gitlab-ctl") == []


# -- success only once Gitaly listens ----------------------------------------------------------------

def test_gitaly_that_never_listens_fails_the_boot_with_the_reason(machine, tmp_path):
    machine.attach(sparse_image(tmp_path / "volume.img"), DISK_LINK)
    (machine.state / "gitaly-never-listens").touch()
    result = machine.boot(program(), {**ENV, "GITALY_READY_TIMEOUT": "3"})
    assert_failed(machine, result, "Gitaly does not accept connections on port 8075 after 3s")
    assert "gitlab-ctl status gitaly: down: gitaly" in result.stderr


def test_a_gitlab_rb_listening_on_another_port_fails_the_boot(machine, tmp_path):
    machine.attach(sparse_image(tmp_path / "volume.img"), DISK_LINK)
    wrong = program().replace('"0.0.0.0:$GITALY_PORT"', '"0.0.0.0:8076"')
    assert wrong != program()
    result = machine.boot(wrong, {**ENV, "GITALY_READY_TIMEOUT": "3"})
    assert_failed(machine, result, "Gitaly does not accept connections on port 8075 after 3s")


# -- the fake reconfigure is a gate: it refuses what GitLab does not document ------------------------

@pytest.mark.parametrize("change, version, message", [
    ("  listen_addr:", "19.3.0", "gitaly['configuration'][:listen_adr]"),
    ("letsencrypt['enable'] = false", "18.11.11", "gitlab_rails['nginx']['listen_port']"),
    ("gitlab_rails['auto_migrate'] = false", "19.3.0", "not valid Ruby"),
    (None, "18.10.9", "GitLab 18.10.9-ee is not a version gitlab-cfn supports"),
])
def test_the_fake_reconfigure_refuses_what_gitlab_would_not_apply(machine, tmp_path, change, version, message):
    installed(machine, version)
    text = program()
    if change == "  listen_addr:":
        text = text.replace(change, "  listen_adr:")
    elif change == "letsencrypt['enable'] = false":
        text = text.replace(change, change + "\ngitlab_rails['nginx']['listen_port'] = 80")
    elif change:
        text = text.replace(change, change + "\ngitlab_rails['x'] = {")
    machine.attach(sparse_image(tmp_path / "volume.img"), DISK_LINK)
    result = machine.boot(text, ENV)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert [s["--exit-code"] for s in machine.signals()] == ["1"]
