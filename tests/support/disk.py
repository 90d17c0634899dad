"""A machine for the Gitaly and image-builder scripts, isolated in Linux namespaces.

``Machine`` runs a program as root with the real paths (/etc, /var, /opt, /dev,
/root, /home), each an overlay whose writes land in a scratch folder, /run a
fresh tmpfs, in its own mount and network namespaces (``unshare --mount
--net``): the real ``blkid``, ``wipefs``, ``mkfs.ext4``, ``mount``, ``sfdisk``,
``cloud-init``, ``dpkg-query`` and ``gpg`` act on it without touching this
machine's mounts, files or ports. The overlays' upper folders outlive each run,
so a second run is a reboot: the same disks and files, no mounts, no processes.

Data volumes are loop devices over small sparse files. Only what cannot run
here is faked, strictly: GitLab's ``gitlab-ctl`` (it checks gitlab.rb with
``ruby -c``, evaluates it, checks every setting against the installed
version's documented settings, and starts a TCP listener where
``gitaly['configuration']`` says Gitaly listens), ``cfn-signal``, and the
network services: ``aws`` (Secrets Manager, EC2 tags), ``curl`` (instance
metadata, packages.gitlab.com), ``apt-get``, ``snap``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from gitlab_cfn.compile import versions

from support.boot import Disk

SUPPORT = Path(__file__).resolve().parent
SOURCES = SUPPORT.parents[1] / "templates_src"
OVERLAID = ("/etc", "/var", "/opt", "/dev", "/root", "/home")
REGION = "ap-southeast-2"
INSTANCE_ID = "i-0fedcba9876543210"

LAYERS = tuple(folder.lstrip("/") for folder in OVERLAID)
# Runs inside the namespaces, as root: overlays (the disk's, boot.Disk.overlay_mounts), a fresh /run,
# loopback up.
SETUP = r"""
set -eu
shift
{mounts}
mount -t tmpfs -o mode=755 tmpfs /run
ip link set lo up
if [ -n "${DISK_LINK:-}" ]; then
  ( sleep "${DISK_DELAY:-0}"; mkdir -p "$(dirname "$DISK_LINK")"; ln -sfn "$DISK_DEVICE" "$DISK_LINK" ) &
  [ "${DISK_DELAY:-0}" != 0 ] || wait
fi
status=0
"$@" || status=$?
wait
if [ -f "$FAKE_STATE/listener.pid" ]; then
  kill "$(cat "$FAKE_STATE/listener.pid")" 2>/dev/null || true
  rm -f "$FAKE_STATE/listener.pid"
