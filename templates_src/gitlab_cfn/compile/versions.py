"""The GitLab versions gitlab-cfn supports, in one place.

Supported: every release of the minors in ``SUPPORTED_MINORS``, 18.11 to 19.3.

- **Oldest, 18.11.** It is the last required upgrade stop of GitLab 18
  (the Linux package's preinst enforces 17.11 -> 18.2 -> 18.5 -> 18.8 -> 18.11 -> 19.2),
  so every 18.x installation can reach it, and a stack on 18.11 can move one minor
  at a time to every 19.x this project knows.
- **Newest, 19.3.** The newest release whose gitlab.rb template the settings check
  has (``data/gitlab-rb-settings.json``, derived by ``scripts/derive_gitlab_rb_keys.py``).
  A new minor is supported once its template's settings are derived and the boot
  tests pass against them.
- **nginx settings.** GitLab 19.2 moved the Rails nginx settings from ``nginx[...]``
  to ``gitlab_rails['nginx'][...]`` and still applies the old keys, with a
  deprecation warning (omnibus-gitlab 19.2.0+ee.0,
  ``files/gitlab-cookbooks/gitlab/libraries/gitlab_rails.rb``,
  ``translate_rails_nginx_settings``); the 19.2.x template still documents only the
  old form, and 19.3.0's only the new one; 19.1 and older silently ignore the new
  form. The boot script therefore writes the old form before ``NGINX_SUBKEY_FROM``
  and the new form from it, so every key it writes is documented for the version
  it runs on.
- **PostgreSQL.** GitLab 19.0 and later refuse to run on PostgreSQL older than 17.
- **Upgrades** go one minor at a time (GitLab's zero-downtime procedure for
  multi-node installations), so no required stop can be skipped.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from gitlab_cfn.errors import ConfigError

SUPPORTED_MINORS: tuple[tuple[int, int], ...] = ((18, 11), (19, 0), (19, 1), (19, 2), (19, 3))
# The release whose gitlab.rb template stands for each minor in the settings check.
SETTINGS_RELEASE = {(18, 11): "18.11.11", (19, 0): "19.0.8", (19, 1): "19.1.6",
                    (19, 2): "19.2.4", (19, 3): "19.3.0"}
NGINX_SUBKEY_FROM = (19, 3)
POSTGRESQL_17_FROM = (19, 0)
VERSION_PATTERN = r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
SETTINGS_FILE = Path(__file__).resolve().parents[1] / "data" / "gitlab-rb-settings.json"


def parse(version: str, field: str = "--gitlab-version") -> tuple[int, int, int]:
    """``"19.3.0"`` -> ``(19, 3, 0)``; anything else is a one-line ConfigError."""
    m = re.fullmatch(VERSION_PATTERN, str(version))
    if not m:
        raise ConfigError(f"{field}: {version!r} is not a GitLab version X.Y.Z (for example {latest_example()})")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def supported_range() -> str:
    first, last = SUPPORTED_MINORS[0], SUPPORTED_MINORS[-1]
    return f"{first[0]}.{first[1]}.x to {last[0]}.{last[1]}.x"


def latest_example() -> str:
    return SETTINGS_RELEASE[SUPPORTED_MINORS[-1]]


def check_supported(version: str, field: str = "--gitlab-version") -> tuple[int, int, int]:
    """The parsed version, or a ConfigError naming the supported range."""
    parsed = parse(version, field)
    if parsed[:2] not in SUPPORTED_MINORS:
        raise ConfigError(f"{field}: GitLab {version} is not supported; gitlab-cfn supports "
                          f"{supported_range()} ({', '.join(f'{a}.{b}' for a, b in SUPPORTED_MINORS)})")
    return parsed


def check_upgrade(current: str, target: str) -> tuple[int, int, int]:
    """Refuse a downgrade or a jump of more than one minor (GitLab's zero-downtime rule)."""
    old = check_supported(current, "current version")
    new = check_supported(target, "--gitlab-version")
    if new < old:
        raise ConfigError(f"--gitlab-version: {target} is older than the running {current}; "
                          "GitLab cannot be downgraded in place")
    step = SUPPORTED_MINORS.index(new[:2]) - SUPPORTED_MINORS.index(old[:2])
    if step > 1:
        following = SUPPORTED_MINORS[SUPPORTED_MINORS.index(old[:2]) + 1]
        raise ConfigError(f"--gitlab-version: {current} to {target} skips a minor version; upgrade one minor "
                          f"at a time (next: {following[0]}.{following[1]}.x)")
    return new


def nginx_prefix(version: str) -> str:
    """The gitlab.rb prefix of the Rails nginx settings on a version."""
    return "gitlab_rails['nginx']" if parse(version)[:2] >= NGINX_SUBKEY_FROM else "nginx"


@lru_cache(maxsize=1)
def settings() -> dict[str, dict]:
    """Per release of ``SETTINGS_RELEASE``: documented ``keys``, ``calls`` and hash ``symbols``."""
    return json.loads(SETTINGS_FILE.read_text())
