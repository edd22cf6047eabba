"""Fencing a PostgreSQL server (replicator/fence.c) through tests/tools/fence_driver.

One server per test. Idle psql sessions stand in for applications; a session
named like strait's own must survive the fence. Every wait polls a condition.
"""

import os
import subprocess

import psycopg
import pytest

import harness

DRIVER = os.path.join(harness.BUILD, "tools", "fence_driver")


@pytest.fixture(scope="module", autouse=True)
def driver_built():
    if not os.access(DRIVER, os.X_OK):
        pytest.exit(f"{DRIVER} is missing: run make tools first", returncode=2)


class Run:
    def __init__(self, res):
        self.rc = res.returncode
        self.out = res.stdout
        self.err = res.stderr
        self.lines = res.stdout.splitlines()
        self.result = next((l for l in self.lines if l.startswith("result ")), "")
        self.fields = {}
        if self.result.startswith("result ok "):
            for kv in self.result.split()[2:]:
                k, v = kv.split("=")
                self.fields[k] = int(v)

    def __repr__(self):
        return f"Run(rc={self.rc}, stdout={self.out!r}, stderr={self.err[-3000:]!r})"


def fence(pg, op, *args, dsn=None):
    res = subprocess.run([DRIVER, *args, dsn or pg.dsn(), op], capture_output=True, text=True, timeout=120)
    return Run(res)


def psql_cmd(pg, *args, appname="test_psql"):
    env = dict(os.environ, PGAPPNAME=appname)
    return subprocess.run(["psql", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-X",
                           "-At", "-v", "ON_ERROR_STOP=1", *args, "postgres"],
                          capture_output=True, text=True, env=env, timeout=60)


class IdlePsql:
    """A psql reading commands from a pipe: an application's idle session."""

    def __init__(self, pg, appname, first_sql=None):
        self.pg = pg
        self.appname = appname
        env = dict(os.environ, PGAPPNAME=appname)
        self.proc = subprocess.Popen(
            ["psql", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-X", "-At",
             "postgres"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        if first_sql:
            self.proc.stdin.write(first_sql + "\n")
            self.proc.stdin.flush()
        want = "idle in transaction" if first_sql else "idle"
        self.pid = harness.wait_until(lambda: self._backend(want), timeout=30,
                                      what=f"psql session {appname} to be {want}")

    def _backend(self, state):
        rows = self.pg.sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                           "AND state = %s", (self.appname, state))
        return rows[0][0] if rows else None

    def send(self, sql):
        """Sends a statement and waits for psql to exit; returns (rc, stderr)."""
        try:
            out, err = self.proc.communicate(sql + "\n", timeout=30)
        except BrokenPipeError:               # psql already gone
            out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def backend_alive(pg, pid):
    return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0] == 1


def assert_write_refused(pg):
    res = psql_cmd(pg, "-c", "INSERT INTO t VALUES (100, 'x')")
    assert res.returncode != 0, res
    assert "read-only transaction" in res.stderr, res.stderr


def assert_write_allowed(pg, key):
    res = psql_cmd(pg, "-c", f"INSERT INTO t VALUES ({key}, 'ok')")
    assert res.returncode == 0, res.stderr


@pytest.fixture
def server(pg_factory):
    pg = pg_factory("fence")
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    return pg


