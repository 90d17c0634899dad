"""Shared fixtures: compiled templates for a few build configs, parsed once per session."""

from __future__ import annotations

import functools
import json
import signal

import pytest
import yaml
from gitlab_cfn.compile import compiler, config



def _terminated(signum, frame):
    """SIGTERM ends a test run as Ctrl-C does: fixtures are torn down and the session's
    servers (PostgreSQL, Redis, the stand-in) stopped by their finalizers and atexit
    handlers. By default SIGTERM ends Python at once and leaves them running."""
    raise KeyboardInterrupt


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _terminated)

# Configs every structural test runs against: the guide's POC and the other shapes.
VARIANTS = {
    "default": {},
    "three-az": {"az_count": 3},
    "lean": {
        "nat_gateways": "single",
        "bastions": False,
        "ssh_key_pair": False,
        "database": {"storage_type": "gp3"},
        "gitaly": {"volume_type": "gp3"},
        "app": {"gitlab_ami": "image-id"},
    },
    # Every resource a size can add: Sidekiq group, cache and persistent Redis, Gitaly
    # Cluster beside the kept single server, Praefect's own database, the monitoring server.
    "cluster": {
        "size": "10k",
        "az_count": 3,
        "gitaly": {"keep_single_server": True},
        "praefect": {"database": "own"},
        "monitoring": {"node": True},
    },
}


@functools.lru_cache(maxsize=None)
def _compiled(key: str) -> dict:
    cfg = config.from_dict(json.loads(key))
    texts = compiler.compile_templates(cfg)
    return {name.removesuffix(".template.yaml"): yaml.safe_load(text) for name, text in texts.items()}


def templates_for(cfg: dict | None = None) -> dict[str, dict]:
    """Parsed templates keyed by tier name (``main`` is the parent)."""
    return _compiled(json.dumps(cfg or {}, sort_keys=True))


@pytest.fixture
def default() -> dict[str, dict]:
    return templates_for({})


@pytest.fixture(params=sorted(VARIANTS))
def variant(request) -> tuple[str, dict, dict[str, dict]]:
    return request.param, VARIANTS[request.param], templates_for(VARIANTS[request.param])


def resources(template: dict, rtype: str | None = None) -> dict[str, dict]:
    return {
        name: res for name, res in template.get("Resources", {}).items()
        if rtype is None or res["Type"] == rtype
    }


def props(template: dict, logical_id: str) -> dict:
    return template["Resources"][logical_id].get("Properties", {})


# -- the local AWS stand-in ----------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _own_standin_session(tmp_path_factory):
    """--local in the tests never finds the person's own `gitlab-cfn standin` session."""
    import os

    os.environ["GITLAB_CFN_STANDIN_SESSION"] = str(tmp_path_factory.mktemp("standin-session") / "session.json")


@pytest.fixture(scope="session")
def standin():
    """moto's server on 127.0.0.1, one process for the whole session."""
    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.standin import StandIn

    server = StandIn()
    try:
        server.start()
    except ConfigError as exc:
        # Not installed (pytest run by hand): one message for the session, not an error per test.
        pytest.exit(f"{exc}; or 'make test', which installs everything the suite needs", returncode=3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_aws(standin):
    """A clean stand-in account for one test, and clients pointed at it."""
    from gitlab_cfn.operate.aws import Aws

    standin.reset()
    return Aws(endpoint_url=standin.endpoint)
