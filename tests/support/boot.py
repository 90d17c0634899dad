"""Boots a GitLab application server's real program the way an instance does, isolated from this machine.

A ``Server`` is a disk: overlay layers over this machine's ``/etc``, ``/var``,
``/opt`` and ``/usr/local`` (the image), kept between boots, so a reboot sees
what the first boot wrote. Each boot runs in new mount, network, UTS and PID
namespaces (``unshare``): the program is ``userdata.body("gitlab-app")`` at
``/opt/gitlab-cfn/boot/<sha256>/gitlab-app.sh``, run by bash with the user
data preamble's values exported, on the real paths (``/etc/gitlab``,
``/etc/ssh``, ``/etc/ssh_static``, ``/var/opt/gitlab``, ``/var/lib/gitlab-cfn``
...), with a fresh ``/run`` and ``/tmp``, and the server's own host name and loopback.
``slirp4netns`` gives the namespace the network of a VPC: this machine's
127.0.0.1 is 10.0.2.2, where the tests' PostgreSQL and AWS stand-in listen.

Real programs: bash, OpenSSH's ``sshd -t``, PostgreSQL's ``psql`` (at the
package's path ``/opt/gitlab/embedded/bin/psql``) against a real PostgreSQL
server with TLS, the AWS CLI (``.venv-awscli``) against the stand-in, curl,
ruby. Fakes, in ``fakebin/``: ``gitlab-ctl``, ``gitlab-rake``,
``gitlab-rails``, ``cfn-signal`` and ``systemctl`` (no systemd here; it knows
the ssh unit only and re-runs ``sshd -t`` on reload). They check their input
and append what they did to ``/var/log/gitlab-cfn-fakes.log``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gitlab_cfn.compile import userdata

REPO = Path(__file__).resolve().parents[2]
FAKEBIN = Path(__file__).resolve().parent / "fakebin"
AWSCLI = Path(os.environ.get("GITLAB_CFN_AWSCLI_VENV", REPO / ".venv-awscli")) / "bin" / "aws"
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
LAYERS = ("etc", "var", "opt", "usr/local")


def _kept_under_tmp() -> list[Path]:
    """What the server must still see of this machine's /tmp once it has its own: the
    checkout (its fakes and tool virtual environments), wherever it was cloned."""
    wanted = {REPO, AWSCLI.parent.parent.resolve(), Path(sys.executable).resolve().parent}
    return sorted(p for p in wanted if p.is_relative_to("/tmp"))
# Where the Gitaly role's fake gitlab-ctl keeps its state (on the server's disk).
FAKE_STATE = "/var/lib/gitlab-cfn-fake"
GITALY_CTL = f"""import os
from pathlib import Path
from support.disk import gitlab_ctl
sys.exit(gitlab_ctl(sys.argv[1:], Path(os.environ.get("FAKE_STATE", {FAKE_STATE!r}))))
"""
# slirp4netns: the host's loopback as seen from the namespace.
HOST = "10.0.2.2"
BOOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
NEEDS = {"redis-server": "redis-server", "sshd": "openssh-server", "slirp4netns": "slirp4netns", "unshare": "util-linux", "ruby": "ruby", "ip": "iproute2",
         "nginx": "nginx", "openssl": "openssl", "curl": "curl", "promtool": "prometheus"}


def missing_tools() -> list[str]:
    """What the harness needs and this machine lacks (``make test`` installs it)."""
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in NEEDS.items()
               if not shutil.which(tool) and not Path("/usr/sbin", tool).exists()]
    if not PG_BINS:
        missing.append("PostgreSQL server (Debian package postgresql)")
    if not AWSCLI.exists():
        missing.append(f"the AWS CLI ({AWSCLI}; make test installs it)")
    if os.geteuid() != 0:
        missing.append("root (namespaces and overlay mounts)")
    return missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- PostgreSQL ---------------------------------------------------------------------------------

class Postgres:
    """A real PostgreSQL server on 127.0.0.1:<free port>, TLS on, only ``hostssl`` in pg_hba.conf."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="gitlab-cfn-pg-"))
        self.port = free_port()
        self.bin = PG_BINS[-1]
        self.user, self.password, self.database = "gitlab", "s3cr3tDbPassw0rd", "gitlabhq_production"

    def _as_postgres(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                              check=True, cwd=self.dir, **kw)

    def start(self) -> Postgres:
        shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._as_postgres(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=peer",
                          "--auth-host=reject")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=gitlab-cfn-test-database", "-keyout", str(data / "server.key"),
                        "-out", str(data / "server.crt")], check=True, capture_output=True)
        for name in ("server.key", "server.crt"):
            shutil.chown(data / name, "postgres", "postgres")
        (data / "server.key").chmod(0o600)
        # Amazon RDS with rds.force_ssl: TLS or nothing.
        (data / "pg_hba.conf").write_text("local all postgres peer\n"
                                          "hostssl all all 127.0.0.1/32 scram-sha-256\n")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.dir}'\nssl = on\nfsync = off\n")
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "start")
        self.admin(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        return self

    def admin(self, sql: str, database: str = "postgres") -> str:
        return self._as_postgres(str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port), "-d", database,
                                 "-v", "ON_ERROR_STOP=1", "-qtAX", "-c", sql).stdout.strip()

    def fresh_database(self) -> None:
        """An empty database owned by the application user, as RDS creates it."""
        self.admin(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        self.admin(f"CREATE DATABASE {self.database} OWNER {self.user}")

    def query(self, sql: str) -> list[list[str]]:
        out = self.admin(sql, self.database)
        return [line.split("|") for line in out.splitlines()] if out else []

    def lock_sessions(self, key: int) -> list[tuple[str, bool]]:
        """Who holds (True) or awaits (False) advisory lock KEY now, from pg_locks."""
        rows = self.admin(f"""SELECT a.application_name, l.granted FROM pg_locks l JOIN pg_stat_activity a
                              USING (pid) WHERE l.locktype = 'advisory' AND l.objid = {key}
                              ORDER BY l.granted DESC, 1""")
        return [(name, granted == "t") for name, granted in (r.split("|") for r in rows.splitlines())]

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- Redis (ElastiCache) -------------------------------------------------------------------------

class Redis:
    """A real Redis server on 127.0.0.1:<free port> as ElastiCache runs one with
    TransitEncryptionEnabled and an AuthToken: TLS only (``port 0``; a plain connection is
    refused by the handshake), every command but AUTH refused until the token is given
    (``requirepass``). Clients are not asked for certificates (``tls-auth-clients no``):
    ElastiCache does not ask for them either. Its certificate is a throwaway self-signed one."""

    def __init__(self, password: str, name: str = "redis"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"gitlab-cfn-{name}-"))
        self.port, self.password, self.name = free_port(), password, name
        self.process: subprocess.Popen | None = None

    def start(self) -> Redis:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN=gitlab-cfn-test-{self.name}", "-keyout", str(self.dir / "server.key"),
                        "-out", str(self.dir / "server.crt")], check=True, capture_output=True)
        (self.dir / "redis.conf").write_text(
            f"bind 127.0.0.1\nport 0\ntls-port {self.port}\ntls-cert-file {self.dir / 'server.crt'}\n"
            f"tls-key-file {self.dir / 'server.key'}\ntls-auth-clients no\nrequirepass {self.password}\n"
            f"dir {self.dir}\nsave \"\"\nappendonly no\ndaemonize no\nlogfile {self.dir / 'log'}\n")
        self.process = subprocess.Popen(["redis-server", str(self.dir / "redis.conf")], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while self.command("PING") != "+PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log[-2000:]}")
            time.sleep(0.05)
        return self

    def command(self, *words: str, password: str | None = None) -> str:
        """One command over TLS after AUTH (this server's token unless PASSWORD): the first reply line."""
        from support.fakebin.fakelib import redis_exchange

        try:
            return redis_exchange("127.0.0.1", self.port, True, self.password if password is None else password,
                                  [list(words)])[-1]
        except OSError as exc:
            return f"error: {exc}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the account's secrets ----------------------------------------------------------------------

