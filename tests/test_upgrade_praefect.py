"""scripts/gitlab-upgrade.sh on a Praefect server: GitLab's order for a Gitaly Cluster
(doc/update/zero_downtime.md): the deploy node alone migrates Praefect's database."""

import pytest
from test_upgrade import NEW, _fake, machine  # noqa: F401  (the scratch machine and its strict fakes)


@pytest.fixture
def praefect(machine, tmp_path):  # noqa: F811
    """The machine, with Praefect's binary and a gitlab-ctl that also knows `hup praefect`."""
    log = tmp_path / "calls.log"
    _fake(tmp_path / "bin", "gitlab-ctl", f"""
echo "gitlab-ctl $*" >> {log}
case "$*" in reconfigure|"hup praefect") ;; *) echo "gitlab-ctl: unexpected $*" >&2; exit 1 ;; esac
""")
    binary = tmp_path / "root" / "opt/gitlab/embedded/bin"
    binary.mkdir(parents=True)
    _fake(binary, "praefect", f"""
echo "praefect $*" >> {log}
[ "$*" = "-config /var/opt/gitlab/praefect/config.toml sql-migrate" ] || {{ echo "praefect: unexpected $*" >&2; exit 2; }}
""")
    return machine


@pytest.mark.parametrize("node, migrates", [("deploy", True), ("other", False)])
def test_only_the_deploy_node_migrates_praefects_database(praefect, node, migrates):
    # Nothing listens on 2305 here: everything up to the wait has happened, in order.
    result, calls = praefect("praefect", NEW, node)
    assert result.returncode == 1 and "nothing accepts connections on port 2305" in result.stderr
    migrate = ["praefect -config /var/opt/gitlab/praefect/config.toml sql-migrate"] if migrates else []
    assert calls[1:] == [f"apt-get -o DPkg::Lock::Timeout=600 install -y -q -o Dpkg::Options::=--force-confold "
                         f"gitlab-ee={NEW}-ee.0", "gitlab-ctl reconfigure", *migrate, "gitlab-ctl hup praefect"]
    assert praefect.state.read_text() == f"{NEW}-ee.0"


def test_a_praefect_node_that_is_neither_deploy_nor_other_is_refused(praefect):
    result, calls = praefect("praefect", NEW, "first")
    assert result.returncode == 1
    assert "praefect: the node is 'deploy' or 'other', not 'first'" in result.stderr
    assert calls == []
