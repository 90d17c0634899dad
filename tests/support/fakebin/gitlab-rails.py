"""gitlab-rails runner CODE: the Ruby must at least parse (ruby -c), and GitLab must be configured."""
import subprocess
import sys
import tempfile

from fakelib import fail, node, record

if len(sys.argv) != 3 or sys.argv[1] != "runner":
    fail(f"fake gitlab-rails: unexpected call {' '.join(sys.argv[1:])!r}")
node()
with tempfile.NamedTemporaryFile("w", suffix=".rb") as code:
    code.write(sys.argv[2])
    code.flush()
    done = subprocess.run(["ruby", "-c", code.name], capture_output=True, text=True)
if done.returncode:
    fail(f"runner code is not valid Ruby: {done.stderr.strip()}")
record(action="runner", code=sys.argv[2])