SECRETS = {
    "DB_SECRET_ARN": ("database", {"username": "gitlab", "password": "s3cr3tDbPassw0rd"}),
    "REDIS_SECRET_ARN": ("redis", {"token": "redisAuthT0ken"}),
    "GITALY_SECRET_ARN": ("gitaly", {"token": "gitalyT0ken"}),
    "SHELL_SECRET_ARN": ("shell", {"token": "shellT0ken"}),
    "ROOT_PASSWORD_SECRET_ARN": ("root-password", {"username": "root", "password": "r00tPassw0rd"}),
    # Filled in by the first server; "{}" means not yet (the app template's initial value).
    "RAILS_SECRETS_ARN": ("rails-secrets", {}),
    "HOST_KEYS_SECRET_ARN": ("ssh-host-keys", {}),
}
# The separate cache Redis's AUTH token (10k; tests give it to REDIS_CACHE_SECRET_ARN).
REDIS_CACHE_TOKEN = "redisCacheT0ken"
SECRET_VALUES = ["s3cr3tDbPassw0rd", "redisAuthT0ken", "gitalyT0ken", "shellT0ken", "r00tPassw0rd"]
REGION = "ap-southeast-2"
BUCKET_KINDS = ("artifacts", "external_diffs", "lfs", "uploads", "packages", "dependency_proxy",
                "terraform_state", "ci_secure_files", "pages", "backups")


