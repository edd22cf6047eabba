"""End to end: two sites on this host's loopback (tunnel backend none), a
real PostgreSQL at each, straitd at each; changes on the primary arrive at
the replica through the source, the TLS relay link and the sink's apply."""

import signal

import pytest

import harness
from harness import wait_until

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def start_pair(tmp_path, pg_factory, straitd_factory, stream_extra=None, schema=None):
    """Source and target servers, schema(pg) run on both before the stream's
    slot exists (no initial sync), and a straitd per site."""
    src, dst = harness.on_each(pg_factory, ("onprem", "cloud"))
    if schema:
        harness.on_each(schema, (src, dst))
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
        return harness.tables_equal(src, dst, tables)
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
    """kill -9 of one straitd in the middle of a pgbench run (and a ledger of
    unique ids beside it), then a restart: nothing lost, nothing twice."""
    import threading

    def schema(pg):
        pg.pgbench("-i", "-s", "1", "-q")
        pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, amount int NOT NULL)")
    src, dst, onprem, cloud, cluster = start_pair(tmp_path, pg_factory, straitd_factory,
                                                  schema=schema)
    wait_streaming(onprem)
    stop = threading.Event()

    def writer():
        i = 0
        with src.connect() as conn:
            while not stop.is_set() and i < 100000:
                i += 1
                conn.execute("INSERT INTO ledger VALUES (%s, %s)", (i, i % 97))
    t = threading.Thread(target=writer)
    bench = threading.Thread(target=lambda: src.pgbench("-c", "4", "-T", "12"))
    t.start()
    bench.start()
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
            bench.join()
            stop.set()
            t.join()
            wait_equal(src, dst, ("ledger",) + PGBENCH_TABLES, timeout=90)
            assert tpcb_balanced(dst)
        finally:
            d2.stop()
    finally:
        stop.set()
        t.join()
        bench.join()


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


def fake_peer(cluster, target_site, as_site, ca=None, cert=None):
    """A TLS connection to target_site's straitd relay port presenting a
    certificate for as_site (from the cluster CA unless ca/cert say otherwise)."""
    import os
    import socket
    import ssl
    import tlsutil
    ca = ca or cluster.ca
    cert = cert or tlsutil.make_site_cert(ca, os.path.join(cluster.base, "fake"), as_site)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cluster.ca.cert)
    ctx.load_cert_chain(cert.cert, cert.key)
    addr = cluster.host(target_site)[1]["sites"][target_site]["tunnel_address"].split("/")[0]
    raw = socket.create_connection((addr, cluster.cluster_cfg["relay"]["port"]), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=target_site)


def closed_by(sock, timeout=10):
    import ssl
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ssl.SSLError, ConnectionResetError, OSError):
        pass
    return True


def test_straitd_keeps_serving_through_hostile_peers(tmp_path, pg_factory, straitd_factory):
    """Garbage, truncated and oversized frames, a certificate from another CA
    and one naming another site: each is refused with a logged reason, while
    the real stream keeps flowing."""
    import os
    import ssl
    import struct
    import tlsutil
    from test_relay import frame, hello_payload

    src, dst, onprem, cloud, cluster = start_pair(
        tmp_path, pg_factory, straitd_factory,
        schema=lambda pg: pg.sql("CREATE TABLE t (id int PRIMARY KEY)"))
    wait_streaming(onprem)

    # a valid certificate for "cloud", then garbage instead of frames
    s = fake_peer(cluster, "onprem", "cloud")
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed_by(s)
    # a truncated frame, then end of stream
    s = fake_peer(cluster, "onprem", "cloud")
    s.sendall(frame(0x01, hello_payload("acme-dr", "cloud"))[:30])
    s.close()
    # a header claiming a payload far over the cap
    s = fake_peer(cluster, "onprem", "cloud")
    s.sendall(frame(0x02, b"", length=0x7fffffff)[:24])
    assert closed_by(s)
    # a bad CRC
    s = fake_peer(cluster, "onprem", "cloud")
    s.sendall(frame(0x01, hello_payload("acme-dr", "cloud"), bad_crc=True))
    assert closed_by(s)
    # a certificate from another CA
    other = tlsutil.make_ca(os.path.join(cluster.base, "other"), "evil")
    bad = tlsutil.make_site_cert(other, os.path.join(cluster.base, "other"), "cloud")
    try:
        s = fake_peer(cluster, "onprem", "cloud", ca=other, cert=bad)
        s.sendall(frame(0x01, hello_payload("acme-dr", "cloud")))
        closed_by(s)
    except (ssl.SSLError, ConnectionResetError, OSError):
        pass
    # a certificate naming a site that is not a peer
    s = fake_peer(cluster, "onprem", "edge")
    s.sendall(frame(0x01, hello_payload("acme-dr", "edge")))
    assert closed_by(s)

    log = onprem.log_text()
    assert "bad magic" in log
    assert "over the limit" in log or "payload length" in log
    assert "CRC mismatch" in log
    assert "certificate verify failed" in log
    assert "edge" in log
    # the real link and the stream are untouched
    assert onprem.alive() and cloud.alive()
    src.sql("INSERT INTO t SELECT generate_series(1, 500)")
    wait_equal(src, dst, ["t"])
    assert stream_status(onprem, "source")["streaming"]


