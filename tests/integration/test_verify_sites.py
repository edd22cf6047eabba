"""straitctl verify across two sites, while replication runs: both sides
compared at one point of the stream, only statements and checksums on the
link, exactly the keys that differ reported.

Two real PostgreSQL servers and a straitd per site; the WAN test runs the
link through WireGuard between network namespaces and reads the veth."""

import json
import os
import signal
import statistics
import threading
import time

import pytest

import harness
from harness import wait_until
from test_initial_sync import pgbench_background
from test_replication import PGBENCH_TABLES, start_pair, tpcb_balanced, wait_equal
from test_spool import harness_metrics, needs_root, tunnel_pair, wait_link

MiB = 1024 * 1024


def schema(pg):
    pg.pgbench("-i", "-s", "2", "-q")
    pg.sql("CREATE TABLE items (id int PRIMARY KEY, name text, qty numeric)")
    pg.sql("INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 20000) g")
    pg.sql("CREATE TABLE notes (body text, n int)")      # no key: compared as a multiset
    pg.sql("INSERT INTO notes SELECT 'note ' || (g % 50), g % 3 FROM generate_series(1, 2000) g")


def pair(tmp_path, pg_factory, straitd_factory, extra=None, schema_fn=schema):
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory,
                                            stream_extra=extra, schema=schema_fn)
    wait_link(onprem)
    return src, dst, onprem, cloud


def verify(d, *args, expect=None, timeout=300):
    res = d.ctl("verify", "--json", *args, check=False, timeout=timeout)
    assert res.returncode in (0, 1), res.stderr
    if expect is not None:
        assert res.returncode == expect, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    return res.returncode, doc


def tables_of(doc):
    assert len(doc["streams"]) == 1 and doc["streams"][0]["ok"], doc
    return {t["table"]: t for t in doc["streams"][0]["tables"]}


def metric(d, name, stream, to="cloud"):
    """One sample of a stream's metric family (at one destination) from /metrics."""
    prefix = f'{name}{{stream="{stream}",to="{to}"}} '
    for line in harness_metrics(d).splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def test_verify_under_load_names_exactly_the_changed_keys(tmp_path, pg_factory, straitd_factory):
    """pgbench writes all along. An equal pair verifies equal (pgbench's
    tables included: pgbench_history has no key); then rows changed on the
    target alone are named exactly, for a keyed table and a keyless one."""
    src, dst, onprem, cloud = pair(tmp_path, pg_factory, straitd_factory)
    # runs until the verifies are done, then ends as at the end of its -T (SIGALRM)
    load = pgbench_background(src, "-c", "4", "-T", "300", "-n")
    try:
        wait_until(lambda: src.sql("SELECT count(*) FROM pgbench_history")[0][0] > 0, 30,
                   what="the load to be under way")
        code, doc = verify(onprem, expect=0)
        t = tables_of(doc)
        assert set(t) == {'"public"."items"', '"public"."notes"'} | {
            f'"public"."{x}"' for x in PGBENCH_TABLES}
        assert all(x["equal"] for x in t.values()), t
        assert t['"public"."items"']["rows_source"] == 20000 and t['"public"."items"']["keyed"]
        assert not t['"public"."pgbench_history"']["keyed"]
        assert t['"public"."pgbench_history"']["rows_source"] > 0
        assert doc["equal"] is True

        # the target alone: an update, a delete and an insert on each table
        dst.sql("SET session_replication_role = replica")
        dst.sql("UPDATE items SET qty = -1 WHERE id = 42")
        dst.sql("DELETE FROM items WHERE id = 7777")
        dst.sql("INSERT INTO items VALUES (30001, 'stray', 0)")
        dst.sql("UPDATE notes SET n = 9 WHERE ctid = (SELECT ctid FROM notes WHERE body = 'note 5' "
                "AND n = 2 LIMIT 1)")
        dst.sql("DELETE FROM notes WHERE ctid = (SELECT ctid FROM notes WHERE body = 'note 7' "
                "AND n = 1 LIMIT 1)")
        dst.sql("INSERT INTO notes VALUES ('stray note', 0)")
        code, doc = verify(onprem, expect=1)
        t = tables_of(doc)
        items = t['"public"."items"']
        assert items["changed"] == ["(id)=(42)"]
        assert items["missing"] == ["(id)=(7777)"]
        assert items["extra"] == ["(id)=(30001)"]
        notes = t['"public"."notes"']
        assert sorted((x["row"], x["count"]) for x in notes["missing"]) == [
            ('("note 5",2)', 1), ('("note 7",1)', 1)]
        assert sorted((x["row"], x["count"]) for x in notes["extra"]) == [
            ('("note 5",9)', 1), ('("stray note",0)', 1)]
        # pgbench's tables still equal under the load: both sides met at one point
        for name in PGBENCH_TABLES:
            assert t[f'"public"."{name}"']["equal"], t[f'"public"."{name}"']

        # one table, as text; only that table is locked: an open writer of another waits for nothing
        with src.connect() as writer:
            writer.execute("BEGIN")
            writer.execute("INSERT INTO notes VALUES ('open writer', 1)")
            res = onprem.ctl("verify", "--table", "items", check=False)
            writer.execute("ROLLBACK")
        assert res.returncode == 1, res.stdout
        assert "\"public\".\"items\": DIFFERENT" in res.stdout and "(id)=(7777)" in res.stdout
        assert "pgbench_accounts" not in res.stdout
        assert load.poll() is None, "the load ended before the verifies did"
    finally:
        if load.poll() is None:
            load.send_signal(signal.SIGALRM)
        load.communicate(timeout=60)
    wait_equal(src, dst, PGBENCH_TABLES)
    assert tpcb_balanced(dst)
    st = onprem.status()["verify"]
    last = {s["stream"]: s for s in st["streams"]}
    assert last["app"]["result"] == "different" and last["app"]["differences"] == 3   # the last run: items alone


