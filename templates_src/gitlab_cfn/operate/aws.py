"""boto3 clients for real AWS or for an endpoint such as the local stand-in.

Every command that talks to AWS takes ``--endpoint-url`` (or ``--local``, which
starts the stand-in) and gets its clients here, so the code path is the same
against AWS and against the stand-in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config


# botocore's standard retry mode (throttling, 5xx, dropped connections, with backoff);
# AWS_MAX_ATTEMPTS, the SDKs' own setting, changes the number of attempts.
def _retries() -> Config:
    try:
        attempts = max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "8")))
    except ValueError:
        attempts = 8
    return Config(retries={"max_attempts": attempts, "mode": "standard"})

STANDIN_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class Aws:
    endpoint_url: str | None = None
    standin: bool = False   # the local stand-in: its fake credentials, whatever the environment holds
    _clients: dict = field(default_factory=dict, repr=False)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            kwargs: dict[str, Any] = {"region_name": region, "config": _retries()}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
                session = boto3.session.Session()
                if self.standin or session.get_credentials() is None:
                    kwargs.update(STANDIN_CREDENTIALS)
            self._clients[key] = boto3.client(service, **kwargs)
        return self._clients[key]


def known_regions() -> set[str]:
    """Every region botocore's endpoint data names, in every partition (offline)."""
    session = boto3.session.Session()
    found: set[str] = set()
    for partition in session.get_available_partitions():
        found |= set(session.get_available_regions("cloudformation", partition_name=partition))
    return found


def check_region(region: str, flag: str = "--region") -> None:
    """Refuse a region that does not exist or is misspelt (``eu-wst-1``, ``EU-WEST-1``)."""
    from gitlab_cfn.errors import ConfigError

    regions = known_regions()
    if region in regions:
        return
    close = [region.lower()] if region.lower() in regions else \
        sorted(r for r in regions if _near(r, region.lower()))
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"{flag}: {region!r} is not an AWS region{hint}; regions are lower case, like eu-west-1 "
                      f"({len(regions)} known to botocore)")


def _near(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.85
