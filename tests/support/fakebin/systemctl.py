"""systemctl for the units a boot may touch; reloading ssh re-checks its configuration with the real sshd -t."""
import subprocess
import sys

from fakelib import fail, record

UNITS = {"ssh", "ssh.service", "gitlab-runsvdir", "gitlab-runsvdir.service"}
VERBS = {"try-reload-or-restart", "reload", "restart", "reload-or-restart", "is-active", "enable", "start"}
args = sys.argv[1:]
if len(args) != 2 or args[0] not in VERBS:
    fail(f"fake systemctl: unexpected call {' '.join(args)!r}")
if args[1] not in UNITS:
    fail(f"Unit {args[1]} not found.", 5)
if args[1].startswith("ssh") and args[0] != "is-active":
    done = subprocess.run(["sshd", "-t"], capture_output=True, text=True)
    if done.returncode:
        fail(f"Job for ssh.service failed: {done.stderr.strip()}")
record(verb=args[0], unit=args[1])
