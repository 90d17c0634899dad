"""A stand-in for AWS's CloudWatch agent package and its signing key, made with the real
programs: ``dpkg-deb`` builds a package named ``amazon-cloudwatch-agent`` holding the
control script at the agent's path, ``gpg`` signs it (detached, as AWS's ``.deb.sig``)
with a key generated here. The AMI builder's program downloads the three files through
the fake ``curl`` of ``support/disk.py`` and installs the package with the real dpkg.

The builder checks the key's fingerprint against AWS's; tests give it this key's
through ``GITLAB_CFN_CLOUDWATCH_AGENT_FINGERPRINT`` (``env()``).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "amazon-cloudwatch-agent"
CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
KEY_URL = "https://amazoncloudwatch-agent.s3.amazonaws.com/assets/amazon-cloudwatch-agent.gpg"
# Served by the fake curl from the machine's state folder under these names.
FILES = ("amazon-cloudwatch-agent.deb", "amazon-cloudwatch-agent.deb.sig", "amazon-cloudwatch-agent.gpg")


@functools.lru_cache(maxsize=None)
def _made() -> tuple[Path, str]:
    """(folder holding FILES, the key's fingerprint); made once per test process."""
    work = Path(tempfile.mkdtemp(prefix="gitlab-cfn-cwagent-"))
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    try:
        subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", "CloudWatch Agent <agent@example.com>",
                              "ed25519", "sign", "never"], check=True, capture_output=True)
        root = work / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {PACKAGE}\nVersion: 1.300064.0b1337-1\nArchitecture: all\n"
            "Maintainer: Test <agent@example.com>\nDescription: stand-in of the CloudWatch agent\n")
        ctl = root / CTL.lstrip("/")
        ctl.parent.mkdir(parents=True)
        ctl.write_text("#!/bin/sh\necho 'stand-in control script: the boot tests install their own fake' >&2\nexit 1\n")
        ctl.chmod(0o755)
        out = work / "out"
        out.mkdir()
        deb = out / FILES[0]
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True)
        subprocess.run(gpg + ["--detach-sign", "-o", str(out / FILES[1]), str(deb)], check=True, capture_output=True)
        key = subprocess.run(gpg + ["--export"], check=True, capture_output=True).stdout
        (out / FILES[2]).write_bytes(key)
        listing = subprocess.run(gpg + ["--with-colons", "--fingerprint"], check=True, capture_output=True,
                                 text=True).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work / "pkg", ignore_errors=True)
    return out, fingerprint


def seed(state: Path) -> None:
    """Put the package, its signature and the key where the fake curl serves them."""
    folder, _ = _made()
    for name in FILES:
        shutil.copyfile(folder / name, state / name)


def env() -> dict[str, str]:
    return {"GITLAB_CFN_CLOUDWATCH_AGENT_FINGERPRINT": _made()[1]}


@atexit.register
def cleanup() -> None:
    """Nothing is left in /tmp once the tests end."""
    if _made.cache_info().currsize:
        shutil.rmtree(_made()[0].parent, ignore_errors=True)
        _made.cache_clear()
