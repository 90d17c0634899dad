"""gitlab-rake gitlab:db:configure against the configured database, with the real psql.

Connects as gitlab.rb says (host, port, user, password, sslmode), needs the
extensions GitLab's schema uses, seeds an empty database (which needs
GITLAB_ROOT_PASSWORD) or migrates a loaded one, and records in the database,
with the database's own clock, when it ran and who held the bootstrap lock.
"""
import os
import re
import socket
import subprocess
import sys
import time

from fakelib import fail, node, record
from gitlab_cfn.compile import userdata

# The bootstrap lock of the app program.
LOCK_KEY = int(re.search(r"^LOCK_KEY=(\d+)", userdata.body("gitlab-app"), re.M).group(1))


def psql(rails: dict, sql: str) -> str:
    conn = (f"host={rails['db_host']} port={rails.get('db_port', 5432)} dbname={rails['db_database']} "
            f"user={rails['db_username']} sslmode={rails.get('db_sslmode', 'prefer')} connect_timeout=5 "
            f"application_name=gitlab-rake-{socket.gethostname()}")
    done = subprocess.run(["/opt/gitlab/embedded/bin/psql", conn, "-v", "ON_ERROR_STOP=1", "-qtAX", "-c", sql],
                          capture_output=True, text=True, env={**os.environ, "PGPASSWORD": rails["db_password"]})
    if done.returncode:
        fail(f"database: {done.stderr.strip()}")
    return done.stdout.strip()


def lock_holders(rails: dict) -> str:
    return psql(rails, f"""SELECT coalesce(string_agg(a.application_name || ':' || l.granted, ',' ORDER BY l.granted DESC,
        a.application_name), '') FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.objid = {LOCK_KEY}""")


def db_configure() -> None:
    rails = node()["settings"].get("gitlab_rails", {})
    host = socket.gethostname()
    missing = psql(rails, "SELECT string_agg(e, ',') FROM unnest(ARRAY['pg_trgm','btree_gist']) e "
                          "WHERE e NOT IN (SELECT extname FROM pg_extension)")
    if missing:
        fail(f"PG::InsufficientPrivilege: extensions {missing} are missing and gitlab cannot create them")
    psql(rails, """CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS boot_evidence (host text, step text, at timestamptz, lock text)""")
    psql(rails, f"INSERT INTO boot_evidence VALUES ('{host}', 'start', clock_timestamp(), '{lock_holders(rails)}')")
    if psql(rails, "SELECT count(*) FROM schema_migrations") == "0":
        if not os.environ.get("GITLAB_ROOT_PASSWORD"):
            fail("seeding an empty database needs GITLAB_ROOT_PASSWORD")
        step = "load schema and seed"
    else:
        step = "migrate"
    time.sleep(float(os.environ.get("FAKE_DB_CONFIGURE_SECONDS", "0")))
    psql(rails, "INSERT INTO schema_migrations VALUES ('20260801000000') ON CONFLICT DO NOTHING")
    psql(rails, f"INSERT INTO boot_evidence VALUES ('{host}', 'end', clock_timestamp(), '{lock_holders(rails)}')")
    # GitLab's zero-downtime upgrades: while servers of the old version still serve, only the
    # regular migrations may run (doc/update/zero_downtime.md); the variable is read as "true".
    record(action="gitlab:db:configure", step=step,
           skip_post_deployment_migrations=os.environ.get("SKIP_POST_DEPLOYMENT_MIGRATIONS", ""))


if sys.argv[1:] == ["gitlab:db:configure"]:
    db_configure()
else:
    fail(f"fake gitlab-rake: unexpected task {' '.join(sys.argv[1:])!r}")
