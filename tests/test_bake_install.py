"""The AMI builder's program on a machine that looks like GitLab's AMI after its first boot.

The program is exactly what the builder runs (``userdata.body("bake")``), run by
bash from cloud-init's instance folder with the preamble's variables exported,
as root, with the real paths, inside mount and network namespaces
(support/disk.py). The real dpkg-query, gpg and cloud-init act on the machine;
apt-get, curl (instance metadata, packages.gitlab.com), aws, snap and gitlab-ctl
are strict fakes.

The machine is seeded with what GitLab's official AMI carries (omnibus-gitlab
19.3.0+ee.0 ``support/packer/update-script-ee.sh``: the package, its apt
repository, the per-instance first-boot script) and with what that script's
``gitlab-ctl reconfigure`` leaves on the builder (19.3.0+ee.0 cookbooks; see each
path below), plus what cloud-init leaves of an instance.
"""

import os
import shlex
import subprocess

import pytest
from gitlab_cfn.compile import userdata, versions
from gitlab_cfn.errors import ConfigError
from support import cloudwatch_agent, shellcheck
from support.disk import INSTANCE_ID, Machine, dpkg_stanza, namespaces_available

from support.processes import no_gpg_agent_outlives_the_test  # noqa: E402,F401  (autouse)

pytestmark = pytest.mark.skipif(namespaces_available() is not None or not os.path.exists("/usr/bin/cloud-init"),
                                reason=f"the namespace machine cannot run: {namespaces_available() or 'cloud-init is missing'}")

VERSION = versions.latest_example()
ENV = {"AWS_REGION": "ap-southeast-2", "GITLAB_VERSION": VERSION, "GITLAB_EDITION": "ee", "BAKE_SOURCE": "gitlab-ami"}
BUILDER = "i-0aaaabbbbccccdddd"
PROGRAM_PATH = f"/var/lib/cloud/instances/{BUILDER}/scripts/part-001"
UBUNTU_NOBLE = ('PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'
                "ID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\n")
KEYRING = "/usr/share/keyrings/gitlab_gitlab-ee-archive-keyring.gpg"
REPOSITORY = "/etc/apt/sources.list.d/gitlab_gitlab-ee.list"

