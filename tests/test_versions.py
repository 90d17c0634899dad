"""The supported GitLab versions and the facts kept about each (compile/versions.py)."""

from __future__ import annotations

import pytest
from gitlab_cfn.compile import versions
from gitlab_cfn.errors import ConfigError


def test_every_supported_minor_has_a_release_with_derived_settings():
    assert list(versions.SETTINGS_RELEASE) == list(versions.SUPPORTED_MINORS)
    facts = versions.settings()
    assert sorted(facts) == sorted(versions.SETTINGS_RELEASE.values())
    for minor, release in versions.SETTINGS_RELEASE.items():
        assert versions.parse(release)[:2] == minor
        assert len(facts[release]["sha256"]) == 64
        # Each holds the settings every gitlab.rb of the project relies on.
        for key in ("gitlab_rails['db_host']", "gitlab_rails['monitoring_whitelist']", "letsencrypt['enable']",
                    "gitaly['configuration']", f"{versions.nginx_prefix(release)}['custom_gitlab_server_config']"):
            assert key in facts[release]["keys"], (release, key)


def test_the_nginx_prefix_moves_where_the_templates_move_it():
    facts = versions.settings()
    for minor, release in versions.SETTINGS_RELEASE.items():
        keys = set(facts[release]["keys"])
        new, old = "gitlab_rails['nginx']['listen_port']", "nginx['listen_port']"
        expected = "gitlab_rails['nginx']" if minor >= versions.NGINX_SUBKEY_FROM else "nginx"
        assert versions.nginx_prefix(release) == expected
        # The chosen form is the one that release's template documents, and the other is not.
        assert (new in keys, old in keys) == ((True, False) if expected != "nginx" else (False, True)), release


@pytest.mark.parametrize("version", ["18.11.0", "18.11.11", "19.0.8", "19.3.0", "19.3.12"])
def test_supported_versions_are_accepted(version):
    assert versions.check_supported(version) == tuple(int(x) for x in version.split("."))


@pytest.mark.parametrize("version, message", [
    ("18.10.8", "--gitlab-version: GitLab 18.10.8 is not supported; gitlab-cfn supports 18.11.x to 19.3.x "
                "(18.11, 19.0, 19.1, 19.2, 19.3)"),
    ("19.4.0", "--gitlab-version: GitLab 19.4.0 is not supported"),
    ("18.5.1", "--gitlab-version: GitLab 18.5.1 is not supported"),
    ("19.3", "--gitlab-version: '19.3' is not a GitLab version X.Y.Z (for example 19.3.0)"),
    ("19.03.0", "is not a GitLab version X.Y.Z"),
])
def test_other_versions_are_refused_with_one_line(version, message):
    with pytest.raises(ConfigError) as error:
        versions.check_supported(version)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_upgrades_go_one_minor_at_a_time_and_never_down():
    assert versions.check_upgrade("18.11.11", "19.0.8") == (19, 0, 8)
    assert versions.check_upgrade("19.2.4", "19.2.5") == (19, 2, 5)
    with pytest.raises(ConfigError, match="skips a minor version; upgrade one minor at a time \\(next: 19.0.x\\)"):
        versions.check_upgrade("18.11.11", "19.1.6")
    with pytest.raises(ConfigError, match="older than the running 19.3.0"):
        versions.check_upgrade("19.3.0", "19.2.4")
