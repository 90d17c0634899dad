"""gitlab.rb is rendered for the GitLab version installed in the image, and only for supported ones.

The settings check is the Linux package's own: every key must be documented in
the gitlab.rb template of the release standing for the installed minor
(``versions.settings()``). The app program reads the installed version from
``/opt/gitlab/embedded/service/gitlab-rails/VERSION``.
"""

from __future__ import annotations

import re

import pytest
from gitlab_cfn.compile import userdata, versions

from support import boot
from support.boot_fixtures import boot_tools, cloud, postgres  # noqa: F401  (fixtures)
from support.gitlab_rb import unknown_settings

NGINX_KEYS = ("listen_port", "listen_https", "proxy_set_headers", "real_ip_trusted_addresses", "real_ip_header",
              "real_ip_recursive", "custom_gitlab_server_config")


def values() -> dict[str, str]:
    arns = {variable: f"arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:{name}-AbCdEf"
            for variable, (name, _) in boot.SECRETS.items()}
    return boot.preamble_values(5432, "gitlabhq_production", arns)


def rendered(version: str) -> str:
    done = boot.render_gitlab_rb(version, values())
    assert done.returncode == 0, done.stderr
    return done.stdout


def script_array(name: str) -> list[str]:
    m = re.search(rf"^{name}=\(([^)]*)\)$", userdata.body("gitlab-app"), re.M)
    assert m, f"{name} is not a bash array in scripts/gitlab-app.sh"
    return m.group(1).split()


def script_value(name: str) -> str:
    m = re.search(rf"^{name}=(\S+)$", userdata.body("gitlab-app"), re.M)
    assert m, f"{name} is not set in scripts/gitlab-app.sh"
    return m.group(1)


def test_the_boot_script_supports_exactly_the_versions_of_versions_py():
    assert script_array("SUPPORTED_MINORS") == [f"{a}.{b}" for a, b in versions.SUPPORTED_MINORS]
    assert script_value("NGINX_SUBKEY_FROM") == "{}.{}".format(*versions.NGINX_SUBKEY_FROM)


@pytest.mark.parametrize("minor", versions.SUPPORTED_MINORS, ids=lambda m: f"{m[0]}.{m[1]}")
def test_gitlab_rb_of_every_supported_version_passes_that_versions_settings_check(minor):
    release = versions.SETTINGS_RELEASE[minor]
    text = rendered(f"{release}-ee")
    assert unknown_settings(text, release) == []
    prefix = versions.nginx_prefix(release)
    settings = boot.evaluate_gitlab_rb(text)["settings"]
    nginx = settings["gitlab_rails"]["nginx"] if prefix.startswith("gitlab_rails") else settings["nginx"]
    assert sorted(nginx) == sorted(NGINX_KEYS)
    assert nginx["listen_https"] is False
    # Only one form: the other one would be ignored (before 19.2) or undocumented.
    other = settings.get("nginx", {}) if prefix.startswith("gitlab_rails") else settings["gitlab_rails"].get("nginx", {})
    assert other == {}


def test_the_settings_check_refuses_a_key_the_version_does_not_document():
    newest = rendered(f"{versions.SETTINGS_RELEASE[(19, 3)]}-ee")
    # The 19.3 form on 18.11: GitLab 18.11 would silently ignore these.
    assert sorted(unknown_settings(newest, versions.SETTINGS_RELEASE[(18, 11)])) == sorted(
        f"gitlab_rails['nginx']['{key}']" for key in NGINX_KEYS)
    oldest = rendered(f"{versions.SETTINGS_RELEASE[(18, 11)]}-ee")
    assert sorted(unknown_settings(oldest, versions.SETTINGS_RELEASE[(19, 3)])) == sorted(
        f"nginx['{key}']" for key in NGINX_KEYS)
    assert unknown_settings(oldest + "gitlab_rails['db_hots'] = 'x'\n", "18.11.11") == ["gitlab_rails['db_hots']"]
    assert unknown_settings("extrnal_url 'https://a.b'\n", "19.3.0") == ["extrnal_url"]
    assert unknown_settings("gitaly['configuration'] = {\n  listen_adr: '0.0.0.0:8075',\n}\n", "19.3.0") == [
        "gitaly['configuration'][:listen_adr]"]


@pytest.mark.parametrize("version", ["18.5.1-ee", "19.4.0-ee", "18.10.8", "19.3", "nineteen"])
def test_an_unsupported_or_unreadable_installed_version_is_refused_with_one_line(version):
    done = boot.render_gitlab_rb(version, values())
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    if re.match(r"^\d+\.\d+\.\d+", version) and version.count(".") == 2:
        assert line.endswith(f"error: installed GitLab {version} is not supported: gitlab-cfn supports "
                             f"18.11.x to 19.3.x (18.11 19.0 19.1 19.2 19.3); bake an image of a supported version")
    else:
        assert f"installed GitLab version '{version}'" in line and "is not X.Y.Z[-ee]" in line


def test_an_old_image_boots_with_the_old_nginx_keys_and_the_fake_reconfigure_accepts_them(cloud):
    server = cloud.server(version="18.11.11-ee")
    result = server.boot(cloud.env)
    assert result.returncode == 0, result.stderr
    (reconfigure,) = [e for e in server.events("gitlab-ctl") if e["action"] == "reconfigure"]
    assert reconfigure["release"] == "18.11.11"
    assert "nginx['listen_port'] = 80" in server.read("/etc/gitlab/gitlab.rb")


def test_an_unsupported_image_fails_its_boot_before_writing_anything(cloud):
    server = cloud.server(version="18.5.1-ee")
    result = server.boot(cloud.env)
    assert result.returncode == 1
    assert [s["exit_code"] for s in server.signals()] == [1]
    assert "installed GitLab 18.5.1-ee is not supported" in result.stderr
    assert not server.exists("/etc/gitlab/gitlab.rb")
    assert server.events("gitlab-ctl") == []
