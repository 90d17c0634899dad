"""praefect -config PATH sql-migrate: Praefect's SQL migrations, on the real database, with the real psql.

Reads the configuration file as Praefect does (TOML; the package writes it at
/var/opt/gitlab/praefect/config.toml), connects to the database it names
(host, port, user, password, dbname, sslmode: a wrong password, a missing
database or a plain connection to a TLS-only server fail as they would), and
applies the migrations the database lacks, each in its own transaction with its
row in ``schema_migrations`` (id, applied_at), as sql-migrate does: a second
run applies nothing, two runs at once collide on a duplicate key. Its output
is Praefect's (gitaly cmd/praefect sql-migrate: "migrations to apply: N",
"<id>: applied (...)", "OK (applied N migrations)", "all migrations are up").
It also records, with the database's clock, which sessions held or awaited the
bootstrap lock while it ran (pg_locks), in ``praefect_boot_evidence``.
"""
import os
import re
import socket
import sys
import time
import tomllib
from pathlib import Path

from fakelib import fail, record
from gitlab_cfn.compile import userdata
from services import psql

CONFIG = "/var/opt/gitlab/praefect/config.toml"
# The first of Praefect's migrations is its own (internal/praefect/datastore/migrations).
MIGRATIONS = ["20200109161404_hello_world", "20200113151438_1_test_migration", "20200224220728_job_queue",
              "20210525173505_valid_primaries_view", "20220211161203_json_job_data"]
LOCK_KEY = int(re.search(r"^LOCK_KEY=(\d+)", userdata.body("praefect"), re.M).group(1))

args = sys.argv[1:]
if len(args) != 3 or args[0] != "-config" or args[2] != "sql-migrate":
    fail(f"fake praefect: unexpected call {' '.join(args)!r} (only -config PATH sql-migrate)", 2)
if args[1] != CONFIG:
    fail(f"fake praefect: the package's configuration is {CONFIG}, not {args[1]}", 2)
if not Path(CONFIG).exists():
    fail(f"open {CONFIG}: no such file or directory")
db = tomllib.loads(Path(CONFIG).read_text()).get("database", {})
application = f"praefect-sql-migrate-{socket.gethostname()}"


def sql(statement: str) -> str:
    done = psql(db, statement, application)
    if done.returncode:
        fail(f"praefect sql-migrate: {done.stderr.strip()}")
    return done.stdout.strip()


sql("CREATE TABLE IF NOT EXISTS schema_migrations (id text PRIMARY KEY, applied_at timestamptz);"
    "CREATE TABLE IF NOT EXISTS praefect_boot_evidence (host text, at timestamptz, applied int, lock text)")
applied = set(sql("SELECT id FROM schema_migrations").split())
todo = [m for m in MIGRATIONS if m not in applied]
if todo:
    print(f"praefect sql-migrate: migrations to apply: {len(todo)}")
for migration in todo:
    print(f"{migration}: migrating")
    started = time.monotonic()
    sql(f"BEGIN; SELECT pg_sleep({float(os.environ.get('FAKE_MIGRATION_SECONDS', '0'))}); "
        f"INSERT INTO schema_migrations VALUES ('{migration}', clock_timestamp()); COMMIT")
    print(f"{migration}: applied ({time.monotonic() - started:.3f}s)")
lock = sql(f"""SELECT coalesce(string_agg(a.application_name || ':' || l.granted, ',' ORDER BY l.granted DESC,
    a.application_name), '') FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE l.locktype = 'advisory' AND l.objid = {LOCK_KEY}""")
sql(f"INSERT INTO praefect_boot_evidence VALUES ('{socket.gethostname()}', clock_timestamp(), {len(todo)}, '{lock}')")
print(f"praefect sql-migrate: OK (applied {len(todo)} migrations)" if todo else
      "praefect sql-migrate: all migrations are up")
record(action="sql-migrate", applied=len(todo), lock=lock)
