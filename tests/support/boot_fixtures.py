"""Fixtures of the real-program boots (tests/support/boot.py), shared by the test_boot_*.py files."""

from __future__ import annotations

import atexit

import pytest

from support import boot


@pytest.fixture(scope="session")
def boot_tools():
    missing = boot.missing_tools()
    if missing:
        pytest.fail("the boot tests need " + "; ".join(missing) + ": run `make test` (it installs them)",
                    pytrace=False)


_POSTGRES: list[boot.Postgres] = []


@pytest.fixture(scope="session")
def postgres(boot_tools):
    """One server for the whole run, whichever test modules import this fixture."""
    if not _POSTGRES:
        _POSTGRES.append(boot.Postgres().start())
        atexit.register(_POSTGRES[0].stop)
    return _POSTGRES[0]


_REDIS: dict[str, boot.Redis] = {}


def redis_servers() -> dict[str, boot.Redis]:
    """The stack's ElastiCache replication groups for the whole run, started on first use:
    "main" with the AUTH token the harness's Redis secret holds, "cache" (10k's separate cache
    Redis) with its own (redisCacheT0ken, the token tests give REDIS_CACHE_SECRET_ARN)."""
    if not _REDIS:
        for name, password in (("main", boot.SECRETS["REDIS_SECRET_ARN"][1]["token"]), ("cache", boot.REDIS_CACHE_TOKEN)):
            _REDIS[name] = boot.Redis(password, f"redis-{name}").start()
            atexit.register(_REDIS[name].stop)
    return _REDIS


class Cloud:
    """One stack's worth of AWS (the stand-in) and database, and the servers booting against them."""

    def __init__(self, standin, postgres, base):
        self.standin, self.pg, self.base = standin, postgres, base
        self.redis = redis_servers()
        standin.reset()
        postgres.fresh_database()
        self.arns = boot.create_secrets(standin.endpoint)
        self.env = {
            **boot.preamble_values(postgres.port, postgres.database, self.arns),
            **self.redis_env(),
            # The instance profile's credentials, as the AWS CLI finds them on an instance.
            "AWS_ENDPOINT_URL": f"http://{boot.HOST}:{standin.port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            # A boot that never gets ready ends with the program's own reason, well before the harness's limit.
            "GITLAB_CFN_READINESS_TIMEOUT": "30",
            "GITLAB_CFN_DB_ATTEMPTS": "3",
            "GITLAB_CFN_DB_DELAY": "1",
        }

    def redis_env(self) -> dict[str, str]:
        """The ElastiCache endpoint as a server reaches the test's Redis (like DB_HOST)."""
        return {"REDIS_HOST": boot.HOST, "REDIS_PORT": str(self.redis["main"].port)}

    def cache_redis_env(self, secret_arn: str) -> dict[str, str]:
        """A separate cache Redis (10k), its token in SECRET_ARN."""
        return {"REDIS_CACHE_HOST": boot.HOST, "REDIS_CACHE_PORT": str(self.redis["cache"].port),
                "REDIS_CACHE_SECRET_ARN": secret_arn}

    def server(self, name: str = "server-1", version: str = "19.3.0-ee") -> boot.Server:
        return boot.Server(self.base, name, version)

    def secret(self, variable: str) -> dict:
        return boot.secret_value(self.standin.endpoint, self.arns[variable])

    def secret_versions(self, variable: str) -> int:
        client = boot.secrets_client(self.standin.endpoint)
        return len(client.list_secret_version_ids(SecretId=self.arns[variable])["Versions"])


@pytest.fixture
def cloud(standin, postgres, tmp_path, boot_tools) -> Cloud:
    return Cloud(standin, postgres, tmp_path)
