"""A fake machine for the boot scripts: recorded stand-ins for the commands they run.

``FakeMachine`` makes a scratch root (``GITLAB_CFN_ROOT``) and a bin folder of
fakes that append every call to a log. ``aws`` keeps Secrets Manager values in
files; ``psql`` runs the ``\\!`` lines of its input as the real one does;
``blkid``/``mkfs.ext4``/``mount`` keep a disk's filesystem in a state file, so a
second boot sees what the first one did.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

FAKE_HEADER = f"#!{sys.executable}\n" + '''
import json, os, sys, subprocess, pathlib, hashlib
STATE = pathlib.Path(os.environ["FAKE_STATE"])
def record(extra=""):
    with open(STATE / "calls.log", "a") as f:
        f.write(" ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]) + extra + "\\n")
'''

FAKES = {
    # Commands that must only ever be fakes in a test, whatever the machine has.
    "aws": '''
record()
args = sys.argv[1:]
def arg(name):
    return args[args.index(name) + 1]
store = STATE / "secrets"
store.mkdir(exist_ok=True)
def path_of(arn):
    return store / hashlib.sha1(arn.encode()).hexdigest()
if args[:2] == ["secretsmanager", "get-secret-value"]:
    p = path_of(arg("--secret-id"))
    if not p.exists() or (STATE / "aws-fails").exists():
        sys.stderr.write("An error occurred (ResourceNotFoundException)\\n"); sys.exit(254)
    print(p.read_text())
elif args[:2] == ["secretsmanager", "put-secret-value"]:
    source = arg("--secret-string")
    assert source.startswith("file://"), "secret values must be passed as files"
    path_of(arg("--secret-id")).write_text(pathlib.Path(source[7:]).read_text().strip())
    with open(STATE / "puts.log", "a") as f:
        f.write(arg("--secret-id") + "\\n")
elif args[:2] == ["ec2", "create-tags"]:
    pass
else:
    sys.stderr.write("fake aws: unexpected call\\n"); sys.exit(2)
''',
    "psql": '''
args = sys.argv[1:]
if any(a.startswith("-") and not a.startswith("--") and a.endswith("c") for a in args):
    record(); print("1"); sys.exit(0)
sql = sys.stdin.read()
record(" <<< " + " | ".join(l for l in sql.splitlines() if not l.startswith("\\\\!")))
for line in sql.splitlines():
    if line.startswith("\\\\!"):
        subprocess.run(line[2:], shell=True, check=False)
''',
    "blkid": '''
record()
dev = pathlib.Path(sys.argv[-1]).name
state = STATE / "disks" / dev
field = sys.argv[sys.argv.index("-s") + 1]
if not state.exists():
    sys.exit(2)
fs = json.loads(state.read_text())
print(fs[field])
''',
    "mkfs.ext4": '''
record()
disks = STATE / "disks"; disks.mkdir(exist_ok=True)
dev = pathlib.Path(sys.argv[-1]).name
(disks / dev).write_text(json.dumps({"TYPE": "ext4", "UUID": "3f1c2b9e-7d4a-4c55-9a61-" + dev[-12:].rjust(12, "0")}))
''',
    "mount": '''
record()
(STATE / "mounted").mkdir(exist_ok=True)
(STATE / "mounted" / hashlib.sha1(sys.argv[-1].encode()).hexdigest()).touch()
''',
    "mountpoint": '''
record()
sys.exit(0 if (STATE / "mounted" / hashlib.sha1(sys.argv[-1].encode()).hexdigest()).exists() else 1)
''',
    "gitlab-ctl": '''
record()
root = pathlib.Path(os.environ["GITLAB_CFN_ROOT"])
if sys.argv[1:2] == ["reconfigure"]:
    # The package generates the secrets that gitlab-secrets.json lacks, keeping the others.
    path = root / "etc/gitlab/gitlab-secrets.json"
    if path.parent.exists():
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("gitlab_rails", {"db_key_base": os.urandom(16).hex(), "secret_key_base": os.urandom(16).hex()})
        data.setdefault("gitlab_shell", {"secret_token": os.urandom(16).hex()})
        path.write_text(json.dumps(data))
if (STATE / "reconfigure-fails").exists() and sys.argv[1:2] == ["reconfigure"]:
    sys.exit(1)
''',
    "gitlab-rake": '''
record(" [GITLAB_ROOT_PASSWORD %s]" % ("set" if os.environ.get("GITLAB_ROOT_PASSWORD") else "unset"))
''',
    "cfn-signal": "record()\n",
    "gitlab-rails": "record()\n",
    "sshd": "record()\n",
    "systemctl": "record()\n",
    "apt-get": "record()\n",
    "snap": "record()\n",
    "curl": "record()\nprint('i-0123456789abcdef0')\n",
    "dpkg-query": "record()\nprint(os.environ.get('FAKE_GITLAB_VERSION', '18.5.1-ee.0'), end='')\n",
}


@dataclass
class FakeMachine:
    base: Path
    root: Path = field(init=False)
    state: Path = field(init=False)
    bin: Path = field(init=False)

    def __post_init__(self):
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.bin = self.base / "bin"
        for folder in (self.root, self.state, self.bin, self.root / "etc/gitlab", self.root / "etc/ssh"):
            folder.mkdir(parents=True, exist_ok=True)
        for name, code in FAKES.items():
            path = self.bin / name
            path.write_text(FAKE_HEADER + code)
            path.chmod(0o755)
        for kind in ("ed25519", "ecdsa", "rsa"):
            (self.root / f"etc/ssh/ssh_host_{kind}_key").write_text(f"PRIVATE {kind} {self.base.name}\n")
            (self.root / f"etc/ssh/ssh_host_{kind}_key.pub").write_text(f"ssh-{kind} AAAA {self.base.name}\n")

    # -- Secrets Manager ---------------------------------------------------------------
    def put_secret(self, arn: str, value: dict) -> None:
        import hashlib

        store = self.state / "secrets"
        store.mkdir(exist_ok=True)
        (store / hashlib.sha1(arn.encode()).hexdigest()).write_text(json.dumps(value))

    def secret(self, arn: str) -> dict:
        import hashlib

        return json.loads((self.state / "secrets" / hashlib.sha1(arn.encode()).hexdigest()).read_text())

    def share_secrets_with(self, other: FakeMachine) -> None:
        """Let another machine see this one's Secrets Manager (same account)."""
        (other.state / "secrets").mkdir(exist_ok=True)
        for path in (self.state / "secrets").iterdir():
            (other.state / "secrets" / path.name).write_text(path.read_text())

    def add_disk(self, by_id_name: str) -> Path:
        path = self.root / "dev/disk/by-id" / by_id_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    # -- running -----------------------------------------------------------------------
    def run(self, script_text: str, name: str = "user-data") -> subprocess.CompletedProcess:
        script = self.base / name
        script.write_text(script_text)
        script.chmod(0o755)
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.base),
            "GITLAB_CFN_ROOT": str(self.root),
            "FAKE_STATE": str(self.state),
            "PSQL": str(self.bin / "psql"),
            "LANG": "C.UTF-8",
        }
        return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)

    def calls(self) -> list[str]:
        log = self.state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def calls_to(self, command: str) -> list[list[str]]:
        return [shlex.split(c)[1:] for c in self.calls() if c.split(" ", 1)[0] == command]

    def clear_calls(self) -> None:
        for name in ("calls.log", "puts.log"):
            (self.state / name).unlink(missing_ok=True)

    def puts(self) -> list[str]:
        log = self.state / "puts.log"
        return log.read_text().splitlines() if log.exists() else []

    def file(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()

    def exists(self, path: str) -> bool:
        return (self.root / path.lstrip("/")).exists()