def secrets_client(endpoint: str, **credentials):
    import boto3

    return boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=credentials.get("key", "testing"),
                        aws_secret_access_key=credentials.get("secret", "testing"))


def create_secrets(endpoint: str, stack: str = "gitlab-test") -> dict[str, str]:
    """The stack's secrets in the stand-in; their ARNs by preamble variable."""
    client = secrets_client(endpoint)
    return {variable: client.create_secret(Name=f"{stack}/{name}", SecretString=json.dumps(value))["ARN"]
            for variable, (name, value) in SECRETS.items()}


def secret_value(endpoint: str, arn: str) -> dict:
    return json.loads(secrets_client(endpoint).get_secret_value(SecretId=arn)["SecretString"])


def preamble_values(db_port: int, db_name: str, arns: dict[str, str], stack: str = "gitlab-test") -> dict[str, str]:
    """What the app template's user data exports, for this test network."""
    values = {
        "AWS_REGION": REGION,
        "CFN_STACK": stack,
        "CFN_RESOURCE": "AppAutoScalingGroup",
        "GITLAB_DOMAIN": "gitlab.engineering.example.com",
        "VPC_CIDR": "10.0.0.0/16",
        "DB_HOST": HOST,
        "DB_PORT": str(db_port),
        "DB_NAME": db_name,
        "REDIS_HOST": "master.gi1abc2defgh3ij.abcdef.apse2.cache.amazonaws.com",
        "REDIS_PORT": "6379",
        "GITALY_ADDRESS": "tcp://10.0.1.123:8075",
        # As the template gives them: the log groups' id, and the bundle parameter whose name
        # holds the parent stack's (lib/cloudwatch.sh puts the log group prefix together).
        "LOG_GROUP_ID": "0a1b2c3d",
        "BUNDLE_PARAMETER": f"/gitlab-cfn/{stack}/gitlab-app/boot-bundle",
        # Outbound e-mail off (the parameters' defaults).
        "EMAIL_SENDER": "",
        **arns,
    }
    for kind in BUCKET_KINDS:
        values[f"BUCKET_{kind.upper()}"] = f"gl-{kind.replace('_', '-')}-123456789012-{REGION}-0a1b2c3d"
    return values


# -- servers ------------------------------------------------------------------------------------

