"""The scheduled backup (scripts/lib/backup.sh) as a GitLab server runs it: the server's
program (``userdata.body("gitlab-app")``) started by cron with GITLAB_CFN_PHASE=backup,
against a real PostgreSQL server (TLS only, as RDS) whose advisory lock decides which
server backs up. ``gitlab-backup`` and the AWS CLI are strict fakes that record what
they were asked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitlab_cfn.compile import userdata
from support.boot_fixtures import boot_tools, postgres  # noqa: F401  (fixtures)

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
DB = "gitlab_backup_probe"
STACK = "gitlab-production"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gitlab-production/database-AbCdEf"
LOCK_KEY = 80751002
# gitlab-backup's SKIP names (https://docs.gitlab.com/administration/backup_restore/backup_gitlab/#excluding-specific-data-from-the-backup):
# the repositories stay; the database (RDS backups) and every object-storage kind (S3) go.
KEPT = {"repositories"}
SKIP_NAMES = {"db", "uploads", "builds", "artifacts", "lfs", "terraform_state", "registry", "pages",
              "repositories", "packages", "ci_secure_files", "external_diffs"}

FAKE_AWS = r'''
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_STATE"]
def fail(message, code=252):
    sys.stderr.write("aws (fake): " + message + "\n")
    sys.exit(code)
if args[:2] == ["secretsmanager", "get-secret-value"]:
    if args[2::2] != ["--region", "--secret-id", "--query", "--output"] or args[7::2] != ["SecretString", "text"]:
        fail("unexpected options %r" % args)
    if args[5] != os.environ["FAKE_SECRET_ARN"]:
        fail("An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation", 254)
    print(json.dumps({"username": "gitlab", "password": os.environ["FAKE_DB_PASSWORD"]}))
elif args[:2] == ["cloudwatch", "put-metric-data"]:
    options = dict(zip(args[2::2], args[3::2]))
    if set(options) != {"--region", "--namespace", "--metric-name", "--dimensions", "--unit", "--value"}:
        fail("unexpected options %r" % args)
    if options["--value"] not in ("0", "1"):
        fail("value %r" % options["--value"])
    with open(os.path.join(state, "metrics.log"), "a") as f:
        f.write(json.dumps(options) + "\n")
else:
    fail("unexpected call %r" % args)
'''

FAKE_GITLAB_BACKUP = r'''
import json, os, sys, time
args = sys.argv[1:]
server_side = "REPOSITORIES_SERVER_SIDE=true" in args
rest = [a for a in args if a != "REPOSITORIES_SERVER_SIDE=true"]
if len(rest) != 3 or rest[0] != "create" or not rest[1].startswith("SKIP=") or rest[2] != "CRON=1" \
        or any(a.startswith("REPOSITORIES_SERVER_SIDE") and a != "REPOSITORIES_SERVER_SIDE=true" for a in args):
    sys.stderr.write("gitlab-backup (fake): usage: gitlab-backup create [REPOSITORIES_SERVER_SIDE=true] SKIP=... CRON=1; got %r\n" % args)
    sys.exit(2)
# Server-side: every Gitaly node asked must have a backup destination (Gitaly's [backup]
# go_cloud_url); a node without one fails the repository backup, as Gitaly's BackupRepository
# does without a sink: FailedPrecondition "backup repository: server-side backups are not
# configured" (gitlab-org/gitaly internal/gitaly/service/repository/backup_repository.go), in
# gitaly-backup's words (internal/backup: the pipeline's failures, "server-side create: %w"),
# and gitlab-backup fails. The nodes' rendered configuration: FAKE_GITALY_CONFIGS.
NO_SINK = ("rpc error: code = FailedPrecondition desc = backup repository: "
           "server-side backups are not configured")
def refuse(node):
    sys.stderr.write("create: pipeline: 1 failures encountered:\n - %s @hashed/4e/07/4e07.git: server-side create: %s\n"
                     % (node, NO_SINK))
    sys.stderr.write("gitlab-backup (fake): Backup failed: gitaly-backup exit status 1\n")
    sys.exit(1)
if server_side:
    for path in filter(None, os.environ.get("FAKE_GITALY_CONFIGS", "").split(":")):
        url = (json.load(open(path)).get("gitaly", {}).get("backup") or {}).get("go_cloud_url", "")
        if not url.startswith("s3://"):
            refuse(os.path.basename(path))
    if not os.environ.get("FAKE_GITALY_CONFIGS"):
        refuse("gitaly")
started = time.time()
time.sleep(float(os.environ.get("FAKE_BACKUP_SECONDS", "0")))
with open(os.path.join(os.environ["FAKE_STATE"], "backups.log"), "a") as f:
    f.write(json.dumps({"skip": rest[1][5:].split(","), "server_side": server_side,
                        "started": started, "ended": time.time()}) + "\n")
sys.exit(int(os.environ.get("FAKE_BACKUP_RC", "0")))
'''


@pytest.fixture
def machine(tmp_path, postgres):
    if not postgres.admin(f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"):
        postgres.admin(f"CREATE DATABASE {DB} OWNER {postgres.user}")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, code in (("aws", FAKE_AWS), ("gitlab-backup", FAKE_GITLAB_BACKUP)):
        (fakes / name).write_text(f"#!{sys.executable}\n{code}")
        (fakes / name).chmod(0o755)
    program = tmp_path / "gitlab-app.sh"
    program.write_text(userdata.body("gitlab-app"))
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}", "FAKE_STATE": str(state), "FAKE_SECRET_ARN": SECRET_ARN,
        "FAKE_DB_PASSWORD": postgres.password, "PSQL": str(postgres.bin / "psql"),
        "AWS_REGION": "eu-west-1", "DB_HOST": "127.0.0.1", "DB_PORT": str(postgres.port), "DB_NAME": DB,
        "DB_SECRET_ARN": SECRET_ARN, "BUCKET_BACKUPS": "gl-backups-123456789012-eu-west-1-0a1b2c3d",
        "LOG_GROUP_PREFIX": f"/gitlab-cfn/{STACK}/0a1b2c3d", "GITLAB_CFN_PHASE": "backup",
        "GITLAB_CFN_QUICK_DELAY": "0",
    }
    return program, state, env, tmp_path


def start(machine, server: str, **extra) -> subprocess.Popen:
    program, _, env, base = machine
    root = base / server
    root.mkdir(exist_ok=True)
    return subprocess.Popen(["bash", str(program)], env={**env, "GITLAB_CFN_ROOT": str(root), **extra},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(state: Path, name: str) -> list[dict]:
    path = state / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_servers_at_once_back_up_once_and_the_lock_says_who(machine, postgres):
    _, state, _, _ = machine
    runs = [start(machine, f"server-{n}", FAKE_BACKUP_SECONDS="3") for n in (1, 2)]
    holders = []
    while any(r.poll() is None for r in runs):
        holders.append(postgres.lock_sessions(LOCK_KEY))
        time.sleep(0.2)
    outs = [r.communicate() for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    # One backup, from PostgreSQL's side too: the lock was never held by two sessions.
    (backup,) = records(state, "backups.log")
    assert all(len([h for h in sample if h[1]]) <= 1 for sample in holders)
    assert any(sample and sample[0][1] for sample in holders), "the lock was never seen held"
    skipped = [err for _, err in outs if "another server holds the backup lock: this one skips the backup" in err]
    ran = [err for _, err in outs if "this server holds the backup lock" in err]
    assert len(skipped) == 1 and len(ran) == 1
    # What is skipped: the database and every object-storage kind; the repositories stay.
    assert set(backup["skip"]) == SKIP_NAMES - KEPT and set(backup["skip"]) <= SKIP_NAMES
    (metric,) = records(state, "metrics.log")
    assert metric == {"--region": "eu-west-1", "--namespace": f"gitlab-cfn/{STACK}", "--metric-name": "BackupSucceeded",
                      "--dimensions": f"Stack={STACK}", "--unit": "Count", "--value": "1"}
    # The lock is released: the next night's run takes it.
    again = start(machine, "server-2")
    assert again.wait(60) == 0
    assert len(records(state, "backups.log")) == 2


def test_a_failed_backup_fails_the_run_and_reports_zero(machine):
    _, state, _, _ = machine
    run = start(machine, "server-1", FAKE_BACKUP_RC="1")
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0
    assert "gitlab-backup create failed (exit code 1)" in err
    assert [m["--value"] for m in records(state, "metrics.log")] == ["0"]


def test_no_database_no_backup_and_one_line(machine):
    program, state, env, base = machine
    run = subprocess.run(["bash", str(program)], env={**env, "GITLAB_CFN_ROOT": str(base), "DB_PORT": "9"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "error: database 127.0.0.1:9 is not reachable for the backup lock" in run.stderr
    assert records(state, "backups.log") == [] and records(state, "metrics.log") == []


def test_every_server_schedules_the_backup_without_secrets(tmp_path):
    env = {"PATH": os.environ["PATH"], "GITLAB_CFN_ROOT": str(tmp_path), "AWS_REGION": "eu-west-1",
           "DB_HOST": "db.example", "DB_PORT": "5432", "DB_NAME": "gitlabhq_production", "DB_SECRET_ARN": SECRET_ARN,
           "BUCKET_BACKUPS": "gl-backups-x", "LOG_GROUP_PREFIX": f"/gitlab-cfn/{STACK}/0a1b2c3d",
           "DB_PASSWORD": "must-not-be-written"}
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/backup.sh'}\n"
              "install_backup_schedule /opt/gitlab-cfn/boot/abc/gitlab-app.sh\n")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    cron = (tmp_path / "etc/cron.d/gitlab-cfn-backup").read_text().splitlines()
    (entry,) = [line for line in cron if not line.startswith("#")]
    # cron.d format: five time fields, the user, the command (crontab(5)).
    fields = entry.split(None, 6)
    assert fields[:6] == ["30", "2", "*", "*", "*", "root"]
    assert fields[6] == (". /etc/gitlab-cfn/backup.env && GITLAB_CFN_PHASE=backup bash "
                         "/opt/gitlab-cfn/boot/abc/gitlab-app.sh >>/var/log/gitlab-cfn-backup.log 2>&1")
    saved = tmp_path / "etc/gitlab-cfn/backup.env"
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    text = saved.read_text()
    assert "must-not-be-written" not in text and "DB_PASSWORD" not in text
    exported = dict(re.findall(r"^export ([A-Z_]+)=(.*)$", text, flags=re.M))
    assert set(exported) == {"AWS_REGION", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SECRET_ARN", "BUCKET_BACKUPS",
                             "LOG_GROUP_PREFIX"}


def gitaly_config(tmp_path: Path, name: str, bucket: str | None) -> Path:
    """A cluster node's Gitaly configuration as scripts/gitaly.sh renders it (its gitlab.rb,
    evaluated as the package's settings DSL is by support/gitlab_rb_eval.rb), as the fake
    gitlab-ctl records it (``{"gitaly": gitaly['configuration']}``)."""
    from support.disk import evaluate_gitlab_rb

    gitaly = (SCRIPTS / "gitaly.sh").read_text()
    assert gitaly.rstrip().endswith('main "$@"')
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/single-service.sh'}\n"
              f"source {SCRIPTS / 'lib/exporters.sh'}\n"
              + gitaly.rstrip()[: -len('main "$@"')]
              + '\nGITALY_TOKEN=t SHELL_SECRET=s\n'
              + ('GITALY_BACKUP_URL=$(gitaly_backup_url "$BACKUP_BUCKET_NAME")\n' if bucket else "")
              + "render_gitlab_rb\n")
    env = {"PATH": os.environ["PATH"], "AWS_REGION": "eu-west-1", "GITLAB_DOMAIN": "gitlab.example.com",
           "GITALY_STORAGE": name, "GITLAB_CFN_ROOT": str(tmp_path), **({"BACKUP_BUCKET_NAME": bucket} if bucket else {})}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    rb = tmp_path / f"{name}.rb"
    rb.write_text(done.stdout)
    value = next(a["value"] for a in evaluate_gitlab_rb(rb)["assignments"] if a["key"] == "gitaly['configuration']")
    out = tmp_path / f"{name}.json"
    out.write_text(json.dumps({"gitaly": value}))
    return out


BUCKET = "gl-backups-123456789012-eu-west-1-0a1b2c3d"


def test_a_cluster_backs_up_server_side_only_when_every_node_has_a_destination(machine, tmp_path):
    _, state, _, _ = machine
    nodes = [gitaly_config(tmp_path, f"gitaly-{n}", BUCKET) for n in (1, 2, 3)]
    assert json.loads(nodes[0].read_text())["gitaly"]["backup"] == {"go_cloud_url": f"s3://{BUCKET}?region=eu-west-1"}
    run = start(machine, "server-1", BACKUP_SERVER_SIDE="true", FAKE_GITALY_CONFIGS=":".join(map(str, nodes)))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "running gitlab-backup create REPOSITORIES_SERVER_SIDE=true SKIP=" in err
    (backup,) = records(state, "backups.log")
    assert backup["server_side"] is True and set(backup["skip"]) == SKIP_NAMES - KEPT
    assert metrics(state) == [("BackupServerSideUnavailable", "0"), ("BackupSucceeded", "1")]
    # Without BACKUP_SERVER_SIDE (the POC, or a cluster beside the kept POC server): through Rails.
    plain = gitaly_config(tmp_path, "default", None)
    assert "backup" not in json.loads(plain.read_text())["gitaly"]
    run = start(machine, "server-1", FAKE_GITALY_CONFIGS=str(plain))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "REPOSITORIES_SERVER_SIDE" not in err and "warning" not in err
    assert [b["server_side"] for b in records(state, "backups.log")] == [True, False]
    assert metrics(state)[2:] == [("BackupSucceeded", "1")]


def metrics(state: Path) -> list[tuple[str, str]]:
    return [(m["--metric-name"], m["--value"]) for m in records(state, "metrics.log")]


def test_a_cluster_whose_nodes_lack_their_destination_backs_up_through_praefect_and_says_so(machine, tmp_path):
    """A Gitaly Cluster updated from before server-side backups: the nodes keep running without
    a go_cloud_url until their boot script runs again. The night's run falls back to the normal
    repository backup, reports its (true) success, and says, in its log and a metric of its own,
    that the nodes lack their destination."""
    _, state, _, _ = machine
    updated = gitaly_config(tmp_path, "gitaly-1", BUCKET)
    old = [gitaly_config(tmp_path, f"gitaly-{n}", None) for n in (2, 3)]
    run = start(machine, "server-1", BACKUP_SERVER_SIDE="true", FAKE_GITALY_CONFIGS=":".join(map(str, [updated, *old])))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    # Gitaly's refusal, then what the run did about it, in the log.
    assert "desc = backup repository: server-side backups are not configured" in err
    (warning,) = [line for line in err.splitlines() if "warning:" in line]
    assert "the Gitaly nodes have no server-side backup destination" in warning and "run it on each node" in warning
    assert "backing up the repositories through Praefect instead: gitlab-backup create SKIP=" in err
    # One backup made, the normal one, with the same SKIP; no second server-side attempt.
    (backup,) = records(state, "backups.log")
    assert backup["server_side"] is False and set(backup["skip"]) == SKIP_NAMES - KEPT
    assert metrics(state) == [("BackupServerSideUnavailable", "1"), ("BackupSucceeded", "1")]
    assert list((machine[3] / "server-1" / "var/lib/gitlab-cfn").glob("backup-output.*")) == []
    # The fallback itself failing is a failed backup.
    run = start(machine, "server-1", BACKUP_SERVER_SIDE="true", FAKE_GITALY_CONFIGS=str(old[0]), FAKE_BACKUP_RC="1")
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0 and "gitlab-backup create failed (exit code 1)" in err
    assert metrics(state)[2:] == [("BackupServerSideUnavailable", "1"), ("BackupSucceeded", "0")]


def test_a_server_side_backup_failing_for_another_reason_is_a_failure_without_fallback(machine, tmp_path):
    _, state, _, _ = machine
    nodes = [gitaly_config(tmp_path, f"gitaly-{n}", BUCKET) for n in (1, 2, 3)]
    run = start(machine, "server-1", BACKUP_SERVER_SIDE="true", FAKE_GITALY_CONFIGS=":".join(map(str, nodes)),
                FAKE_BACKUP_RC="1")
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0 and "gitlab-backup create failed (exit code 1)" in err
    assert "through Praefect instead" not in err
    assert [b["server_side"] for b in records(state, "backups.log")] == [True]
    assert metrics(state) == [("BackupSucceeded", "0")]


def test_the_schedule_keeps_the_server_side_setting(tmp_path):
    env = {"PATH": os.environ["PATH"], "GITLAB_CFN_ROOT": str(tmp_path), "AWS_REGION": "eu-west-1",
           "DB_HOST": "db.example", "DB_PORT": "5432", "DB_NAME": "gitlabhq_production", "DB_SECRET_ARN": SECRET_ARN,
           "BUCKET_BACKUPS": BUCKET, "LOG_GROUP_PREFIX": f"/gitlab-cfn/{STACK}/0a1b2c3d", "BACKUP_SERVER_SIDE": "true"}
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/backup.sh'}\n"
              "install_backup_schedule /opt/gitlab-cfn/boot/abc/gitlab-app.sh\n")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "export BACKUP_SERVER_SIDE=true\n" in (tmp_path / "etc/gitlab-cfn/backup.env").read_text()


@pytest.mark.parametrize("cfg, server_side", [({}, False), ({"size": "2k"}, False), ({"size": "3k"}, True),
                                               ({"size": "10k", "gitaly": {"keep_single_server": True}}, False)])
def test_who_is_told_to_back_up_server_side(cfg, server_side):
    """The app servers back up server-side exactly when every storage is a cluster node; each
    cluster node (never the single server, whose user data never changes) knows the bucket."""
    from conftest import templates_for
    from test_userdata import template_user_data

    found = template_user_data(templates_for(cfg))
    (_, app, _, _), = found["gitlab-app"]
    assert ("BACKUP_SERVER_SIDE" in app) is server_side and app.get("BACKUP_SERVER_SIDE", "true") == "true"
    assert all("BACKUP_SERVER_SIDE" not in v for _, v, _, _ in found.get("gitlab-sidekiq", []))
    nodes = {name: v for name, v, _, _ in found["gitaly"]}
    for name, values in nodes.items():
        if name == "GitalyInstance":
            assert "BACKUP_BUCKET_NAME" not in values
        else:
            assert values["BACKUP_BUCKET_NAME"] == {"Ref": "BackupsBucketName"}, name
    if server_side:
        assert len(nodes) >= 3 and "GitalyInstance" not in nodes


def test_a_server_side_setting_other_than_true_fails_in_one_line_and_schedules_nothing(tmp_path):
    env = {"PATH": os.environ["PATH"], "GITLAB_CFN_ROOT": str(tmp_path), "AWS_REGION": "eu-west-1",
           "DB_HOST": "db.example", "DB_PORT": "5432", "DB_NAME": "gitlabhq_production", "DB_SECRET_ARN": SECRET_ARN,
           "BUCKET_BACKUPS": BUCKET, "LOG_GROUP_PREFIX": f"/gitlab-cfn/{STACK}/0a1b2c3d", "BACKUP_SERVER_SIDE": "yes"}
    script = (f"source {SCRIPTS / 'lib/common.sh'}\nsource {SCRIPTS / 'lib/backup.sh'}\n"
              "install_backup_schedule /opt/gitlab-cfn/boot/abc/gitlab-app.sh\n")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    (error,) = [line for line in done.stderr.splitlines() if "error" in line]
    assert error.endswith("error: BACKUP_SERVER_SIDE: 'yes' is not 'true' (or unset: repositories through this server)")
    assert not (tmp_path / "etc/cron.d/gitlab-cfn-backup").exists() and not (tmp_path / "etc/gitlab-cfn/backup.env").exists()


def boot_end(machine, server: str, **extra) -> subprocess.CompletedProcess:
    """What the end of an application server's boot does about backups, with the server's
    program (sourced: it then runs nothing) and its own functions, as main() calls them:
    the schedule, then the first backup if its locked phase asked for one."""
    program, _, env, base = machine
    root = base / server
    root.mkdir(exist_ok=True)
    script = f"source {program}\ninstall_backup_schedule {program}\nstart_first_backup {program}\n"
    return subprocess.run(["bash", "-c", script], env={**env, "GITLAB_CFN_ROOT": str(root), **extra},
                          capture_output=True, text=True, timeout=30)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def first_boot_asks(machine, server: str) -> None:
    """The locked phase of the server that published the stack's gitlab-secrets.json first
    (gitlab-app.sh locked_phase) asks for the first backup: the program's own function."""
    program, _, env, base = machine
    root = base / server
    root.mkdir(exist_ok=True)
    done = subprocess.run(["bash", "-c", f"source {program}\nrequest_first_backup\n"],
                          env={**env, "GITLAB_CFN_ROOT": str(root)}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_first_server_of_a_new_stack_backs_up_once_in_the_background(machine, postgres):
    """Two application servers end their first boots at once; the one whose locked phase asked
    (it published the stack's secrets first) starts one real backup, in the background (the boot
    returns before the 3-second backup ends), under the backup lock, with the cron job's
    environment file; it reports BackupSucceeded 1, which is what turns BackupAlarm OK on a new
    stack. Reboots start nothing."""
    _, state, _, base = machine
    first_boot_asks(machine, "server-1")
    started = time.monotonic()
    ends = [boot_end(machine, f"server-{n}", FAKE_BACKUP_SECONDS="3") for n in (1, 2)]
    assert [e.returncode for e in ends] == [0, 0], [e.stderr for e in ends]
    assert time.monotonic() - started < 3, "the boot waited for its first backup"
    assert records(state, "backups.log") == []
    assert "starting its first backup in the background" in ends[0].stderr
    assert "first backup" not in ends[1].stderr
    assert wait_for(lambda: records(state, "metrics.log")), "the first backup never reported"
    (backup,) = records(state, "backups.log")
    assert backup["server_side"] is False and set(backup["skip"]) == SKIP_NAMES - KEPT
    assert metrics(state) == [("BackupSucceeded", "1")]
    log = (base / "server-1/var/log/gitlab-cfn-backup.log").read_text()
    assert "this server holds the backup lock" in log and "backup done and uploaded" in log
    assert not (base / "server-2/var/log/gitlab-cfn-backup.log").exists()
    # Reboots of both: nothing asked, nothing started.
    again = [boot_end(machine, f"server-{n}") for n in (1, 2)]
    assert [e.returncode for e in again] == [0, 0] and not any("first backup" in e.stderr for e in again)
    time.sleep(1.5)
    assert len(records(state, "backups.log")) == 1 and len(records(state, "metrics.log")) == 1


def test_a_first_backup_that_fails_reports_zero(machine):
    """The first backup failing is heard at once (BackupSucceeded 0: ALARM), never hidden."""
    _, state, _, _ = machine
    first_boot_asks(machine, "server-1")
    end = boot_end(machine, "server-1", FAKE_BACKUP_RC="1")
    assert end.returncode == 0, end.stderr
    assert wait_for(lambda: records(state, "metrics.log"))
    assert metrics(state) == [("BackupSucceeded", "0")]
