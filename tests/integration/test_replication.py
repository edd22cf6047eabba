"""End to end: two sites on this host's loopback (tunnel backend none), a
real PostgreSQL at each, straitd at each; changes on the primary arrive at
the replica through the source, the TLS relay link and the sink's apply."""

import signal

import pytest

import harness
from harness import table_dump, wait_until

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def start_pair(tmp_path, pg_factory, straitd_factory, stream_extra=None, schema=None):
    """Source and target servers, schema(pg) run on both before the stream's
    slot exists (no initial sync), and a straitd per site."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        if schema:
            schema(pg)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    stream.update(stream_extra or {})
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    return src, dst, onprem, cloud, cluster


def stream_status(d, role):
    return next(r for r in d.status()["replication"] if r["role"] == role)


def wait_streaming(onprem, timeout=30):
    wait_until(lambda: stream_status(onprem, "source")["streaming"], timeout,
               what="the source to stream")


def wait_equal(src, dst, tables, timeout=60):
    def same():
        return all(table_dump(src, t) == table_dump(dst, t) for t in tables)
    wait_until(same, timeout, interval=0.5, what="the target to equal the source")


def tpcb_balanced(pg):
    rows = pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                  "(SELECT sum(bbalance) FROM pgbench_branches), "
                  "(SELECT sum(tbalance) FROM pgbench_tellers), "
                  "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)")[0]
    return len(set(rows)) == 1


def test_pgbench_replicates(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory,
                                            schema=lambda pg: pg.pgbench("-i", "-s", "2", "-q"))
    wait_streaming(onprem)
    src.pgbench("-c", "4", "-T", "8")
    wait_equal(src, dst, PGBENCH_TABLES)
    assert tpcb_balanced(dst)
    st = stream_status(onprem, "source")
    assert st["batches_sent"] > 0 and st["bytes_wire"] < st["bytes_raw"]
    sink = stream_status(cloud, "sink")
    assert sink["apply_ready"] and sink["batches_received"] > 0


def test_source_and_slot_are_created(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory)
    wait_until(lambda: src.sql("SELECT count(*) FROM pg_replication_slots "
                               "WHERE slot_name = 'strait_app' AND plugin = 'pgoutput'")[0][0] == 1,
               what="the slot")
    assert src.sql("SELECT puballtables FROM pg_publication WHERE pubname = 'strait_app'") == [(True,)]


@pytest.mark.parametrize("victim", ["source", "sink"])
def test_kill_9_resumes_exactly_once(tmp_path, pg_factory, straitd_factory, victim):
    src, dst, onprem, cloud, cluster = start_pair(
        tmp_path, pg_factory, straitd_factory,
        schema=lambda pg: pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, amount int NOT NULL)"))
    wait_streaming(onprem)
    import subprocess
    import threading
    stop = threading.Event()

    def writer():
        i = 0
        with src.connect() as conn:
            while not stop.is_set() and i < 100000:
                i += 1
                conn.execute("INSERT INTO ledger VALUES (%s, %s)", (i, i % 97))
    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(lambda: dst.sql("SELECT count(*) FROM ledger")[0][0] > 200, 30,
                   what="some rows to arrive")
        d = onprem if victim == "source" else cloud
        d.kill()
        wait_until(lambda: src.sql("SELECT count(*) FROM ledger")[0][0] > 
                   dst.sql("SELECT count(*) FROM ledger")[0][0] + 100, 30,
                   what="a backlog while straitd is down")
        d2 = harness.Straitd(d.config_path, site=d.site)
        d2.start()
        try:
            stop.set()
            t.join()
            wait_equal(src, dst, ["ledger"])
            assert dst.sql("SELECT count(*), count(DISTINCT id) FROM ledger")[0] == \
                src.sql("SELECT count(*), count(DISTINCT id) FROM ledger")[0]
        finally:
            d2.stop()
    finally:
        stop.set()
        t.join()


@pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")
def test_pgbench_over_a_wireguard_tunnel(tmp_path, netns_sites, pg_factory, straitd_factory):
    """Two namespace sites joined only by a veth; straitd brings up the
    WireGuard tunnel (wireguard-go) and the stream runs through it. The bytes
    on the veth per pgbench transaction are printed for the record."""
    ns = netns_sites(2)
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        pg.pgbench("-i", "-s", "2", "-q")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    cluster = harness.Cluster(tmp_path, harness.tunnel_sites([src, dst], ns), [stream],
                              backend="userspace")
    onprem = straitd_factory(cluster.path("onprem"), site="onprem", netns=ns[0].ns)
    cloud = straitd_factory(cluster.path("cloud"), site="cloud", netns=ns[1].ns)
    wait_streaming(onprem, timeout=60)
    assert onprem.status()["tunnel"]["backend"] == "userspace"
    before = ns[0].counters()
    txns_before = src.sql("SELECT count(*) FROM pgbench_history")[0][0]
    src.pgbench("-c", "4", "-T", "8")
    wait_equal(src, dst, PGBENCH_TABLES)
    after = ns[0].counters()
    txns = src.sql("SELECT count(*) FROM pgbench_history")[0][0] - txns_before
    assert tpcb_balanced(dst)
    wan = (after[0] - before[0]) + (after[1] - before[1])
    st = stream_status(onprem, "source")
    print(f"\n{txns} transactions: {wan / txns:.0f} B/txn on the WAN veth (both directions), "
          f"batch payload {st['bytes_raw'] / txns:.0f} B/txn raw, "
          f"{st['bytes_wire'] / txns:.0f} B/txn compressed "
          f"({st['bytes_raw'] / st['bytes_wire']:.1f}x)")


def seq_value(pg, name):
    return pg.sql("SELECT last_value FROM pg_sequences WHERE sequencename = %s", (name,))[0][0]


def test_sequences_are_raised_never_lowered(tmp_path, pg_factory, straitd_factory):
    def schema(pg):
        pg.sql("CREATE TABLE orders (id serial PRIMARY KEY, n int)")
        pg.sql("CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int)")
        pg.sql('CREATE SCHEMA "Odd Schema"')
        pg.sql('CREATE SEQUENCE "Odd Schema"."it\'s" START 5')
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, schema=schema)
    wait_streaming(onprem)
    src.sql("INSERT INTO orders (n) SELECT g FROM generate_series(1, 120) g")
    src.sql("INSERT INTO items (n) SELECT g FROM generate_series(1, 70) g")
    src.sql("""SELECT setval('"Odd Schema"."it''s"', 500)""")
    wait_until(lambda: seq_value(dst, "orders_id_seq") == 120 and seq_value(dst, "items_id_seq") == 70
               and seq_value(dst, "it's") == 500, 30, what="the sequences to be raised")
    # a target ahead of the source is never lowered
    dst.sql("SELECT setval('orders_id_seq', 1000)")
    src.sql("INSERT INTO orders (n) VALUES (1)")
    wait_equal(src, dst, ["items"])
    wait_until(lambda: stream_status(cloud, "sink")["sequences"]["updates"] >= 2, 30,
               what="another sequence update")
    assert seq_value(dst, "orders_id_seq") == 1000
    # the replica can take over without handing out an id the source used
    assert dst.sql("SELECT nextval('items_id_seq')")[0][0] == 71