def test_verify_refusals(tmp_path, pg_factory, straitd_factory):
    """Run on the sink's site, for an unknown stream or table, or while the
    schedule holds the stream: a clear error, exit 1, replication unharmed."""
    src, dst, onprem, cloud = pair(tmp_path, pg_factory, straitd_factory,
                                   schema_fn=lambda pg: pg.sql("CREATE TABLE t (id int PRIMARY KEY)"))
    res = cloud.ctl("verify", check=False)
    assert res.returncode == 1 and "sends no stream" in res.stdout
    res = onprem.ctl("verify", "--stream", "nope", check=False)
    assert res.returncode == 1 and "does not send a stream named nope" in res.stdout
    res = onprem.ctl("verify", "--table", "nope", check=False)
    assert res.returncode == 1 and "none of the tables asked for" in res.stdout
    res = onprem.ctl("verify", "--rate", "fast", check=False)
    assert res.returncode == 2
    src.sql("INSERT INTO t SELECT generate_series(1, 100)")
    code, doc = verify(onprem, expect=0)
    assert tables_of(doc)['"public"."t"']["rows_source"] == 100


def test_verify_waits_for_a_held_stream_to_be_told(tmp_path, pg_factory, straitd_factory):
    """A stream the schedule holds cannot reach a verify point: said at once."""
    src, dst, onprem, cloud = pair(
        tmp_path, pg_factory, straitd_factory, {"schedule": [{"rate": 0}]},
        schema_fn=lambda pg: pg.sql("CREATE TABLE t (id int PRIMARY KEY)"))
    res = onprem.ctl("verify", check=False)
    assert res.returncode == 1 and "schedule holds it" in res.stdout


def test_periodic_verify_shows_in_status_and_metrics(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud = pair(
        tmp_path, pg_factory, straitd_factory, {"verify": {"every": "5s"}},
        schema_fn=lambda pg: (pg.sql("CREATE TABLE t (id int PRIMARY KEY, v int)"),
                              pg.sql("INSERT INTO t SELECT g, g FROM generate_series(1, 500) g")))

    def last():
        s = onprem.status()["verify"]["streams"]
        return s[0] if s else None

    wait_until(lambda: last() is not None, 60, what="a periodic verify")
    first = last()
    assert first["result"] == "equal" and first["rows"] == 500
    assert metric(onprem, "strait_verify_last_result", stream="app") == 1
    dst.sql("SET session_replication_role = replica")
    dst.sql("DELETE FROM t WHERE id = 3")
    wait_until(lambda: last()["finished"] > first["finished"] and last()["result"] == "different",
               60, what="the next periodic verify to find the difference")
    assert last()["differences"] == 1
    assert metric(onprem, "strait_verify_last_result", stream="app") == 0
    assert metric(onprem, "strait_verify_last_differences", stream="app") == 1


def process_tree(root):
    """root and its descendants, each with all its threads."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(harness.children(pid))
    tids = []
    for pid in tree:
        try:
            tids.extend(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return tids


def pin_sites(*sites):
    """Each site's process trees on a CPU of their own (new processes and
    threads inherit it); what is needed to undo it. On a host with fewer
    CPUs than sites nothing is pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    undo = []
    if len(cpus) < len(sites):
        return undo
    for cpu, roots in zip(cpus, sites):
        for root in roots:
            for tid in process_tree(root):
                try:
                    undo.append((tid, os.sched_getaffinity(tid)))
                    os.sched_setaffinity(tid, {cpu})
                except OSError:      # a thread that just ended
                    pass
    return undo