# What GitLab's image and its first boot leave, with where each comes from
# (omnibus-gitlab 19.3.0+ee.0 unless named otherwise). None may reach the image.
LEFTOVERS = {
    # support/packer/update-script-ee.sh: `mv ~/ami-startup-script.sh /var/lib/cloud/scripts/per-instance/gitlab`
    "/var/lib/cloud/scripts/per-instance/gitlab": "#!/bin/bash\n# support/packer/ami-startup-script.sh\n"
                                                   "sudo GITLAB_ROOT_PASSWORD=${GITLAB_ROOT_PASSWORD} gitlab-ctl reconfigure\n",
    # ami-startup-script.sh rewrites external_url to the public name (postinst.erb copies the template first)
    "/etc/gitlab/gitlab.rb": 'external_url "http://ec2-3-25-1-2.ap-southeast-2.compute.amazonaws.com"\n',
    # package/libraries/helpers/secrets_helper.rb: SECRETS_FILE
    "/etc/gitlab/gitlab-secrets.json": '{"gitlab_rails": {"secret_key_base": "builder"}}\n',
    # package/libraries/omnibus_helper.rb: write_root_password (when the password was generated)
    "/etc/gitlab/initial_root_password": "Password: builder\n",
    # gitlab/recipes/add_trusted_certs.rb
    "/etc/gitlab/trusted-certs/.keep": "",
    # gitlab/recipes/bootstrap.rb
    "/var/opt/gitlab/bootstrapped": "All your bootstraps are belong to Chef\n",
    # postgresql/attributes/default.rb: postgresql['dir'] = /var/opt/gitlab/postgresql
    "/var/opt/gitlab/postgresql/data/PG_VERSION": "17\n",
    "/var/opt/gitlab/postgresql/data/base/16384/1259": "rows of the builder's database\n",
    # redis dump (gitlab-ctl-commands/upgrade.rb)
    "/var/opt/gitlab/redis/dump.rdb": "REDIS0011\n",
    # gitlab/recipes/gitlab-rails.rb: VERSION copy and the otp secret
    "/var/opt/gitlab/gitlab-rails/VERSION": f"{VERSION}-ee\n",
    "/var/opt/gitlab/gitlab-rails/etc/secret": "builder otp key\n",
    # gitaly/recipes/enable.rb: secret_file
    "/var/opt/gitlab/gitaly/.gitlab_secret": "builder\n",
    # package/libraries/handlers/gitlab.rb
    "/var/opt/gitlab/public_attributes.json": "{}\n",
    # gitlab-ctl-commands/lib/gitlab_ctl/util.rb: the Chef node named after the builder
    "/opt/gitlab/embedded/nodes/ip-172-31-5-6.ap-southeast-2.compute.internal.json": "{}\n",
    # package/attributes/default.rb: runit sv_dir and service_dir
    "/opt/gitlab/sv/postgresql/run": "#!/bin/sh\nexec chpst -P -U gitlab-psql postgres\n",
    "/var/log/gitlab/reconfigure/1764633600.log": "reconfigure of the builder\n",
    "/var/log/gitlab/postgresql/current": "database system is ready\n",
    # cloud-init: the builder's instance, its user data and logs
    f"/var/lib/cloud/instances/{BUILDER}/user-data.txt": "#!/bin/bash\nexport GITLAB_VERSION=...\n",
    f"/var/lib/cloud/instances/{BUILDER}/sem/config_scripts_per_instance": "",
    "/var/lib/cloud/data/instance-id": f"{BUILDER}\n",
    "/var/log/cloud-init.log": "cloud-init of the builder\n",
    "/var/log/cloud-init-output.log": "output of the builder's scripts\n",
    # the builder's identity and logins (update-script-ee.sh removes authorized_keys too)
    "/etc/ssh/ssh_host_ed25519_key": "builder host key\n",
    "/etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA builder\n",
    "/etc/ssh/ssh_host_rsa_key": "builder host key\n",
    "/etc/machine-id": "0123456789abcdef0123456789abcdef\n",
    "/root/.ssh/authorized_keys": "ssh-ed25519 AAAA operator\n",
    "/home/ubuntu/.ssh/authorized_keys": "ssh-ed25519 AAAA operator\n",
    "/root/.bash_history": "gitlab-rake gitlab:password:reset\n",
    "/home/ubuntu/.bash_history": "sudo cat /etc/gitlab/initial_root_password\n",
}
LINKS = {
    "/opt/gitlab/service/postgresql": "/opt/gitlab/sv/postgresql",
    "/var/lib/cloud/instance": f"/var/lib/cloud/instances/{BUILDER}",
}
# Folders that must hold nothing at all in the image (or not exist).
EMPTY = ["/etc/gitlab", "/var/opt/gitlab", "/var/log/gitlab", "/opt/gitlab/service", "/opt/gitlab/sv",
         "/opt/gitlab/embedded/nodes", "/var/lib/cloud", "/var/lib/gitlab-cfn"]
