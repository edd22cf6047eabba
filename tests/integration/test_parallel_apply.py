"""Parallel apply (streams[].apply_workers): several target sessions apply
independent transactions side by side, every transaction commits in the
source's order, and each exactly once through crashes. Two sites on this
host's loopback, real PostgreSQL servers on default settings, straitd at
each; the backlog is built by a lock on the target that holds the apply
back, so what follows is a catch-up.

- Many independent transactions (accounts picked at random): equal, and
  applied by more than one session side by side. A hot row (every
  transaction moves one counter and logs the value it saw): equal (the
  counter's last value would be older if any of its updates had been
  applied out of order), and dealt to one session, since sessions side by
  side would only wait on each other's row locks.
- kill -9 of the sink's straitd, and an immediate stop of the target
  PostgreSQL (what its WAL had not flushed is gone), in the middle of a
  parallel catch-up: equal, nothing twice (every transaction inserts a row
  under a primary key, and a second copy would stop the stream).
- A transaction over 4 MiB among small ones goes to one session alone, also
  with the sink's straitd killed while it streams.
- A unique key outside the replica identity, which parallelism may apply in
  the wrong order: the stream stops once, applies what was in flight one
  session after the other, and goes on.
"""

import random
import threading
import time

import psycopg
import pytest

import harness
from harness import table_dump, wait_until
from test_noloss import (assert_no_sanitizer_reports, lsn_int, sink_status, start_pair, tail,
                         wait_sink_ready, wait_streaming)

WORKERS = 3
ACCOUNTS = 200000           # rows picked at random: rarely one a segment in flight holds
TABLES = ("acct", "ledger", "hot", "hotlog")


def schema(pg):
    pg.sql("CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL); "
           "CREATE TABLE ledger (id bigint PRIMARY KEY, acct int NOT NULL, amount int NOT NULL); "
           "CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL); "
           "CREATE TABLE hotlog (n bigint PRIMARY KEY, at timestamptz NOT NULL); "
           f"INSERT INTO acct SELECT g, 0 FROM generate_series(1, {ACCOUNTS}) g; "
           "INSERT INTO hot VALUES (1, 0)")


class Load:
    """Writers on the source: independent ones (a random account's balance
    and a ledger row) and hot ones (the one counter and the value it got)."""

    def __init__(self, pg, independent=3, hot=1, seed=7):
        self.pg = pg
        self.kinds = ["independent"] * independent + ["hot"] * hot
        self.rng = random.Random(seed)
        self.next_id = 1
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.errors = []
        self.txns = 0
        self.threads = []

    def _writer(self, kind, seed):
        rng = random.Random(seed)
        try:
            with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
                while not self.stop_event.is_set():
                    with self.lock:
                        lid = self.next_id
                        self.next_id += 1
                    with conn.transaction():
                        if kind == "hot":
                            n = conn.execute("UPDATE hot SET n = n + 1 WHERE id = 1 "
                                             "RETURNING n").fetchone()[0]
                            conn.execute("INSERT INTO hotlog VALUES (%s, now())", (n,))
                        else:
                            a, amount = rng.randint(1, ACCOUNTS), rng.randint(1, 100)
                            conn.execute("UPDATE acct SET balance = balance + %s WHERE id = %s",
                                         (amount, a))
                            conn.execute("INSERT INTO ledger VALUES (%s, %s, %s)",
                                         (lid, a, amount))
                    with self.lock:
                        self.txns += 1
        except Exception as e:          # surfaced by stop()
            self.errors.append(e)

    def start(self):
        self.threads = [threading.Thread(target=self._writer, args=(k, self.rng.random()),
                                         daemon=True) for k in self.kinds]
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
        if self.errors:
            raise self.errors[0]


def fingerprint(pg):
    return pg.sql("SELECT (SELECT sum(balance) FROM acct), (SELECT count(*) FROM ledger), "
                  "(SELECT n FROM hot), (SELECT count(*) FROM hotlog), "
                  "(SELECT sum(amount) FROM ledger)")[0]


def wait_equal(src, dst, daemons, timeout=120):
    try:
        wait_until(lambda: fingerprint(src) == fingerprint(dst), timeout, interval=0.5,
                   what="the target to equal the source")
    except TimeoutError:
        detail = "\n".join(f"{d.site} log:\n{tail(d)}" for d in daemons)
        pytest.fail(f"source {fingerprint(src)}, target {fingerprint(dst)}\n{detail}")
    for table in TABLES:
        assert table_dump(dst, table) == table_dump(src, table), table


def end_lsn(pg):
    return lsn_int(pg.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0])


