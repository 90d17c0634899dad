"""The boot harness's Redis and the fakes' Redis checks (support/boot.py ``Redis``,
support/fakebin/fakelib.py ``redis_failures``): the servers refuse what ElastiCache with
transit encryption and an AuthToken refuses, and the checks fail on each wrong setting."""

from __future__ import annotations

import pytest

from support.boot_fixtures import boot_tools, redis_servers  # noqa: F401  (fixtures)
from support.fakebin.fakelib import redis_exchange, redis_failures


@pytest.fixture
def servers(boot_tools):
    return redis_servers()


def rails(servers, **changes) -> dict:
    main, cache = servers["main"], servers["cache"]
    settings = {"redis_host": "127.0.0.1", "redis_port": main.port, "redis_ssl": True, "redis_password": main.password,
                "redis_cache_instance": f"rediss://127.0.0.1:{cache.port}", "redis_cache_password": cache.password}
    return {**settings, **changes}


def test_the_servers_speak_tls_only_and_want_their_own_token(servers):
    main, cache = servers["main"], servers["cache"]
    assert (main.password, cache.password) == ("redisAuthT0ken", "redisCacheT0ken")
    assert redis_exchange("127.0.0.1", main.port, True, main.password, [["PING"]]) == ["+OK", "+PONG"]
    with pytest.raises(OSError):
        redis_exchange("127.0.0.1", main.port, False, main.password, [["PING"]])
    with pytest.raises(OSError, match="WRONGPASS"):
        redis_exchange("127.0.0.1", cache.port, True, main.password, [["PING"]])
    with pytest.raises(OSError, match="NOAUTH"):
        redis_exchange("127.0.0.1", main.port, True, None, [["PING"]])


def test_the_readiness_redis_checks_pass_on_the_right_settings_only(servers):
    assert redis_failures(rails(servers)) == []
    # Without a separate cache, the persistent Redis serves the cache check too.
    assert redis_failures(rails(servers, redis_cache_instance=None)) == []
    cases = {
        "redis_ssl false": (rails(servers, redis_ssl=False), "redis_check, queues_check, shared_state_check: "),
        "wrong token": (rails(servers, redis_password="redisCacheT0ken"), "redis_check, queues_check, shared_state_check: "),
        "no password": (rails(servers, redis_password=None), "redis_check, queues_check, shared_state_check: "),
        "no host": (rails(servers, redis_host=None), "redis_check, queues_check, shared_state_check: no Redis host"),
        "cache redis://": (rails(servers, redis_cache_instance=f"redis://127.0.0.1:{servers['cache'].port}"), "cache_check: "),
        "cache wrong token": (rails(servers, redis_cache_password="redisAuthT0ken"), "cache_check: "),
        "plain, no cache": (rails(servers, redis_ssl=False, redis_cache_instance=None),
                            "redis_check, queues_check, shared_state_check, cache_check: "),
    }
    for case, (settings, named) in cases.items():
        failures = redis_failures(settings)
        assert len(failures) == 1 and failures[0].startswith(named), (case, failures)


def test_a_password_in_the_cache_url_is_used_when_no_cache_password_is_set(servers):
    cache = servers["cache"]
    url = f"rediss://:{cache.password}@127.0.0.1:{cache.port}"
    assert redis_failures(rails(servers, redis_cache_instance=url, redis_cache_password=None)) == []