GLOBS = ["/etc/ssh/ssh_host_*", "/root/.*_history", "/home/*/.*_history", "/home/*/.ssh/authorized_keys"]


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory) -> bytes:
    """An OpenPGP public key standing in for GitLab's repository key (real gpg)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", "Packages <packages@example.com>", "ed25519", "sign",
                          "never"], check=True, capture_output=True)
    key = subprocess.run(gpg + ["--armor", "--export"], check=True, capture_output=True).stdout
    # Key generation starts a gpg-agent for this home: stop it, or it outlives the tests.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=True, capture_output=True)
    assert key.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    return key


def builder(tmp_path, signing_key, source="gitlab-ami") -> Machine:
    m = Machine(tmp_path / "builder")
    (m.state / "gitlab-key.asc").write_bytes(signing_key)
    m.write("/etc/os-release", UBUNTU_NOBLE)
    status = open("/var/lib/dpkg/status").read()
    if source == "gitlab-ami":
        # update-script-ee.sh: `dpkg -i` of the package, its INSTALLATION_TYPE, GitLab's repository.
        status += dpkg_stanza("gitlab-ee", f"{VERSION}-ee.0")
        m.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", f"{VERSION}-ee\n")
        m.write("/opt/gitlab/embedded/service/gitlab-rails/INSTALLATION_TYPE", "gitlab-aws-ami\n")
        m.write(REPOSITORY, "# this file was generated by packages.gitlab.com for\n"
                            "deb https://packages.gitlab.com/gitlab/gitlab-ee/ubuntu/ noble main\n"
                            "deb-src https://packages.gitlab.com/gitlab/gitlab-ee/ubuntu/ noble main\n")
        for path, text in LEFTOVERS.items():
            m.write(path, text)
        for link, target in LINKS.items():
            m.upper(link).parent.mkdir(parents=True, exist_ok=True)
            m.upper(link).symlink_to(target)
    m.write("/var/lib/dpkg/status", status)
    cloudwatch_agent.seed(m.state)
    return m


def bake(m: Machine, **env):
    return m.boot(userdata.body("bake"), {**ENV, **cloudwatch_agent.env(), **env}, path=PROGRAM_PATH)


def present(m: Machine, paths: list[str]) -> list[str]:
    """The paths (globs allowed) that exist on the machine."""
    script = "shopt -s nullglob dotglob\n" + "\n".join(
        f"for p in {p if '*' in p else shlex.quote(p)}; do [ -e \"$p\" ] || [ -L \"$p\" ] && echo \"$p\"; done"
        for p in paths)
    result = m.shell(script + "\ntrue")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def not_empty(m: Machine) -> list[str]:
    script = "\n".join(f"[ ! -d {d} ] || find {d} -mindepth 1" for d in EMPTY)
    result = m.shell(script)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def leftovers(m: Machine) -> list[str]:
    return present(m, [*LEFTOVERS, *LINKS, *GLOBS]) + not_empty(m)


def dpkg_version(m: Machine) -> str:
    return m.shell("dpkg-query -W -f '${Version}' gitlab-ee").stdout


# -- the image carries GitLab, its repository, and nothing of the builder -----------------------------

def test_the_image_forgets_gitlabs_first_boot_and_the_builders_state(tmp_path, signing_key):
    m = builder(tmp_path, signing_key)
    # The check sees every leftover before the bake: it is able to fail.
    before = leftovers(m)
    assert set(LEFTOVERS) | set(LINKS) <= set(before)
    assert "/etc/ssh/ssh_host_ed25519_key" in before and "/var/lib/cloud/instance" in before

    result = bake(m)
    assert result.returncode == 0, result.stderr
    assert leftovers(m) == []
    # cloud-init clean --machine-id: a new machine-id at the next boot (removed, or "uninitialized").
    machine_id = m.shell("cat /etc/machine-id 2>/dev/null || true").stdout
    assert machine_id in ("", "uninitialized\n")
    # The services the first boot started were stopped before their data was removed.
    assert m.calls("gitlab-ctl") == [["stop"]]

    # Kept: the package, GitLab's signed repository (one line, our keyring), the result tag.
    assert dpkg_version(m) == f"{VERSION}-ee.0"
    assert present(m, ["/opt/gitlab/embedded/service/gitlab-rails/VERSION", KEYRING, REPOSITORY]) == [
        "/opt/gitlab/embedded/service/gitlab-rails/VERSION", KEYRING, REPOSITORY]
    assert m.upper(REPOSITORY).read_text() == (
        f"deb [signed-by={KEYRING}] https://packages.gitlab.com/gitlab/gitlab-ee/ubuntu/ noble main\n")
    assert (m.state / "tags.log").read_text() == "Key=gitlab-cfn:bake,Value=success\n"
    assert ["ec2", "create-tags", "--region", "ap-southeast-2", "--resources", INSTANCE_ID,
            "--tags", "Key=gitlab-cfn:bake,Value=success"] in m.calls("aws")


def test_the_image_can_upgrade_gitlab_in_place_from_its_repository(tmp_path, signing_key):
    m = builder(tmp_path, signing_key)
    assert bake(m).returncode == 0
    # Later, on the Gitaly server made from the image: the pinned package comes from GitLab's repository.
    upgrade = m.shell("DEBIAN_FRONTEND=noninteractive apt-get install -y -q gitlab-ee=19.3.1-ee.0")
    assert upgrade.returncode == 0, upgrade.stderr
    # Without the repository the same command fails: the fake apt-get checks it.
    m.shell(f"rm {REPOSITORY}")
    missing = m.shell("DEBIAN_FRONTEND=noninteractive apt-get install -y -q gitlab-ee=19.3.1-ee.0")
    assert missing.returncode == 100 and "gitlab_gitlab-ee.list is missing" in missing.stderr


def test_an_ubuntu_source_gets_the_package_from_gitlabs_signed_repository(tmp_path, signing_key):
    m = builder(tmp_path, signing_key, source="ubuntu")
    result = bake(m, BAKE_SOURCE="ubuntu")
    assert result.returncode == 0, result.stderr
    assert ["install", "-y", "-q", f"gitlab-ee={VERSION}-ee.0"] in m.calls("apt-get")
    assert dpkg_version(m) == f"{VERSION}-ee.0"
    assert leftovers(m) == []
    assert (m.state / "tags.log").read_text() == "Key=gitlab-cfn:bake,Value=success\n"


@pytest.mark.parametrize("line, leftover", [
    ('rm -f "$ROOT"/etc/ssh/ssh_host_*', "/etc/ssh/ssh_host_ed25519_key"),
    ('rm -rf "$ROOT/var/opt/gitlab" "$ROOT/var/log/gitlab"', "/var/opt/gitlab/postgresql/data/PG_VERSION"),
    ('find "$ROOT/etc/gitlab" -mindepth 1 -delete', "/etc/gitlab/gitlab-secrets.json"),
    ('rm -f "$ROOT"/opt/gitlab/embedded/nodes/*.json', "/opt/gitlab/embedded/nodes/ip-172-31-5-6.ap-southeast-2.compute.internal.json"),
])
def test_each_removal_is_needed_a_leftover_fails_the_check(tmp_path, signing_key, line, leftover):
    program = userdata.body("bake")
    assert program.count(line) == 1
    m = builder(tmp_path, signing_key)
    result = m.boot(program.replace(line, ":"), {**ENV, **cloudwatch_agent.env()}, path=PROGRAM_PATH)
    assert result.returncode == 0, result.stderr
    assert leftover in leftovers(m)


# -- refusals -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["18.10.9", "19.4.0", "17.11.3"])
def test_an_unsupported_version_is_refused_before_anything_is_installed(tmp_path, signing_key, version):
    m = builder(tmp_path, signing_key, source="ubuntu")
    result = bake(m, GITLAB_VERSION=version, BAKE_SOURCE="ubuntu")
    assert result.returncode == 1
    assert f"GitLab {version} is not supported; gitlab-cfn supports 18.11.x to 19.3.x" in result.stderr
    assert m.calls("apt-get") == []
    assert (m.state / "tags.log").read_text() == "Key=gitlab-cfn:bake,Value=failed\n"


def test_an_image_with_another_gitlab_version_is_refused(tmp_path, signing_key):
    m = builder(tmp_path, signing_key)
    result = bake(m, GITLAB_VERSION="19.2.4")
    assert result.returncode == 1
    assert f"gitlab-ee {VERSION}-ee.0 is installed, not 19.2.4-ee.0" in result.stderr
    assert (m.state / "tags.log").read_text() == "Key=gitlab-cfn:bake,Value=failed\n"


# -- the bash version rule agrees with versions.py ------------------------------------------------------

CANDIDATES = ["18.11.0", "18.11.11", "18.10.9", "18.1.1", "18.110.0", "19.0.0", "19.1.6", "19.2.4", "19.3.0",
              "19.3.12", "19.4.0", "20.0.0", "17.11.3", "019.3.0", "19.03.0", "19.3", "19.3.0-ee", "19.3.0.1",
              " 19.3.0", "", "x.y.z", "1.11.0"]


def bash_accepts(version: str) -> subprocess.CompletedProcess:
    library = userdata.SCRIPTS_DIR / "lib"
    return subprocess.run(
        ["bash", "-c", 'source "$1"; source "$2"; check_supported_gitlab "$3"', "check",
         str(library / "common.sh"), str(library / "install.sh"), version],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]})


def python_accepts(version: str) -> bool:
    try:
        versions.check_supported(version)
        return True
    except ConfigError:
        return False


@pytest.mark.parametrize("version", CANDIDATES)
def test_the_builders_version_rule_is_versions_py(version):
    result = bash_accepts(version)
    assert (result.returncode == 0) == python_accepts(version), result.stderr
    assert result.returncode in (0, 1)


def test_the_builders_supported_minors_are_versions_py():
    library = userdata.SCRIPTS_DIR / "lib"
    shown = subprocess.run(["bash", "-c", 'source "$1"; source "$2"; printf "%s\\n" "${GITLAB_SUPPORTED_MINORS[@]}"',
                            "show", str(library / "common.sh"), str(library / "install.sh")],
                           capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [f"{a}.{b}" for a, b in versions.SUPPORTED_MINORS]


def test_the_builders_program_is_shellcheck_clean(tmp_path):
    path = tmp_path / "bake.sh"
    path.write_text(userdata.body("bake"))
    shellcheck.assert_clean(path)