def unpin(undo):
    for tid, cpus in undo:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def big_schema(pg):
    # as pgbench's manual asks, a scale above the clients: row-lock waits are not the measure
    pg.pgbench("-i", "-s", "4", "-q")
    pg.sql("CREATE TABLE big (id bigint PRIMARY KEY, payload text)")
    pg.sql("INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 1000000) g")
    pg.sql("VACUUM ANALYZE big")


@needs_root
@pytest.mark.big
def test_verify_of_a_million_rows_over_the_wan(tmp_path, netns_sites, pg_factory, straitd_factory):
    """Through the WireGuard tunnel: verifying 1,000,000 rows moves less than
    1% of the table's size on the veth, and a pgbench load keeps more than
    80% of its throughput while a verify of every table runs (pgbench's own
    tables locked for a moment at each point), limited with --rate, its
    snapshots renewed about every second.

    Two sites are two hosts: for the throughput windows each site is pinned
    to its own CPU (the source's PostgreSQL, straitd and pgbench on one, the
    target's on the other), so the target's scans and apply do not take the
    source's CPU as they could not in production."""
    ns, src, dst, onprem, cloud, _ = tunnel_pair(
        tmp_path, netns_sites, pg_factory, straitd_factory, {}, schema=big_schema)
    wait_link(onprem)
    size = src.sql("SELECT pg_table_size('big')")[0][0]

    rx0, tx0 = ns[0].counters()
    t0 = time.monotonic()
    code, doc = verify(onprem, "--table", "big", expect=0)
    seconds = time.monotonic() - t0
    rx1, tx1 = ns[0].counters()
    moved = (rx1 - rx0) + (tx1 - tx0)
    big = tables_of(doc)['"public"."big"']
    assert big["rows_source"] == 1000000 and big["equal"]
    print(f"\n1M rows ({size / MiB:.1f} MiB): {moved} bytes on the veth ({100 * moved / size:.3f}%), "
          f"{seconds:.1f} s; the job counted {doc['streams'][0]['link_bytes']} bytes")
    assert moved < 0.01 * size

    def tps(seconds):
        out = src.pgbench("-c", "2", "-T", str(seconds), "-n").stdout
        return float(next(line.split("=")[1].split()[0] for line in out.splitlines()
                          if line.startswith("tps")))

    dst.sql("VACUUM ANALYZE")    # the initial copy's autovacuum is not the verify's cost
    for pg in (src, dst):        # nor is the load's checkpoint
        pg.sql("CHECKPOINT")
    pinned = pin_sites([src.pid, onprem.pid, os.getpid()], [dst.pid, cloud.pid])
    try:
        tps(3)                   # warm up: caches, the apply's prepared statements
        # the median of a few short windows: one autovacuum or checkpoint is not the verdict
        before = statistics.median(tps(4) for _ in range(3))
        # every table, so each snapshot point also locks the load's own tables for a moment;
        # at 30,000 rows/s a side big alone takes about 33 s: the windows sit inside it
        runs = []
        v = threading.Thread(target=lambda: runs.append(
            verify(onprem, "--rate", "30000", expect=0)[1]))
        v.start()
        try:
            time.sleep(2)
            during = statistics.median(tps(4) for _ in range(5))
            assert v.is_alive(), "the verify ended before the windows did: they measured nothing"
        finally:
            v.join()
        after = statistics.median(tps(4) for _ in range(3))
    finally:
        unpin(pinned)
    base = (before + after) / 2
    points = runs[0]["streams"][0]["points"]
    print(f"pgbench: {before:.0f} and {after:.0f} tps alone, {during:.0f} tps while a verify ran "
          f"({100 * (1 - during / base):.1f}% less; {points} snapshot points)")
    assert points > 10, "the snapshots were not renewed during a long verify"
    assert during > 0.8 * base
