"""The boot bundle: the boot scripts packed into one content-addressed tarball.

User data stays a small fixed bootstrap (``scripts/bootstrap.sh``); what the
servers run at boot is published next to the templates, as the AWS Quick Starts
publish ``scripts/`` beside ``templates/``::

    <TemplateKeyPrefix>templates/<tier>.template.yaml
    <TemplateKeyPrefix>scripts/boot-<sha256>.tar.gz

The tarball holds one file per role, ``<role>.sh``: exactly ``userdata.body(role)``
(the libraries and the role script joined), which the bootstrap runs with
``bash``. It is deterministic: entries sorted, owner root, mode 0644, mtime 0,
gzip header without name or time, so the same scripts give the same bytes and
the same sha256, and a changed script gives a new key and a new hash in the
templates (which rolls the servers that boot from it).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass

from gitlab_cfn.compile import userdata

# The roles whose servers boot from the bundle (the AMI builder keeps its user data).
ROLES = ("bastion", "gitaly", "gitlab-app", "gitlab-sidekiq", "monitoring", "praefect")
SCRIPTS_DIR = "scripts"
# Where instances unpack it (bootstrap.sh): one folder per bundle hash.
UNPACK_DIR = "/opt/gitlab-cfn/boot"


@dataclass(frozen=True)
class Bundle:
    data: bytes
    sha256: str

    @property
    def key(self) -> str:
        """Key below the template key prefix, and path inside the build folder."""
        return key(self.sha256)

    @property
    def size(self) -> int:
        return len(self.data)


def key(sha256: str) -> str:
    return f"{SCRIPTS_DIR}/boot-{sha256}.tar.gz"


def pack(files: dict[str, bytes]) -> bytes:
    """A reproducible .tar.gz of ``{name: content}``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def contents() -> dict[str, bytes]:
    return {f"{role}.sh": userdata.body(role).encode() for role in ROLES}


@functools.lru_cache(maxsize=4)
def _build(files: tuple[tuple[str, bytes], ...]) -> Bundle:
    data = pack(dict(files))
    return Bundle(data, hashlib.sha256(data).hexdigest())


def build() -> Bundle:
    """The bundle of the scripts as they are now in ``scripts/``."""
    return _build(tuple(sorted(contents().items())))
