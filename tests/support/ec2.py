"""EC2 for a stand-in deploy: every instance the stand-in launches boots, on the real-program harness.

``Hypervisor`` polls the stand-in's ``DescribeInstances`` (as the test's own
thread) and, for each new instance, reads its user data
(``DescribeInstanceAttribute userData``, what cloud-init receives), and runs it
unchanged in a ``boot.Server`` of its own, as cloud-init does
(``/var/lib/cloud/instance/scripts/part-001``), with cloud-init's
``/var/lib/cloud/data/instance-id``. The program is the instance's whole user
data: the preamble CloudFormation resolved, then the bootstrap, which reads the
SSM parameter, downloads the boot bundle from the stand-in's S3 with the real
AWS CLI, checks its sha256 and runs the role's script. Its ``cfn-signal`` (the
fake of ``fakebin/``) sends ``SignalResource`` to the stand-in, whose
``CreationPolicy`` (``signals.py``) completes or fails the resource from it.

What the harness plays, besides EC2:
- RDS: the test's PostgreSQL (TLS only) stands for the stack's DB instance. Its
  master user takes the password of the secret of the DB instance's own stack (what RDS
  does with ``MasterUserPassword``), the database is new, and on each server the DB
  instance's endpoint name resolves to a forwarder, on its port, to it (the VPC's route).
  All of it is read from the stand-in's RDS and EC2, never from the user data: the user
  data's wiring is what the boot checks.
- ElastiCache: the test's Redis (TLS only, AUTH required) stands for the stack's replication
  group: it takes the AUTH token of the secret of the group's own stack (what ElastiCache
  does with ``AuthToken``), and the group's primary endpoint name resolves to a forwarder,
  on its port, to it. Read from the stand-in's ElastiCache and CloudFormation, as for RDS.
- EBS: each volume the stand-in attached to a Gitaly instance is a sparse file behind a
  loop device, at the NVMe path EC2 gives it; its ``/dev`` is an overlay of its own.
Roles it cannot boot (the bastions install packages from the internet) are refused:
deploy a build without them.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from support import boot

SUPPORT = Path(__file__).resolve().parent
DB_ALIAS = "127.0.0.2"  # where the RDS endpoint's name points on a server
REDIS_ALIAS = "127.0.0.3"  # where the ElastiCache primary endpoint's name points on a server
# The boot scripts' waits, shortened for tests (their defaults are minutes).
KNOBS = {
    "GITLAB_CFN_READINESS_TIMEOUT": "30",
    "GITLAB_CFN_DB_ATTEMPTS": "3",
    "GITLAB_CFN_DB_DELAY": "1",
    "GITALY_VOLUME_WAIT": "20",
    "GITALY_READY_TIMEOUT": "15",
}


def preamble(user_data: str) -> dict[str, str]:
    """The values a user data preamble exports (``export NAME='value'``)."""
    return dict(re.findall(r"^export ([A-Z][A-Z0-9_]*)='([^'\n]*)'$", user_data, flags=re.M))


@dataclass
class Booted:
    instance_id: str
    role: str
    server: boot.Server
    result: boot.Boot | None = None
    process: object = None
    terminated: bool = False


class Hypervisor:
    def __init__(self, standin, postgres: boot.Postgres, base: Path, region: str, redis: boot.Redis | None = None):
        if redis is None:
            from support.boot_fixtures import redis_servers

            redis = redis_servers()["main"]
        self.standin, self.pg, self.base, self.region, self.redis = standin, postgres, base, region, redis
        self._redis_password = redis.password
        self._elasticache: tuple[str, int] | None = None
        self.booted: dict[str, Booted] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rds: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll, name="hypervisor", daemon=True)

    # -- AWS --------------------------------------------------------------------------------------
    def _client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.standin.endpoint, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def start(self) -> Hypervisor:
        self.pg.fresh_database()
        self._poller.start()
        return self

    def _poll(self) -> None:
        ec2 = self._client("ec2")
        while not self._stop.is_set():
            try:
                reservations = ec2.describe_instances(Filters=[
                    {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
                alive = {i["InstanceId"] for r in reservations for i in r["Instances"]}
                for instance_id in sorted(alive - set(self.booted)):
                    try:
                        self._launch(ec2, instance_id)
                    except Exception as exc:  # that instance never boots; the test reads why
                        self.booted.setdefault(instance_id, Booted(instance_id, "", None))  # type: ignore[arg-type]
                        self.errors.append(f"{instance_id}: {type(exc).__name__}: {exc}")
                self._terminate(alive)
            except Exception as exc:  # recorded; the test reads self.errors
                self.errors.append(f"{type(exc).__name__}: {exc} ({traceback.format_exc(limit=-1).strip()})")
            self._stop.wait(0.3)

    def _launch(self, ec2, instance_id: str) -> None:
        encoded = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")\
            .get("UserData", {}).get("Value", "")
        user_data = base64.b64decode(encoded).decode() if encoded else ""
        values = preamble(user_data)
        role = values.get("BOOT_ROLE", "")
        name = f"{role or 'unknown'}-{instance_id[-6:]}"
        if role not in ("gitlab-app", "gitaly", "monitoring"):
            self.booted[instance_id] = Booted(instance_id, role, None)  # type: ignore[arg-type]
            self.errors.append(f"{instance_id}: cannot boot role {role!r} here (user data: {user_data[:80]!r})")
            return
        server = boot.Server(self.base, name, role=role)
        server.write("/var/lib/cloud/data/instance-id", instance_id + "\n")
        server.program_path = "/var/lib/cloud/instance/scripts/part-001"
        server.write(server.program_path, user_data, 0o700)
        if role == "gitlab-app":
            self._as_rds(server)
            self._as_elasticache(server)
        elif role == "gitaly":
            self._as_gitaly(server, instance_id)
        # The monitoring server needs nothing the stand-in plays: its Prometheus only reads EC2.
        booted = self.booted[instance_id] = Booted(instance_id, role, server)
        thread = threading.Thread(target=self._boot, args=(booted,), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _boot(self, booted: Booted) -> None:
        env = {"AWS_ENDPOINT_URL": f"http://{boot.HOST}:{self.standin.port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", **KNOBS}
        with self._lock:
            if booted.terminated:
                return
            booted.process = booted.server.start(env)
        booted.result = boot.Server.wait(booted.process, timeout=150)

    def _terminate(self, alive: set[str]) -> None:
        """An instance the stand-in terminated (a rollback deletes its group) stops, as on EC2."""
        with self._lock:
            for booted in self.booted.values():
                if booted.instance_id not in alive and not booted.terminated:
                    booted.terminated = True
                    if booted.process is not None and booted.process.poll() is None:
                        booted.process.kill()

    def _sweep(self) -> None:
        ec2 = self._client("ec2")
        reservations = ec2.describe_instances(Filters=[
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        self._terminate({i["InstanceId"] for r in reservations for i in r["Instances"]})

    # -- RDS and EBS ------------------------------------------------------------------------------
    def _as_rds(self, server: boot.Server) -> None:
        """The RDS instance of the stack, from the stand-in (never from the user data, which is
        what is checked): its endpoint's name resolves to a forwarder, on its port, to the test's
        PostgreSQL, whose master user takes the password of the database's own stack's secret."""
        with self._lock:
            if self._rds is None:
                identifier, secret = self._stack_resource_and_secret("AWS::RDS::DBInstance")
                (db,) = self._client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
                if (db["MasterUsername"], db["DBName"]) != (self.pg.user, self.pg.database):
                    raise AssertionError(f"the stack's database is {db['MasterUsername']}@{db['DBName']}, "
                                         f"the test's {self.pg.user}@{self.pg.database}")
                value = self._client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
                password = json.loads(value)["password"]
                self.pg.admin(f"ALTER ROLE {self.pg.user} PASSWORD $pw${password}$pw$")
                self._rds = (db["Endpoint"]["Address"], db["Endpoint"]["Port"])
        address, port = self._rds
        server.write("/etc/hosts", Path("/etc/hosts").read_text() + f"{DB_ALIAS} {address}\n")
        server.setup_lines += [
            f"{sys.executable} {SUPPORT / 'tcp_forward.py'} {DB_ALIAS} {port} {boot.HOST} {self.pg.port} &",
            f"for _ in $(seq 200); do (exec 3<>/dev/tcp/{DB_ALIAS}/{port}) 2>/dev/null && break; sleep 0.05; done",
        ]

    def _as_elasticache(self, server: boot.Server) -> None:
        """The stack's replication group, from the stand-in: its primary endpoint's name resolves
        to a forwarder, on its port, to the test's Redis, which takes the AUTH token of the group's
        own stack's secret (``requirepass``, set at run time; ``stop`` gives the old one back)."""
        with self._lock:
            if self._elasticache is None:
                group_id, secret = self._stack_resource_and_secret("AWS::ElastiCache::ReplicationGroup")
                (group,) = self._client("elasticache").describe_replication_groups(
                    ReplicationGroupId=group_id)["ReplicationGroups"]
                if not group.get("TransitEncryptionEnabled"):
                    raise AssertionError(f"the stack's replication group {group_id} is not encrypted in transit: "
                                         "the test's Redis speaks TLS only")
                token = json.loads(self._client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"])["token"]
                answer = self.redis.command("CONFIG", "SET", "requirepass", token)
                if answer != "+OK":
                    raise AssertionError(f"the test's Redis did not take the stack's AUTH token: {answer}")
                self.redis.password = token
                endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
                self._elasticache = (endpoint["Address"], int(endpoint["Port"]))
        address, port = self._elasticache
        server.write("/etc/hosts", server.read("/etc/hosts") + f"{REDIS_ALIAS} {address}\n")
        server.setup_lines += [
            f"{sys.executable} {SUPPORT / 'tcp_forward.py'} {REDIS_ALIAS} {port} {boot.HOST} {self.redis.port} &",
            f"for _ in $(seq 200); do (exec 3<>/dev/tcp/{REDIS_ALIAS}/{port}) 2>/dev/null && break; sleep 0.05; done",
        ]

    def _stack_resource_and_secret(self, kind: str) -> tuple[str, str]:
        """The one resource of KIND and the only secret of its stack (its password or token)."""
        cfn = self._client("cloudformation")
        found = []
        for stack in cfn.describe_stacks()["Stacks"]:
            resources = cfn.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
            ours = [r["PhysicalResourceId"] for r in resources if r.get("ResourceType") == kind]
            # (the stand-in lists a secret's target attachment as a secret too, same id)
            secrets = {r["PhysicalResourceId"] for r in resources
                       if r.get("ResourceType") == "AWS::SecretsManager::Secret"}
            found += [(resource, secrets) for resource in ours]
        if len(found) != 1 or len(found[0][1]) != 1:
            raise AssertionError(f"expected one {kind} in a stack with one secret, found {found}")
        return found[0][0], next(iter(found[0][1]))

    def _as_gitaly(self, server: boot.Server, instance_id: str) -> None:
        """The EBS volumes the stand-in attached to the instance (other than its root), each at
        the NVMe path of its own id: what EC2 attached, not what the user data says."""
        ec2 = self._client("ec2")
        (instance,) = [i for r in ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
                       for i in r["Instances"]]
        volumes = [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"] for a in v.get("Attachments", [])
                   if a["InstanceId"] == instance_id and a["Device"] != instance.get("RootDeviceName")]
        if not volumes:
            self.errors.append(f"{instance_id}: no data volume attached")
        for volume in volumes:
            server.attach_volume(volume)

    # -- the end ----------------------------------------------------------------------------------
    def wait(self, timeout: float = 160) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._poller.join(10)
        self._sweep()
        self.wait(60)
        for booted in self.booted.values():
            if booted.server is not None:
                booted.server.detach_volumes()
        if self._rds:
            self.pg.admin(f"ALTER ROLE {self.pg.user} PASSWORD '{self.pg.password}'")
        if self._elasticache:
            self.redis.command("CONFIG", "SET", "requirepass", self._redis_password)
            self.redis.password = self._redis_password

    def of_role(self, role: str) -> list[Booted]:
        return sorted((b for b in self.booted.values() if b.role == role), key=lambda b: b.instance_id)
