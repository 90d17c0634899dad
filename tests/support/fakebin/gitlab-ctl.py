"""gitlab-ctl: reconfigure checks gitlab.rb as strictly as the installed version documents it."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import prometheus_fake
import services
from fakelib import GITLAB_RB, HERE, SECRETS, evaluate_gitlab_rb, fail, installed_version, node, node_file, record
from support.gitlab_rb import release_for, unknown_settings

SERVICES = {"alertmanager", "gitaly", "gitlab-exporter", "gitlab-kas", "gitlab-workhorse", "logrotate", "nginx",
            "node-exporter", "praefect", "prometheus", "puma", "sidekiq", "sshd"}
PIDFILE = Path("/run/gitlab-fake-nginx.pid")


def reconfigure() -> None:
    version = installed_version()
    try:
        release = release_for(version)
    except Exception as exc:  # the package itself would not be installable here
        fail(str(exc))
    if not GITLAB_RB.exists():
        fail(f"{GITLAB_RB} is missing")
    syntax = subprocess.run(["ruby", "-c", str(GITLAB_RB)], capture_output=True, text=True)
    if syntax.returncode or "Syntax OK" not in syntax.stdout:
        fail(f"gitlab.rb is not valid Ruby: {syntax.stderr.strip()}")
    unknown = unknown_settings(GITLAB_RB.read_text(), release)
    if unknown:
        fail(f"gitlab.rb sets what GitLab {version} does not document ({release} template): {', '.join(unknown)}")
    evaluated = evaluate_gitlab_rb()
    evaluated["version"] = version
    path = node_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluated, indent=2))
    # Secrets gitlab-secrets.json lacks are generated, the others kept (package/libraries/helpers/secrets_helper.rb).
    secrets = json.loads(SECRETS.read_text()) if SECRETS.exists() else {}
    rails = secrets.setdefault("gitlab_rails", {})
    for key in ("secret_key_base", "db_key_base", "otp_key_base"):
        rails.setdefault(key, os.urandom(32).hex())
    secrets.setdefault("gitlab_shell", {}).setdefault("secret_token", os.urandom(32).hex())
    SECRETS.write_text(json.dumps(secrets, indent=2))
    os.chmod(SECRETS, 0o600)
    Path("/var/opt/gitlab").mkdir(parents=True, exist_ok=True)
    Path("/var/opt/gitlab/bootstrapped").write_text("All your bootstraps are belong to Chef")
    services.reconfigure(evaluated["settings"])
    prometheus_fake.reconfigure(evaluated)
    record(action="reconfigure", version=version, release=release)


def stop_nginx() -> None:
    if PIDFILE.exists():
        try:
            os.kill(int(PIDFILE.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
        PIDFILE.unlink()


def start_nginx() -> None:
    """GitLab's nginx and Rails, as far as /-/readiness goes, from the configured settings."""
    node()  # configured first
    stop_nginx()
    process = subprocess.Popen([sys.executable, str(HERE / "gitlab_http.py")], start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=open("/var/log/gitlab-fake-nginx.log", "a"))
    PIDFILE.write_text(str(process.pid))


def main(args: list[str]) -> None:
    if not args:
        fail("usage: gitlab-ctl COMMAND [SERVICE]", 2)
    command, rest = args[0], args[1:]
    if rest and rest[0] not in SERVICES:
        fail(f"unknown service {rest[0]!r}", 1)
    if command == "reconfigure" and not rest:
        reconfigure()
    elif command in ("restart", "start"):
        started = services.start(rest[0] if rest else "all", node()["settings"])
        record(action=command, service=rest[0] if rest else "all", started=started)
        if not rest or rest[0] in ("nginx", "puma"):
            start_nginx()
    elif command == "stop":
        record(action=command, service=rest[0] if rest else "all")
        if not rest or rest[0] == "nginx":
            stop_nginx()
    elif command == "status":
        running = PIDFILE.exists()
        print(f"{'run' if running else 'down'}: nginx")
        sys.exit(0 if running else 3)
    else:
        fail(f"fake gitlab-ctl: unexpected command {' '.join(args)!r}", 1)


main(sys.argv[1:])
