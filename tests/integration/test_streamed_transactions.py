"""Large transactions cross while they run (pgoutput streaming, PostgreSQL 14
and later): the source passes the blocks of a transaction still in progress
on at once, the sink holds them on disk and applies the transaction when its
commit arrives; an abort, whole or of a savepoint, discards what it covers.
Either daemon killed in the middle leaves the target equal, nothing twice.

The source servers here stream a transaction once its changes pass 256 kB
(logical_decoding_work_mem, 64 MB by default: the 700,000-row test in
test_big_transactions.py streams at the default), so that a few MB make
many blocks interleaved with ordinary transactions."""
import time

import pytest

from harness import wait_until
from test_noloss import (assert_no_sanitizer_reports, restart, sink_status, source_status,
                         start_pair, tail, wait_sink_ready, wait_streaming)

STEP = 20_000        # rows per statement, about 1.5 MB of changes


def schema(pg):
    pg.sql("CREATE TABLE big (id int PRIMARY KEY, body text NOT NULL)")
    pg.sql("CREATE TABLE small (id int PRIMARY KEY, note text NOT NULL)")


def streaming_source(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, cluster = start_pair(tmp_path, pg_factory, straitd_factory, schema)
    src.sql("ALTER SYSTEM SET logical_decoding_work_mem = '256kB'")
    src.sql("SELECT pg_reload_conf()")
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    return src, dst, onprem, cloud


def insert_step(cur, first):
    cur.execute("INSERT INTO big SELECT g, md5(g::text) || md5((g * 3)::text) "
                "FROM generate_series(%s::int, %s::int) g", (first, first + STEP - 1))


def streamed(cloud):
    return sink_status(cloud)["streamed"]


def digest(pg, table="big"):
    return pg.sql(f"SELECT count(*), coalesce(sum(id), 0), "
                  f"md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM {table}")[0]


def wait_equal(src, dst, what, timeout=180):
    for table in ("big", "small"):
        want = digest(src, table)
        wait_until(lambda: digest(dst, table) == want, timeout, interval=0.5,
                   what=f"{what}: {table} equal at the target")


def test_a_running_transaction_crosses_before_its_commit(tmp_path, pg_factory, straitd_factory):
    """Blocks of an open transaction reach the sink's disk while it runs; an
    ordinary transaction committed meanwhile is applied at once; the target
    never shows part of the big one and has all of it after the commit."""
    src, dst, onprem, cloud = streaming_source(tmp_path, pg_factory, straitd_factory)
    with src.connect() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            for i in range(4):
                insert_step(cur, 1 + i * STEP)
            wait_until(lambda: streamed(cloud)["spilled_bytes"] > 1_000_000, 60, interval=0.2,
                       what="the running transaction's blocks at the sink")
            assert streamed(cloud)["open"] == 1
            src.sql("INSERT INTO small VALUES (1, 'committed while the big one runs')")
            wait_until(lambda: dst.sql("SELECT count(*) FROM small")[0][0] == 1, 60,
                       interval=0.2, what="the small transaction at the target")
            assert dst.sql("SELECT count(*) FROM big")[0][0] == 0
            insert_step(cur, 1 + 4 * STEP)
        conn.commit()
    wait_equal(src, dst, "after the commit")
    s = streamed(cloud)
    assert s["open"] == 0 and s["spilled_bytes"] == 0 and s["committed"] >= 1, s
    sink = sink_status(cloud)
    assert sink["last_error"] is None and sink["apply"]["last_error"] is None, sink
    assert_no_sanitizer_reports(onprem, cloud)


def test_aborts_discard_what_they_cover(tmp_path, pg_factory, straitd_factory):
    """A streamed transaction rolled back leaves nothing; one with a rolled
    back savepoint (nested savepoints, one released) arrives without the
    rows of the savepoint and with everything else."""
    src, dst, onprem, cloud = streaming_source(tmp_path, pg_factory, straitd_factory)
    with src.connect() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            insert_step(cur, 1_000_000)
            insert_step(cur, 1_100_000)
            wait_until(lambda: streamed(cloud)["open"] == 1, 60, interval=0.2,
                       what="the doomed transaction at the sink")
        conn.rollback()
        with conn.cursor() as cur:
            insert_step(cur, 1)
            cur.execute("SAVEPOINT keep")
            insert_step(cur, 1 + STEP)
            cur.execute("RELEASE SAVEPOINT keep")
            cur.execute("SAVEPOINT outer_sp")
            insert_step(cur, 1 + 2 * STEP)
            cur.execute("SAVEPOINT inner_sp")
            insert_step(cur, 1 + 3 * STEP)
            cur.execute("ROLLBACK TO SAVEPOINT outer_sp")
            # the rows again, as the transaction now wants them
            cur.execute("INSERT INTO big SELECT g, 'after the rollback' "
                        "FROM generate_series(%s::int, %s::int) g", (1 + 2 * STEP, 10 + 2 * STEP))
            cur.execute("UPDATE big SET body = 'changed' WHERE id <= 100")
            insert_step(cur, 1 + 5 * STEP)
        conn.commit()
    wait_equal(src, dst, "after the aborts")
    assert dst.sql("SELECT count(*) FROM big WHERE id >= 1000000")[0][0] == 0
    s = streamed(cloud)
    assert s["aborted"] >= 1 and s["open"] == 0, s
    assert_no_sanitizer_reports(onprem, cloud)


@pytest.mark.parametrize("who", ["source", "sink"])
def test_killed_in_the_middle_of_a_streamed_transaction(tmp_path, pg_factory, straitd_factory,
                                                        who):
    """kill -9 of either straitd while a big transaction streams (blocks at
    the sink, more to come), with ordinary transactions around it: after the
    restart and the commit the target is equal, every row once."""
    src, dst, onprem, cloud = streaming_source(tmp_path, pg_factory, straitd_factory)
    with src.connect() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            for i in range(3):
                insert_step(cur, 1 + i * STEP)
            wait_until(lambda: streamed(cloud)["spilled_bytes"] > 500_000, 60, interval=0.2,
                       what="the running transaction's blocks at the sink")
            # committed after the big one began, and applied: a resume after it
            # must reach back to the big one's first block
            src.sql("INSERT INTO small VALUES (1, 'before the kill')")
            wait_until(lambda: dst.sql("SELECT count(*) FROM small")[0][0] == 1, 60,
                       interval=0.2, what="the small transaction at the target")
            restart(onprem if who == "source" else cloud, how="kill")
            src.sql("INSERT INTO small VALUES (2, 'after the kill')")
            for i in range(3, 6):
                insert_step(cur, 1 + i * STEP)
        conn.commit()
    src.sql("INSERT INTO small VALUES (3, 'after the commit')")
    try:
        wait_equal(src, dst, f"after killing the {who}")
    except Exception:
        print(tail(onprem, 60))
        print(tail(cloud, 60))
        raise
    assert source_status(onprem)["last_error"] is None
    assert_no_sanitizer_reports(onprem, cloud)


def test_killed_while_the_commit_is_applied(tmp_path, pg_factory, straitd_factory):
    """The sink's straitd killed while it replays a committed streamed
    transaction into the target: it comes back, the source sends the
    transaction again from its first block, and it is applied once."""
    src, dst, onprem, cloud = streaming_source(tmp_path, pg_factory, straitd_factory)
    with src.connect() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            insert_step(cur, 1)
            # committed (and applied) while the big one runs: the resume after
            # the kill is after it, and must reach back to the big one's start
            src.sql("INSERT INTO small VALUES (0, 'during')")
            wait_until(lambda: dst.sql("SELECT count(*) FROM small")[0][0] == 1, 60,
                       interval=0.2, what="the small transaction at the target")
            for i in range(1, 10):
                insert_step(cur, 1 + i * STEP)
        conn.commit()
    # the replay is under way once its Begin reached the target: a backend of
    # the apply holds a transaction open
    wait_until(lambda: sink_status(cloud)["streamed"]["committed"] >= 1 or
               dst.sql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in%' "
                       "OR backend_xid IS NOT NULL")[0][0] > 0,
               60, interval=0.05, what="the replay to begin")
    restart(cloud, how="kill")
    src.sql("INSERT INTO small VALUES (1, 'after')")
    wait_equal(src, dst, "after killing the sink during the replay")
    assert_no_sanitizer_reports(onprem, cloud)


def test_a_table_first_changed_by_a_streamed_transaction(tmp_path, pg_factory, straitd_factory):
    """pgoutput describes a table once per connection, and a streamed
    transaction that commits counts: the transactions after it carry no
    Relation message for the tables it described. A sink killed after them
    resumes there and still applies later changes of those tables (every
    spooled record carries the descriptions it uses)."""
    src, dst, onprem, cloud = streaming_source(tmp_path, pg_factory, straitd_factory)
    with src.connect() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            for i in range(3):
                insert_step(cur, 1 + i * STEP)
        conn.commit()
    wait_equal(src, dst, "after the streamed transaction")
    assert streamed(cloud)["committed"] >= 1
    src.sql("UPDATE big SET body = 'after' WHERE id = 1")
    wait_until(lambda: dst.sql("SELECT body FROM big WHERE id = 1")[0][0] == "after", 60,
               interval=0.2, what="the update at the target")
    restart(cloud, how="kill")
    src.sql("UPDATE big SET body = 'resumed' WHERE id = 2")
    src.sql("DELETE FROM big WHERE id = 3")
    wait_equal(src, dst, "after the restart")
    sink = sink_status(cloud)
    assert sink["last_error"] is None and sink["apply"]["last_error"] is None, tail(cloud)