def backlog(src, dst, cloud, seconds, **load_kw):
    """The load runs for seconds while a lock on the target holds the apply
    back; returns the source's WAL position after the load, and the lock's
    connection (still holding: the caller releases it)."""
    locker = psycopg.connect(dst.dsn(), autocommit=False)
    locker.execute("LOCK TABLE " + ", ".join(TABLES) + " IN ACCESS EXCLUSIVE MODE")
    load = Load(src, **load_kw).start()
    time.sleep(seconds)
    load.stop()
    end = end_lsn(src)
    wait_until(lambda: lsn_int(sink_status(cloud)["received_lsn"]) >= end - 4096 or
               sink_status(cloud)["apply"].get("pending_bytes", 0) > 4 * 1024 * 1024, 60,
               interval=0.2, what="the backlog to reach the sink")
    assert load.txns > 500, f"only {load.txns} transactions in {seconds}s"
    return end, locker, load.txns


def origins_moved(dst):
    """How many of the stream's origins (its own and its workers') moved."""
    return dst.sql("SELECT count(*) FROM pg_replication_origin_status WHERE "
                   "(external_id = 'strait_app' OR starts_with(external_id, 'strait_app:apply:')) "
                   "AND remote_lsn > '0/0'")[0][0]


def check_clean(cloud):
    wait_sink_ready(cloud)
    wait_until(lambda: sink_status(cloud)["apply"]["last_error"] is None, 30, interval=0.2,
               what="the apply to run without an error")
    sink = sink_status(cloud)
    assert sink["apply"]["conflicts"]["total"] == 0, sink
    return sink


def test_independent_rows_apply_side_by_side(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, schema,
                                            {"apply_workers": WORKERS})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    end, locker, txns = backlog(src, dst, cloud, 6, independent=4, hot=0)
    locker.rollback()
    locker.close()
    wait_equal(src, dst, (onprem, cloud))
    sink = check_clean(cloud)
    par = sink["apply"]["parallel"]
    assert par["workers"] == WORKERS
    assert par["segments"] > 1
    # more than one session applied the independent transactions, side by side
    assert origins_moved(dst) >= 2, dst.sql("SELECT * FROM pg_replication_origin_status")
    assert par["one_session_segments"] < par["segments"] / 2, par
    print(f"\n{txns} transactions; {par['segments']} segments, {par['waits']} waits, "
          f"{par['flushing_commits']} flushing commits")
    assert_no_sanitizer_reports(onprem, cloud)


def test_hot_rows_go_to_one_session(tmp_path, pg_factory, straitd_factory):
    """Every transaction moves the one counter: sessions side by side would
    only wait on each other's row locks, so the segments go to one session
    (in one-session groups) and the result is the same."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, schema,
                                            {"apply_workers": WORKERS})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    end, locker, txns = backlog(src, dst, cloud, 5, independent=0, hot=3)
    locker.rollback()
    locker.close()
    wait_equal(src, dst, (onprem, cloud))
    par = check_clean(cloud)["apply"]["parallel"]
    assert par["hot_share"] > 0.3, par
    assert par["one_session_segments"] > par["segments"] / 2, par
    # the counter's log is whole and in order on the target too
    n = dst.sql("SELECT n FROM hot")[0][0]
    assert n == txns
    assert dst.sql("SELECT count(*), min(n), max(n) FROM hotlog")[0] == (n, 1, n)
    assert_no_sanitizer_reports(onprem, cloud)


def test_large_transaction_goes_alone(tmp_path, pg_factory, straitd_factory):
    """A transaction larger than the coordinator holds (over 4 MiB of
    changes) among small ones: it waits for everything before it to commit,
    goes to one session as it arrives, and what follows waits for it; the
    sink's straitd killed while it streams changes nothing of the end."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, schema,
                                            {"apply_workers": WORKERS})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    load = Load(src, independent=2, hot=1).start()
    try:
        time.sleep(1)
        src.sql("INSERT INTO ledger SELECT g, 1, 1 FROM generate_series(1000000000, "
                "1000150000) g")
        wait_until(lambda: lsn_int(sink_status(cloud)["received_lsn"]) > 0, 30, interval=0.1,
                   what="the sink to receive")
        cloud.kill()
        cloud.env = {}
        cloud.start(timeout=30)
        time.sleep(1)
    finally:
        load.stop()
    wait_equal(src, dst, (onprem, cloud))
    check_clean(cloud)
    assert dst.sql("SELECT count(*) FROM ledger WHERE id >= 1000000000")[0][0] == 150001
    assert "applies it alone" in cloud.log_text(), tail(cloud)
    assert_no_sanitizer_reports(onprem, cloud)