def test_fence_ends_sessions_and_refuses_writes(server):
    pg = server
    idle = IdlePsql(pg, "app_idle")
    in_txn = IdlePsql(pg, "app_in_txn", first_sql="BEGIN; INSERT INTO t VALUES (1, 'uncommitted');")
    strait = psycopg.connect(pg.dsn(), autocommit=True, application_name="strait-apply")
    strait_pid = strait.info.backend_pid
    try:
        before = fence(pg, "status")
        assert before.rc == 0 and before.fields["fenced"] == 0, before

        run = fence(pg, "fence")
        assert run.rc == 0, run
        assert run.fields["fenced"] == 1 and run.fields["checked"] == 1, run
        assert run.fields["ended"] == 2, run
        out = run.out
        assert "ALTER SYSTEM SET default_transaction_read_only = on: done" in out
        assert "SELECT pg_reload_conf(): t" in out
        assert f"ended session {idle.pid} (database \"postgres\", user \"postgres\", application \"app_idle\")" in out
        assert f"ended session {in_txn.pid} " in out
        assert "ended 2 client session(s)" in out
        assert "a new session sees default_transaction_read_only = on" in out

        # the applications' sessions are gone; strait's own is not
        assert not backend_alive(pg, idle.pid)
        assert not backend_alive(pg, in_txn.pid)
        assert backend_alive(pg, strait_pid)
        assert strait.execute("SELECT 1").fetchone()[0] == 1
        # a surviving session picks up the reloaded default too: strait's own
        # writers must ask for READ WRITE (or SET the default off) to write
        harness.wait_until(lambda: strait.execute("SHOW default_transaction_read_only").fetchone()[0] == "on",
                           timeout=10, what="the strait session to see the reloaded setting")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            strait.execute("INSERT INTO t VALUES (50, 'strait')")
        strait.execute("BEGIN READ WRITE")
        strait.execute("INSERT INTO t VALUES (50, 'strait')")
        strait.execute("COMMIT")
        rc, err = idle.send("SELECT 1;")
        assert rc != 0 and "terminating connection due to administrator command" in err, err
        # the open transaction was rolled back; only the READ WRITE one is there
        assert pg.sql("SELECT id FROM t") == [(50,)]

        assert_write_refused(pg)
        status = fence(pg, "status")
        assert status.rc == 0 and status.fields["fenced"] == 1, status
        assert "the server is fenced" in status.out
    finally:
        idle.close()
        in_txn.close()
        strait.close()


def test_fence_survives_restart_and_is_idempotent(server):
    pg = server
    run = fence(pg, "fence")
    assert run.rc == 0 and run.fields["ended"] == 0, run
    assert "ended 0 client session(s) (none to end)" in run.out

    pg.restart()
    status = fence(pg, "status")
    assert status.rc == 0 and status.fields["fenced"] == 1, status
    assert_write_refused(pg)

    again = fence(pg, "fence")
    assert again.rc == 0 and again.fields["fenced"] == 1, again
    assert "already on (fenced before?)" in again.out
    assert_write_refused(pg)


def test_unfence_allows_writes(server):
    pg = server
    assert fence(pg, "fence").rc == 0
    assert_write_refused(pg)

    run = fence(pg, "unfence")
    assert run.rc == 0, run
    assert run.fields["fenced"] == 0 and run.fields["ended"] == 0, run
    assert "ALTER SYSTEM RESET default_transaction_read_only: done" in run.out
    assert "the server is unfenced" in run.out
    assert_write_allowed(pg, 1)

    again = fence(pg, "unfence")
    assert again.rc == 0 and again.fields["fenced"] == 0, again
    assert "already off" in again.out
    pg.restart()
    assert fence(pg, "status").fields["fenced"] == 0
    assert_write_allowed(pg, 2)


def test_fence_check_reports_a_stronger_setting(server):
    """A database-level setting beats ALTER SYSTEM: the check must notice, not claim success."""
    pg = server
    pg.sql("ALTER DATABASE postgres SET default_transaction_read_only = off")
    run = fence(pg, "fence")
    assert run.rc == 1, run
    assert "result error new sessions still see default_transaction_read_only = off" in run.out
    pg.sql("ALTER DATABASE postgres RESET default_transaction_read_only")
    assert fence(pg, "status").fields["fenced"] == 1