fi
exit "$status"
"""

FAKE_HEADER = f"""#!{sys.executable}
import json, os, pathlib, re, subprocess, sys
sys.path[:0] = [{str(SOURCES)!r}, {str(SUPPORT.parent)!r}]
STATE = pathlib.Path(os.environ["FAKE_STATE"])
def record():
    with open(STATE / "calls.log", "a") as f:
        f.write(" ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]) + "\\n")
def fail(message, code=2):
    sys.stderr.write(pathlib.Path(sys.argv[0]).name + " (fake): " + message + "\\n")
    sys.exit(code)
record()
args = sys.argv[1:]
"""

FAKES = {
    "gitlab-ctl": """
from support.disk import gitlab_ctl
sys.exit(gitlab_ctl(args, STATE))
""",
    "cfn-signal": """
expected = ["--exit-code", "--stack", "--resource", "--region"]
if len(args) != 8 or args[0::2] != expected or not re.fullmatch(r"-?[0-9]+", args[1]):
    fail("usage: cfn-signal --exit-code N --stack S --resource R --region R; got %r" % args)
with open(STATE / "signals.log", "a") as f:
    f.write(json.dumps(dict(zip(args[0::2], args[1::2]))) + "\\n")
""",
    "aws": """
secrets = json.loads((STATE / "secrets.json").read_text()) if (STATE / "secrets.json").exists() else {}
if len(args) == 10 and args[:2] == ["secretsmanager", "get-secret-value"] and \\
        args[2::2] == ["--region", "--secret-id", "--query", "--output"] and args[7::2] == ["SecretString", "text"]:
    if args[5] not in secrets:
        fail("An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation", 254)
    print(secrets[args[5]])
elif len(args) == 8 and args[:2] == ["ec2", "create-tags"] and args[2::2] == ["--region", "--resources", "--tags"] \\
        and re.fullmatch(r"i-[0-9a-f]{17}", args[5]) and re.fullmatch(r"Key=gitlab-cfn:bake,Value=(success|failed)", args[7]):
    with open(STATE / "tags.log", "a") as f:
        f.write(args[7] + "\\n")
else:
    fail("unexpected call %r" % args, 252)
""",
    "curl": """
from support.disk import curl
sys.exit(curl(args, STATE))
""",
    "apt-get": """
from support.disk import apt_get
sys.exit(apt_get(args, STATE))
""",
    "snap": """
fail("snap: nothing may be installed from the Snap Store here (the AWS CLI is on PATH) %r" % args, 1)
""",
}


# -- the machine ------------------------------------------------------------------------------

class Machine(Disk):
    """A machine over this one's files (``Disk``: the overlay layers of ``LAYERS``), no network."""

    def __init__(self, base: Path):
        super().__init__(base, LAYERS)
        self.base = base
        self.state = base / "state"
        self.bin = base / "bin"
        for folder in (self.state, self.bin, base / "upper", base / "work"):
            folder.mkdir(parents=True, exist_ok=True)
        for name, code in FAKES.items():
            path = self.bin / name
            path.write_text(FAKE_HEADER + code)
            path.chmod(0o755)
        self.loops: list[str] = []
        self.disk_env: dict[str, str] = {}

    # -- files, as the machine sees them (the overlays' upper folders) --------------------
    def upper(self, path: str) -> Path:
        return self.base / "upper" / path.lstrip("/")

    def write(self, path: str, text: str, mode: int = 0o644) -> Path:
        target = self.upper(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        return target

    def put_secrets(self, secrets: dict[str, dict]) -> None:
        (self.state / "secrets.json").write_text(json.dumps({k: json.dumps(v) for k, v in secrets.items()}))

    # -- disks ------------------------------------------------------------------------------
    def attach(self, image: Path, link: str, delay: float = 0) -> str:
        """Attach IMAGE as a loop device that appears at LINK (after DELAY seconds, on every run)."""
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        self.loops.append(device)
        self.disk_env = {"DISK_DEVICE": device, "DISK_LINK": link, "DISK_DELAY": str(delay)}
        return device

    def detach(self) -> None:
        for device in self.loops:
            subprocess.run(["losetup", "--detach", device], capture_output=True)
        self.loops.clear()

    # -- running ----------------------------------------------------------------------------
    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 180,
            ) -> subprocess.CompletedProcess:
        """ARGV as root inside a fresh namespace over this machine's files."""
        full = {
            "PATH": f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "FAKE_STATE": str(self.state),
            **self.disk_env,
            **(env or {}),
        }
        command = ["unshare", "--mount", "--net", "--propagation", "private", "--",
                   "bash", "-c", SETUP.replace("{mounts}", self.overlay_mounts()), "setup", str(self.base), *argv]
        return subprocess.run(command, capture_output=True, text=True, env=full, timeout=timeout)

    def shell(self, script: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(["bash", "-euo", "pipefail", "-c", script], **kwargs)

    def boot(self, program: str, env: dict[str, str], path: str = "/var/lib/cloud/instance/scripts/part-001",
             before: str = "") -> subprocess.CompletedProcess:
        """The joined boot program run by bash from a file of the machine, as cloud-init does."""
        self.write(path, program, 0o700)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        return self.shell(f"{before}\nexport {exports}\nbash {shlex.quote(path)}")

    def signals(self) -> list[dict]:
        log = self.state / "signals.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def calls(self, command: str) -> list[list[str]]:
        log = self.state / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [shlex.split(line)[1:] for line in lines if line.split(" ", 1)[0] == command]


def sparse_image(path: Path, size_mib: int = 64) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    return path


def namespaces_available() -> str | None:
    """Why the namespace machine cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, overlays, loop devices)"
    for tool in ("unshare", "losetup", "blkid", "wipefs", "mkfs.ext4", "sfdisk", "findmnt", "ip", "ruby"):
        if not shutil.which(tool):
            return f"{tool} is missing (make test-tools installs it)"
    return None


# -- GitLab's settings, per installed version ---------------------------------------------------

def installed_release(version_file: Path) -> str:
    """The settings release standing for the version in gitlab-rails' VERSION file."""
    text = version_file.read_text().strip()
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(-ee|-ce)?", text)
    if not m:
        raise ValueError(f"{version_file}: {text!r} is not a GitLab version")
    minor = (int(m.group(1)), int(m.group(2)))
    if minor not in versions.SETTINGS_RELEASE:
        raise ValueError(f"GitLab {text} is not a version gitlab-cfn supports ({versions.supported_range()})")
    return versions.SETTINGS_RELEASE[minor]


def evaluate_gitlab_rb(path: Path) -> dict:
    """gitlab.rb checked by ``ruby -c`` and evaluated: its assignments and calls."""
    syntax = subprocess.run(["ruby", "-c", str(path)], capture_output=True, text=True)
    if syntax.returncode != 0 or "Syntax OK" not in syntax.stdout:
        raise ValueError(f"{path}: not valid Ruby: {syntax.stderr.strip()}")
    evaluated = subprocess.run(["ruby", str(SUPPORT / "gitlab_rb_eval.rb"), str(path)],
                               capture_output=True, text=True)
    if evaluated.returncode != 0:
        raise ValueError(f"{path}: evaluation failed: {evaluated.stderr.strip()}")
    return json.loads(evaluated.stdout)


def undocumented(evaluated: dict, release: str) -> list[str]:
    """Settings, hash keys and calls the release's gitlab.rb template does not document."""
    known = versions.settings()[release]
    from support.gitlab_rb import documented_symbols

    keys, calls, symbols = set(known["keys"]), set(known["calls"]), documented_symbols(known)
    unknown = [f"{a['key']}" for a in evaluated["assignments"] if a["key"] not in keys]
    for a in evaluated["assignments"]:
        if a["symbols"] and a["key"] in keys:
            documented = set(symbols.get(a["key"], ()))
            unknown += [f"{a['key']}[:{s}]" for s in a["symbols"] if s not in documented]
    unknown += [c for c in evaluated["calls"] if c not in calls]
    return unknown


# -- fakes' bodies (run inside the namespaces) -------------------------------------------------

RAILS_VERSION = Path("/opt/gitlab/embedded/service/gitlab-rails/VERSION")
GITLAB_RB = Path("/etc/gitlab/gitlab.rb")
LISTENER = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(16); s.settimeout(1)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        conn, _ = s.accept(); conn.close()
    except socket.timeout:
        pass
"""


def gitlab_ctl(args: list[str], state: Path) -> int:
    """``gitlab-ctl``: reconfigure checks gitlab.rb for the installed version and starts Gitaly."""
    def fail(message: str) -> int:
        sys.stderr.write(f"gitlab-ctl (fake): {message}\n")
        return 1

    if args == ["reconfigure"]:
        try:
            release = installed_release(RAILS_VERSION)
            evaluated = evaluate_gitlab_rb(GITLAB_RB)
        except (OSError, ValueError) as exc:
            return fail(str(exc))
        unknown = undocumented(evaluated, release)
        if unknown:
            return fail(f"settings not documented for GitLab {release}: {', '.join(unknown)}")
        gitaly = next((a["value"] for a in evaluated["assignments"] if a["key"] == "gitaly['configuration']"), None)
        if not isinstance(gitaly, dict):
            return fail("gitaly['configuration'] is not a hash")
        for storage in gitaly.get("storage", []):
            Path(storage["path"]).mkdir(parents=True, exist_ok=True)
        (state / "reconfigured.json").write_text(json.dumps({"release": release, "gitaly": gitaly}))
        if (state / "gitaly-never-listens").exists() or "listen_addr" not in gitaly:
            return 0
        host, _, port = gitaly["listen_addr"].rpartition(":")
        listener = subprocess.Popen([sys.executable, "-c", LISTENER, host.strip("[]") or "0.0.0.0", port],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        (state / "listener.pid").write_text(str(listener.pid))
        return 0
    if args == ["status", "gitaly"]:
        pid = state / "listener.pid"
        if pid.exists() and Path(f"/proc/{pid.read_text().strip()}").exists():
            print(f"run: gitaly: (pid {pid.read_text().strip()}) 5s; run: log: (pid 1) 5s")
            return 0
        print("down: gitaly: 5s, normally up; run: log: (pid 1) 5s")
        return 3
    if args == ["stop"]:
        return 0
    return fail(f"unexpected command {args!r}")


GITLAB_KEY_URL = "https://packages.gitlab.com/gitlab/gitlab-{edition}/gpgkey"
IMDS = "http://169.254.169.254/latest"


def curl(args: list[str], state: Path) -> int:
    """``curl`` for the instance metadata service (IMDSv2 only) and GitLab's signing key."""
    def fail(message: str, code: int = 2) -> int:
        sys.stderr.write(f"curl (fake): {message}\n")
        return code

    urls = [a for a in args if a.startswith(("http://", "https://"))]
    if len(urls) != 1:
        return fail(f"one URL expected: {args!r}")
    url = urls[0]
    flags = [a for a in args if a != url]
    if not {"-fsS", "-fsSL"} & set(flags):
        return fail(f"call without -f (errors must fail): {args!r}")
    if url == f"{IMDS}/api/token":
        if flags != ["-fsS", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 300"]:
            return fail(f"token request {args!r}")
        print("TOKEN-abc", end="")
        return 0
    if url.startswith(f"{IMDS}/meta-data/"):
        if flags != ["-fsS", "-H", "X-aws-ec2-metadata-token: TOKEN-abc"]:
            return fail("metadata without the IMDSv2 token (the launch templates require tokens)", 22)
        item = url[len(f"{IMDS}/meta-data/"):]
        values = {"instance-id": INSTANCE_ID}
        if item not in values:
            return fail(f"404 for {item}", 22)
        print(values[item], end="")
        return 0
    for edition in ("ee", "ce"):
        if url == GITLAB_KEY_URL.format(edition=edition):
            if "-o" not in args:
                return fail("the key must be written to a file (-o)")
            out = Path(args[args.index("-o") + 1])
            out.write_bytes((state / "gitlab-key.asc").read_bytes())
            return 0
    # The CloudWatch agent's package and key (support/cloudwatch_agent.py), at the URLs AWS documents.
    from support.cloudwatch_agent import KEY_URL as AGENT_KEY_URL

    agent = re.fullmatch(r"https://amazoncloudwatch-agent-([a-z0-9-]+)\.s3\.\1\.amazonaws\.com/ubuntu/amd64/latest/"
                         r"(amazon-cloudwatch-agent\.deb(\.sig)?)", url)
    name = agent.group(2) if agent else ("amazon-cloudwatch-agent.gpg" if url == AGENT_KEY_URL else None)
    if name and (state / name).exists():
        if "-o" not in args:
            return fail("the download must be written to a file (-o)")
        Path(args[args.index("-o") + 1]).write_bytes((state / name).read_bytes())
        return 0
    return fail(f"no network here: {url}", 6)


def apt_get(args: list[str], state: Path) -> int:
    """``apt-get update`` and ``apt-get install``; installing GitLab needs its signed repository."""
    def fail(message: str, code: int = 100) -> int:
        sys.stderr.write(f"apt-get (fake): E: {message}\n")
        return code

    if args == ["update", "-q"]:
        for edition in ("ee", "ce"):
            listing = Path(f"/etc/apt/sources.list.d/gitlab_gitlab-{edition}.list")
            if listing.exists() and "signed-by=" in listing.read_text():
                problem = gitlab_repository_problem(edition)
                if problem:
                    return fail(f"GitLab's repository: {problem}")
        return 0
    if args[:3] != ["install", "-y", "-q"] or len(args) < 4:
        return fail(f"unexpected call {args!r}")
    if os.environ.get("DEBIAN_FRONTEND") != "noninteractive":
        return fail("install without DEBIAN_FRONTEND=noninteractive")
    for package in args[3:]:
        name, _, version = package.partition("=")
        if name not in ("gitlab-ee", "gitlab-ce"):
            if name == "python3-venv":
                continue
            return fail(f"Unable to locate package {name}")
        edition = name[-2:]
        if not re.fullmatch(r"\d+\.\d+\.\d+-" + edition + r"\.0", version):
            return fail(f"Version '{version}' for '{name}' was not found")
        problem = gitlab_repository_problem(edition)
        if problem:
            return fail(f"Unable to locate package {name} ({problem})")
        install_gitlab(edition, version)
    return 0



def gitlab_repository_problem(edition: str) -> str | None:
    """Why apt could not use GitLab's repository, or None."""
    name = f"gitlab_gitlab-{edition}"
    listing = Path(f"/etc/apt/sources.list.d/{name}.list")
    if not listing.exists():
        return f"{listing} is missing"
    codename = next((line.split("=", 1)[1].strip().strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                     if line.startswith("VERSION_CODENAME=")), "")
    lines = [line for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]
    m = re.fullmatch(rf"deb \[signed-by=(?P<key>\S+)\] https://packages\.gitlab\.com/gitlab/gitlab-{edition}/ubuntu/ "
                     rf"(?P<suite>\S+) main", lines[0]) if len(lines) == 1 else None
    if not m:
        return f"{listing} is not one signed deb line: {lines!r}"
    if m.group("suite") != codename:
        return f"suite {m.group('suite')} is not this system's {codename}"
    key = Path(m.group("key"))
    shown = subprocess.run(["gpg", "--show-keys", "--with-colons", str(key)], capture_output=True, text=True)
    if shown.returncode != 0 or "pub:" not in shown.stdout:
        return f"{key} is not a readable OpenPGP keyring"
    with open(key, "rb") as f:
        if f.read(1) == b"-":
            return f"{key} is ASCII-armored; apt wants a binary keyring for a .gpg file"
    return None


def install_gitlab(edition: str, version: str) -> None:
    """What the GitLab package leaves: /opt/gitlab, the dpkg record, /etc/gitlab/gitlab.rb."""
    rails = Path("/opt/gitlab/embedded/service/gitlab-rails")
    rails.mkdir(parents=True, exist_ok=True)
    (rails / "VERSION").write_text(version.split("-")[0] + f"-{edition}\n")
    Path("/opt/gitlab/bin").mkdir(parents=True, exist_ok=True)
    with open("/var/lib/dpkg/status", "a") as f:
        f.write(dpkg_stanza(f"gitlab-{edition}", version))


def dpkg_stanza(package: str, version: str) -> str:
    return (f"\nPackage: {package}\nStatus: install ok installed\nPriority: extra\nSection: misc\n"
            f"Installed-Size: 3000000\nMaintainer: GitLab, Inc. <support@gitlab.com>\nArchitecture: amd64\n"
            f"Version: {version}\nDescription: GitLab Enterprise Edition\n")