@dataclass
class Boot:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Disk:
    """A machine's disk, shared by both harnesses (``Server`` here, ``disk.Machine``): overlay
    layers over this machine's folders (``upper/<layer>``, ``work/<layer>`` under DIR), kept
    between boots, so a second boot is a reboot."""

    def __init__(self, directory: Path, layers: tuple[str, ...]):
        self.dir, self.layers = directory, layers
        for layer in layers:
            (self.dir / "upper" / layer).mkdir(parents=True, exist_ok=True)
            (self.dir / "work" / layer).mkdir(parents=True, exist_ok=True)

    def overlay_mounts(self) -> str:
        """The shell lines, run in a new mount namespace, that put the layers over the real folders."""
        up, work = self.dir / "upper", self.dir / "work"
        return "\n".join(f"mount -t overlay overlay -o lowerdir=/{layer},upperdir={up / layer},"
                         f"workdir={work / layer} /{layer}" for layer in self.layers)

    def path(self, inside: str) -> Path:
        """Where a server path lives on its disk (its upper layer)."""
        inside = inside.lstrip("/")
        for layer in sorted(self.layers, key=len, reverse=True):
            if inside == layer or inside.startswith(layer + "/"):
                return self.dir / "upper" / inside
        raise ValueError(f"{inside} is not on the server's own layers {self.layers}")

    def write(self, inside: str, text: str, mode: int = 0o644) -> Path:
        path = self.path(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def read(self, inside: str) -> str:
        return self.path(inside).read_text()

    def exists(self, inside: str) -> bool:
        return self.path(inside).exists()


class Server(Disk):
    """One instance's disk; ``boot()`` is a (re)boot of it."""

    def __init__(self, base: Path, name: str, version: str = "19.3.0-ee", role: str = "gitlab-app",
                 layers: tuple[str, ...] | None = None):
        # A Gitaly server's /dev is its own too: its data volume appears there.
        super().__init__(base / name, layers or (LAYERS + (("dev",) if role == "gitaly" else ())))
        self.name, self.role = name, role
        self.loops: list[str] = []
        self.program = userdata.body(role)
        self.program_path = f"/opt/gitlab-cfn/boot/{hashlib.sha256(self.program.encode()).hexdigest()}/{role}.sh"
        # Shell lines run in the namespaces as root just before the program (the instance's network, disks).
        self.setup_lines: list[str] = []
        self.install_image(version)

    def install_image(self, version: str) -> None:
        """What the AMI and cloud-init give an instance: the GitLab package (fakes for its
        commands), the AWS CLI, cfn-signal, this instance's SSH host keys, the boot program."""
        header = (f"#!{sys.executable}\nimport sys\nsys.path[:0] = [{str(FAKEBIN)!r}, {str(REPO / 'tests')!r}, "
                  f"{str(REPO / 'templates_src')!r}]\n")
        for name, where in (("gitlab-ctl", "/opt/gitlab/bin/gitlab-ctl"), ("gitlab-rake", "/opt/gitlab/bin/gitlab-rake"),
                            ("gitlab-rails", "/opt/gitlab/bin/gitlab-rails"), ("cfn-signal", "/opt/aws/bin/cfn-signal"),
                            ("amazon-cloudwatch-agent-ctl",
                             "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl")):
            self.write(where, header + (FAKEBIN / f"{name}.py").read_text(), 0o755)
        if self.role == "gitaly":
            # The Gitaly role's gitlab-ctl is support/disk.py's: it checks gitlab.rb for the
            # installed version and listens where gitaly['configuration'] says (its state in FAKE_STATE).
            self.write("/opt/gitlab/bin/gitlab-ctl", header + GITALY_CTL, 0o755)
            self.path(FAKE_STATE).mkdir(parents=True, exist_ok=True)
        systemctl = self.dir / "systemctl"
        systemctl.write_text(header + (FAKEBIN / "systemctl.py").read_text())
        systemctl.chmod(0o755)
        self.set_version(version)
        psql = self.path("/opt/gitlab/embedded/bin/psql")
        psql.parent.mkdir(parents=True, exist_ok=True)
        psql.unlink(missing_ok=True)
        psql.symlink_to(PG_BINS[-1] / "psql")
        aws = self.path("/usr/local/bin/aws")
        aws.parent.mkdir(parents=True, exist_ok=True)
        aws.unlink(missing_ok=True)
        aws.symlink_to(AWSCLI)
        keys = self.path("/etc/ssh")
        keys.mkdir(parents=True, exist_ok=True)
        for kind in HOST_KEY_TYPES:
            key = keys / f"ssh_host_{kind}_key"
            for old in (key, key.with_name(key.name + ".pub")):
                old.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{self.name}", "-f", str(key)],
                           check=True)
        self.write(self.program_path, self.program, 0o755)

    def attach_volume(self, volume_id: str, size_mib: int = 64) -> str:
        """An EBS volume: a sparse file behind a loop device, at the NVMe path EC2 gives
        VOLUME_ID, in the server's own /dev (``detach_volumes`` ends it)."""
        if "dev" not in self.layers:
            raise ValueError(f"{self.name}: a volume needs the server's own /dev (layers {self.layers})")
        image = self.dir / f"{volume_id}.img"
        with open(image, "wb") as f:
            f.truncate(size_mib * 1024 * 1024)
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                                text=True).stdout.strip()
        self.loops.append(device)
        link = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
        self.setup_lines += [f"mkdir -p {Path(link).parent}", f"ln -sfn {device} {link}"]
        return device

    def detach_volumes(self) -> None:
        for device in self.loops:
            subprocess.run(["losetup", "--detach", device], capture_output=True)
        self.loops.clear()

    def set_version(self, version: str) -> None:
        self.write("/opt/gitlab/embedded/service/gitlab-rails/VERSION", version + "\n")

    def start(self, env: dict[str, str]) -> subprocess.Popen:
        """Power on: the program runs in the server's namespaces (see ``wait``)."""
        mounts = self.overlay_mounts()
        keep = "\n".join(f"mkdir -p {path} && mount --bind /run/host-tmp/{path.relative_to('/tmp')} {path}"
                          for path in _kept_under_tmp())
        setup = f"""set -e
for _ in $(seq 400); do ip -4 addr show tap0 2>/dev/null | grep -q inet && break; sleep 0.025; done
ip -4 addr show tap0 | grep -q inet || {{ echo 'no network in the namespace' >&2; exit 97; }}
ip link set lo up
{mounts}
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
if [ -e /usr/bin/systemctl ]; then mount --bind {self.dir / 'systemctl'} /usr/bin/systemctl
else cp {self.dir / 'systemctl'} /usr/local/bin/systemctl; fi
# The server's own /tmp (this machine's /root stays: its Python runs the fakes and the AWS CLI),
# with the checkout still in place when it was cloned under /tmp.
mkdir /run/host-tmp && mount --bind /tmp /run/host-tmp
mount -t tmpfs -o mode=1777 tmpfs /tmp
{keep}
umount -l /run/host-tmp && rmdir /run/host-tmp
hostname {self.name}
{chr(10).join(self.setup_lines)}
cd /
exec bash {self.program_path}
"""
        boot_env = {"PATH": BOOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **env}
        process = subprocess.Popen(
            ["unshare", "--mount", "--net", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
             "bash", "-c", setup], env=boot_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL)
        process.started = time.monotonic()
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{process.pid}/ns/net") != own:
                    break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        process.slirp = subprocess.Popen(["slirp4netns", "--configure", "--mtu=65520", str(process.pid), "tap0"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return process

    @staticmethod
    def wait(process: subprocess.Popen, timeout: float = 180) -> Boot:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err += f"\n[harness: the boot did not end within {timeout}s]"
        finally:
            process.slirp.terminate()
            process.slirp.wait(timeout=10)
        return Boot(process.returncode, out, err, time.monotonic() - process.started)

    def boot(self, env: dict[str, str], timeout: float = 180) -> Boot:
        return self.wait(self.start(env), timeout)

    # -- evidence --------------------------------------------------------------------------------
    def events(self, command: str | None = None) -> list[dict]:
        if not self.exists("/var/log/gitlab-cfn-fakes.log"):
            return []
        events = [json.loads(line) for line in self.read("/var/log/gitlab-cfn-fakes.log").splitlines()]
        return [e for e in events if command is None or e["command"] == command]

    def signals(self) -> list[dict]:
        return self.events("cfn-signal")

    def clear_events(self) -> None:
        self.path("/var/log/gitlab-cfn-fakes.log").unlink(missing_ok=True)

    def snapshot(self, *roots: str) -> dict[str, bytes]:
        """Every file the server wrote under ROOTS, by path."""
        found = {}
        for root in roots:
            base = self.path(root)
            for path in sorted(base.rglob("*")) if base.exists() else []:
                if path.is_file():
                    found["/" + str(path.relative_to(self.dir / "upper"))] = path.read_bytes()
        return found


def render_gitlab_rb(version: str, values: dict[str, str], secrets: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The gitlab.rb the app program renders for an installed VERSION, without booting:
    the program is sourced (it then runs nothing) and its own functions render."""
    secrets = secrets or {"DB_USER": "gitlab", "DB_PASSWORD": "s3cr3tDbPassw0rd", "REDIS_TOKEN": "redisAuthT0ken",
                          "GITALY_TOKEN": "gitalyT0ken", "SHELL_SECRET": "shellT0ken"}
    with tempfile.TemporaryDirectory(prefix="gitlab-cfn-render-") as scratch:
        program = Path(scratch) / "gitlab-app.sh"
        program.write_text(userdata.body("gitlab-app"))
        version_file = Path(scratch) / "VERSION"
        version_file.write_text(version + "\n")
        script = (f"source {program}\nGITLAB_VERSION_FILE={version_file}\n"
                  "required_env\ncheck_installed_version\nrender_gitlab_rb\n")
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                              env={"PATH": BOOT_PATH, "LANG": "C.UTF-8", **values, **secrets})


def evaluate_gitlab_rb(text: str) -> dict:
    """A gitlab.rb evaluated by Ruby as the package's settings DSL does: {"settings", "calls", "assignments"}
    (support/gitlab_rb_eval.rb, the one evaluator of every harness)."""
    with tempfile.NamedTemporaryFile("w", suffix=".rb") as rb:
        rb.write(text)
        rb.flush()
        done = subprocess.run(["ruby", str(Path(__file__).resolve().parent / "gitlab_rb_eval.rb"), rb.name],
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout)
