"""Processes a test must not leave behind, checked around each test that uses the fixture."""

from __future__ import annotations

import os

import pytest


def _gpg_agents() -> set[int]:
    agents = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline") as cmdline:
                    # a running agent (an exited one, not yet reaped, has no command line)
                    if cmdline.read().split("\0")[0].endswith("gpg-agent"):
                        agents.add(int(entry.name))
            except OSError:
                continue
    return agents


@pytest.fixture(autouse=True)
def no_gpg_agent_outlives_the_test():
    """The bake verifies signatures with gpg; an agent it starts would outlive it (and each test)."""
    before = _gpg_agents()
    yield
    left = {}
    for pid in _gpg_agents() - before:
        try:
            left[pid] = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
        except OSError:
            continue
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"a gpg-agent started by the bake was left running: {sorted(left.values())}"