def test_fence_unreachable_server(tmp_path):
    res = subprocess.run([DRIVER, "--timeout-ms", "5000",
                          f"host={tmp_path} port=1 dbname=postgres user=postgres", "fence"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res
    assert "result error connection failed while connecting" in res.stdout, res.stdout


def test_fence_driver_usage():
    res = subprocess.run([DRIVER, "dbname=x", "explode"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "usage" in res.stderr


def test_fence_falls_back_to_alter_database(server):
    """A role that owns its database but may not ALTER SYSTEM (a managed service's)."""
    pg = server
    pg.sql("CREATE ROLE app_owner LOGIN")
    pg.sql("GRANT pg_signal_backend, pg_read_all_stats TO app_owner")
    pg.sql("CREATE ROLE app_user LOGIN")
    pg.sql("CREATE DATABASE appdb OWNER app_owner")
    dsn = pg.dsn(dbname="appdb", user="app_owner")
    owner = psycopg.connect(dsn, autocommit=True)
    owner.execute("CREATE TABLE t (id int PRIMARY KEY)")
    owner.execute("GRANT INSERT ON t TO app_user")
    owner.close()
    in_txn = psycopg.connect(pg.dsn(dbname="appdb", user="app_user"), application_name="app_in_txn")
    in_txn.execute("INSERT INTO t VALUES (1)")          # holds a lock, uncommitted
    in_txn_pid = in_txn.info.backend_pid
    other_db = psycopg.connect(pg.dsn(), autocommit=True, application_name="app_other_db")
    try:
        run = fence(pg, "fence", dsn=dsn)
        assert run.rc == 0, run
        assert "ALTER SYSTEM refused (ERROR:  permission denied to set parameter" in run.out, run
        assert "falling back to ALTER DATABASE, which fences database \"appdb\" only" in run.out
        assert "ALTER DATABASE \"appdb\" SET default_transaction_read_only = on: done" in run.out
        assert "pg_reload_conf" not in run.out
        assert f"ended session {in_txn_pid} (database \"appdb\"" in run.out
        assert "ended 1 client session(s) of this database" in run.out
        assert run.fields["fenced"] == 1 and run.fields["ended"] == 1 and run.fields["left"] == 0, run
        # gone and holding nothing: the uncommitted row was rolled back
        assert not backend_alive(pg, in_txn_pid)
        assert pg.sql("SELECT count(*) FROM pg_locks WHERE pid = %s", (in_txn_pid,))[0][0] == 0
        assert backend_alive(pg, other_db.info.backend_pid)
        with psycopg.connect(dsn, autocommit=True) as c:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                c.execute("INSERT INTO t VALUES (2)")
        # kept across a restart, like ALTER SYSTEM's
        pg.restart()
        assert fence(pg, "status", dsn=dsn).fields["fenced"] == 1
        # the other databases are not fenced by it
        assert pg.sql("SHOW default_transaction_read_only")[0][0] == "off"

        run = fence(pg, "unfence", dsn=dsn)
        assert run.rc == 0, run
        assert "BEGIN READ WRITE; ALTER DATABASE \"appdb\" RESET default_transaction_read_only; COMMIT: done" in run.out, run
        assert run.fields["fenced"] == 0, run
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO t VALUES (3)")
            assert c.execute("SELECT array_agg(id) FROM t").fetchone()[0] == [3]
    finally:
        in_txn.close()
        other_db.close()


def test_fence_lists_sessions_it_may_not_end(server):
    """Without pg_signal_backend, another role's session is listed, not a failed run."""
    pg = server
    pg.sql("CREATE ROLE app_owner LOGIN")
    pg.sql("GRANT pg_read_all_stats TO app_owner")
    pg.sql("CREATE DATABASE appdb OWNER app_owner")
    dsn = pg.dsn(dbname="appdb", user="app_owner")
    su = psycopg.connect(pg.dsn(dbname="appdb"), autocommit=True, application_name="admin")
    try:
        run = fence(pg, "fence", dsn=dsn)
        assert run.rc == 0, run
        assert (f"not allowed to end (needs superuser or pg_signal_backend): session "
                f"{su.info.backend_pid} (database \"appdb\", user \"postgres\"") in run.out, run
        assert "WARNING: 1 session(s) could not be ended by this role" in run.out
        assert run.fields["left"] == 1 and run.fields["ended"] == 0, run
        assert backend_alive(pg, su.info.backend_pid)
    finally:
        su.close()