def test_correctness_through_the_daemons(tmp_path, pg_factory, straitd_factory):
    """The apply rules end to end, through both straitd: every built-in type,
    unchanged TOAST, a table without a key (REPLICA IDENTITY FULL, duplicate
    rows), TRUNCATE ... CASCADE RESTART IDENTITY, a target with its columns in
    another order and an extra column, and a missing column that pauses the
    stream with a clear error until the operator adds it. Of the types, those
    both servers' versions have (a type only the newer has is the case of
    test_versions' type that cannot cross)."""
    from test_apply import TYPES_DDL, types_for

    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    types_columns, types_row, _ = types_for(src.version, dst.version)

    def schema(pg):
        pg.sql(TYPES_DDL)
        pg.sql(f"CREATE TABLE alltypes (id int PRIMARY KEY, {types_columns})")
        pg.sql("CREATE TABLE docs (id int PRIMARY KEY, body text, n int)")
        pg.sql("ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL")
        pg.sql("CREATE TABLE nokey (a int, b text)")
        pg.sql("ALTER TABLE nokey REPLICA IDENTITY FULL")
        pg.sql("CREATE TABLE parent (id serial PRIMARY KEY)")
        pg.sql("CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent)")
    schema(src)
    schema(dst)
    # the target orders one table's columns differently, with an extra column
    dst.sql("DROP TABLE docs")
    dst.sql("CREATE TABLE docs (n int, extra text DEFAULT 'x', body text, id int PRIMARY KEY)")
    # and lacks a column of another
    dst.sql("CREATE TABLE later (id int PRIMARY KEY)")
    src.sql("CREATE TABLE later (id int PRIMARY KEY, note text)")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem)

    for i in (1, 2, 3):
        src.sql(f"INSERT INTO alltypes VALUES {types_row.format(id=i)}")
    src.sql("UPDATE alltypes SET c_text = 'changed', c_jsonb = '{\"z\": 1}' WHERE id = 2")
    src.sql("DELETE FROM alltypes WHERE id = 3")
    big = "".join(chr(0x41 + (i * 7919) % 26) for i in range(200000))
    src.sql("INSERT INTO docs VALUES (1, %s, 0)", (big,))
    src.sql("UPDATE docs SET n = n + 1 WHERE id = 1")          # body unchanged (TOAST)
    src.sql("INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, 'b')")
    src.sql("UPDATE nokey SET b = 'c' WHERE ctid = (SELECT ctid FROM nokey WHERE a = 1 LIMIT 1)")
    src.sql("DELETE FROM nokey WHERE a = 2")
    src.sql("INSERT INTO parent SELECT FROM generate_series(1, 5)")
    src.sql("INSERT INTO child SELECT g, g FROM generate_series(1, 5) g")
    src.sql("TRUNCATE parent, child RESTART IDENTITY CASCADE")
    src.sql("INSERT INTO parent DEFAULT VALUES")
    wait_equal(src, dst, ["alltypes", "nokey", "parent", "child"])
    assert dst.sql("SELECT n, extra, body = %s FROM docs", (big,)) == [(1, "x", True)]

    src.sql("INSERT INTO later VALUES (1, 'needs a column the target lacks')")
    src.sql("INSERT INTO alltypes (id) VALUES (100)")
    wait_until(lambda: "later" in (stream_status(cloud, "sink")["last_error"] or ""), 30,
               what="the stream to pause on the missing column")
    err = stream_status(cloud, "sink")["last_error"]
    assert '"public.later"' in err and '"note"' in err
    assert dst.sql("SELECT count(*) FROM alltypes WHERE id = 100") == [(0,)]  # nothing half
    dst.sql("ALTER TABLE later ADD COLUMN note text")
    wait_equal(src, dst, ["later", "alltypes"], timeout=60)
    assert stream_status(cloud, "sink")["apply_ready"]


def test_source_database_given_as_a_uri(tmp_path, pg_factory, straitd_factory):
    """A postgresql:// URI works as the source's connection string, as libpq
    accepts it: the replication setting is added without rewriting it."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        pg.sql("CREATE TABLE t (id int PRIMARY KEY)")
    sites = harness.loopback_sites([src, dst])
    sites[0]["database"] = f"postgresql://postgres@/postgres?host={src.sockdir}&port={src.port}"
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    cluster = harness.Cluster(tmp_path, sites, [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem)
    src.sql("INSERT INTO t SELECT generate_series(1, 100)")
    wait_equal(src, dst, ["t"])