@pytest.mark.parametrize("crash", ["sink_straitd", "target_postgres"])
def test_crash_during_parallel_catch_up(tmp_path, pg_factory, straitd_factory, crash):
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, schema,
                                            {"apply_workers": WORKERS})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    end, locker, _ = backlog(src, dst, cloud, 8)
    locker.rollback()
    locker.close()
    # in the middle of the catch-up: some of the backlog applied, not all
    wait_until(lambda: dst.sql("SELECT count(*) FROM ledger")[0][0] > 200, 30, interval=0.02,
               what="the catch-up to start")
    applied = lsn_int(sink_status(cloud)["apply"]["applied_lsn"])
    assert applied < end, "the catch-up ended before the crash"
    if crash == "sink_straitd":
        cloud.kill()
        cloud.env = {}
        cloud.start(timeout=30)
    else:
        dst.stop(mode="immediate")
        time.sleep(1)
        dst.start()
    wait_equal(src, dst, (onprem, cloud))
    check_clean(cloud)
    assert_no_sanitizer_reports(onprem, cloud)


def test_unique_key_outside_the_identity_stops_then_goes_on(tmp_path, pg_factory,
                                                            straitd_factory):
    """Row 1 gives its e-mail to row 2 in two transactions on different
    sessions; the first waits on the target (a lock), so the second runs
    ahead into the unique index. The stream stops, applies the two one after
    the other and goes on in parallel."""
    def users(pg):
        pg.sql("CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE); "
               "CREATE TABLE z (id int PRIMARY KEY, v int); "
               "INSERT INTO users VALUES (1, 'e@example.org'); INSERT INTO z VALUES (1, 0)")

    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, users,
                                            {"apply_workers": 2})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    locker = psycopg.connect(dst.dsn(), autocommit=False)
    try:
        locker.execute("SELECT * FROM z WHERE id = 1 FOR UPDATE")
        with src.connect() as conn:
            with conn.transaction():
                conn.execute("UPDATE z SET v = 1 WHERE id = 1")
                conn.execute("DELETE FROM users WHERE id = 1")
        wait_until(lambda: dst.sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                   "wait_event_type = 'Lock' AND application_name = "
                                   "'strait-apply'")[0][0] >= 1, 30, interval=0.1,
                   what="the first transaction to wait on the lock")
        src.sql("INSERT INTO users VALUES (2, 'e@example.org')")
        wait_until(lambda: "users_email_key" in cloud.log_text(), 30, interval=0.1,
                   what="the second transaction to run into the unique index")
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: dst.sql("SELECT id, email FROM users") == [(2, "e@example.org")], 60,
               interval=0.2, what="both transactions applied, in order")
    assert dst.sql("SELECT v FROM z")[0][0] == 1
    log = cloud.log_text()
    assert "applied by one session up to" in log, tail(cloud)
    # and on in parallel: later transactions apply as before
    src.sql("INSERT INTO users SELECT g, 'u' || g FROM generate_series(3, 50) g")
    wait_until(lambda: dst.sql("SELECT count(*) FROM users")[0][0] == 49, 60, interval=0.2,
               what="the later rows")
    assert table_dump(dst, "users") == table_dump(src, "users")
    assert_no_sanitizer_reports(onprem, cloud)


def bulk_schema(pg):
    pg.sql("CREATE TABLE bulk (id bigserial PRIMARY KEY, payload text); "
           "ALTER TABLE bulk ALTER payload SET STORAGE EXTERNAL")


def test_transactions_of_a_segment_each_with_large_values(tmp_path, pg_factory, straitd_factory):
    """Transactions of about a segment's size each (16 values of 64 KiB), a
    backlog of many times the sink's window: every one applied, in order."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, bulk_schema,
                                            {"apply_workers": 2})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    n = 96                               # 96 MiB: six times the sink's window
    locker = psycopg.connect(dst.dsn(), autocommit=False)   # holds the apply back
    locker.execute("LOCK TABLE bulk IN ACCESS EXCLUSIVE MODE")
    try:
        with src.connect() as conn:
            conn.autocommit = True
            conn.execute("CREATE TEMP TABLE pool AS SELECT k, (SELECT string_agg(md5(k::text "
                         "|| ':' || i::text), '') FROM generate_series(1, 2048) i) AS chunk "
                         "FROM generate_series(0, 63) k")
            for j in range(n):
                lo = (j * 16) % 64
                conn.execute("INSERT INTO bulk (payload) SELECT chunk FROM pool "
                             "WHERE k >= %s AND k < %s", (lo, lo + 16))
        wait_until(lambda: sink_status(cloud)["apply"].get("pending_bytes", 0) > 8 << 20, 60,
                   interval=0.2, what="the backlog to reach the sink")
    finally:
        locker.rollback()
        locker.close()
    try:
        wait_until(lambda: dst.sql("SELECT count(*) FROM bulk")[0][0] == n * 16, 120,
                   interval=0.5, what="every large transaction to be applied")
    except TimeoutError:
        pytest.fail(f"{dst.sql('SELECT count(*) FROM bulk')[0][0]} of {n * 16} rows; "
                    f"sink {sink_status(cloud)['apply']}\n{tail(cloud)}")
    assert table_dump(src, "bulk") == table_dump(dst, "bulk")
    check_clean(cloud)
    assert_no_sanitizer_reports(onprem, cloud)
