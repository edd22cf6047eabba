"""Initial sync end to end: two sites on this host's loopback (tunnel backend
none), a real PostgreSQL at each. The source has data, the target only the
schema (strait does not copy DDL: the test copies it across as an operator
would, schemacopy.py);
straitd copies the tables in the slot's exported snapshot, loads them, and
streams from the slot's consistent point, while pgbench writes meanwhile.

Resume: straitd is killed (-9) at either end in the middle of a big table's
copy; after the restart the tables that were loaded are not copied again
(their records in strait.sync_table keep the LSN of the first snapshot, the
log shows them kept). When the source was killed the rest are copied in a
snapshot of their own, and the stream skips those tables' changes up to it;
when the sink was (or the link lost), the source held the first snapshot and
the rest come from it. Either way the target ends equal to the source.

A fake source peer (TLS client with the source site's certificate) sends
malformed SYNC frames to a real sink: each is refused with a logged reason,
the daemon keeps serving, and a well-formed round from the same fake loads.
"""

import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import harness
from conftest import default_versions
from harness import wait_until
from schemacopy import copy_schema

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def start_pair(tmp_path, pg_factory, straitd_factory, seed, stream_extra=None, start=True,
               names=("onprem", "cloud")):
    src, dst = harness.on_each(pg_factory, names)
    seed(src)
    copy_schema(src, dst)
    stream = {"name": "app", "from": names[0], "to": names[1], "publication": "strait_app",
              "initial_sync": True}
    stream.update(stream_extra or {})
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst], names), [stream])
    source = straitd_factory(cluster.path(names[0]), site=names[0], start=start)
    sink = straitd_factory(cluster.path(names[1]), site=names[1], start=start)
    return src, dst, source, sink, cluster


def stream_status(d, role):
    return next(r for r in d.status()["replication"] if r["role"] == role)


def sync_status(d, role):
    return stream_status(d, role)["initial_sync"]


def wait_equal(src, dst, tables, timeout=120):
    def same():
        return harness.tables_equal(src, dst, tables)
    wait_until(same, timeout, interval=0.5, what="the target to equal the source")


def tpcb_balanced(pg):
    rows = pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                  "(SELECT sum(bbalance) FROM pgbench_branches), "
                  "(SELECT sum(tbalance) FROM pgbench_tellers), "
                  "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)")[0]
    return len(set(rows)) == 1


def sync_tables(pg, stream="app"):
    """{schema.table: snapshot LSN} of the stream's loaded tables recorded on
    the target (and not folded yet)."""
    rows = pg.sql("SELECT schema_name || '.' || table_name, snapshot_lsn::text "
                  "FROM strait.sync_table WHERE stream = %s", (stream,))
    return dict(rows)


def sync_start(pg, stream="app"):
    """The LSN the target recorded streaming to start at, or None."""
    rows = pg.sql("SELECT start_lsn::text FROM strait.sync_stream WHERE stream = %s", (stream,))
    return rows[0][0] if rows else None


def strait_origins(pg):
    """Every replication origin strait holds on the server."""
    return sorted(r[0] for r in pg.sql("SELECT roname FROM pg_replication_origin "
                                       "WHERE roname LIKE 'strait\\_%'"))


def loads(d):
    """[(table, snapshot LSN)] of each load a sink's log shows begun, in order."""
    return re.findall(r"initial sync: loading (\S+) \(snapshot at ([0-9A-F]+/[0-9A-F]+)",
                      d.log_text())


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def pgbench_background(pg, *args):
    return subprocess.Popen(["pgbench", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres",
                             *args, "postgres"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_pgbench_initial_sync_with_writes(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory,
        seed=lambda pg: pg.pgbench("-i", "-s", "10", "-q"))
    size = src.sql("SELECT pg_size_pretty(sum(pg_table_size(c.oid))) FROM pg_class c "
                   "WHERE relname LIKE 'pgbench_%' AND relkind = 'r'")[0][0]
    # writes all through the sync: pgbench runs until the sync is done, then
    # ends as at the end of its -T (SIGALRM), with its report and exit status
    bench = pgbench_background(src, "-c", "4", "-T", "300")
    try:
        wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 300, interval=0.2,
                   what="the initial sync")
        assert bench.poll() is None, "pgbench ended before the initial sync did"
        sink = sync_status(cloud, "sink")
        assert sink["tables_total"] == 4 and sink["tables_done"] == 4
        assert sink["rows"] >= 1000000 + 100 + 10
        assert sink["last_error"] is None
        source = sync_status(onprem, "source")
        assert source["bytes_wire"] < source["bytes"]
        # progress: every table read, nothing left, rates from the round
        assert source["eta_s"] == 0 and source["biggest_left"] == [], source
        assert source["rows_per_s"] > 0 and source["size_to_copy"] > 0, source
        assert sink["rows_per_s"] > 0 and sink["bytes_per_s"] > 0, sink
    finally:
        if bench.poll() is None:
            bench.send_signal(signal.SIGALRM)
        out, err = bench.communicate(timeout=60)
    assert bench.returncode == 0, err
    wait_equal(src, dst, PGBENCH_TABLES)
    assert tpcb_balanced(dst)
    # Streaming started at the slot's consistent point: nothing was skipped
    # (every table came from the exported snapshot) and every load agrees.
    assert len({lsn for _, lsn in loads(cloud)}) == 1, loads(cloud)
    assert sync_start(dst) == loads(cloud)[0][1]
    assert stream_status(cloud, "sink")["initial_sync"]["changes_skipped"] == 0
    # Streaming has passed every table: their records are folded away, and
    # the origins are the apply's and the loaders' pool, whatever the schema.
    wait_until(lambda: sync_tables(dst) == {}, 30, what="the table records to be folded")
    assert set(strait_origins(dst)) <= {"strait_app", "strait_app:load0", "strait_app:load1",
                                        "strait_app:load2"}, strait_origins(dst)
    print(f"\ninitial sync of pgbench scale 10 ({size}, {sink['rows']} rows, "
          f"{sink['bytes'] / 1e6:.0f} MB of COPY text, {sink['bytes_wire'] / 1e6:.1f} MB on the "
          f"link): {sink['elapsed_s']:.1f} s")


BIG_ROWS = 3000000


def seed_big(pg):
    """One big narrow table (its copy takes seconds), a few small ones, and
    a ledger the writer fills: the small ones finish while big is copied."""
    pg.sql("CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL)")
    pg.sql(f"INSERT INTO big SELECT g, 0 FROM generate_series(1, {BIG_ROWS}) g")
    for name in ("small_a", "small_b", "small_c"):
        pg.sql(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
        pg.sql(f"INSERT INTO {name} SELECT g, 'row ' || g FROM generate_series(1, 2000) g")
    pg.sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, big_id bigint, at timestamptz)")
    pg.sql("VACUUM ANALYZE")


class Writer:
    """Writes to every table while the sync runs: inserts, updates that add
    to a value (applied twice they would show), deletes."""

    def __init__(self, pg):
        self.pg = pg
        self.stop = threading.Event()
        self.count = 0
        self.error = None
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        import random
        rnd = random.Random(7)
        try:
            with self.pg.connect() as conn:
                while not self.stop.is_set():
                    i = rnd.randint(1, BIG_ROWS)
                    with conn.transaction():
                        conn.execute("UPDATE big SET v = v + 1 WHERE id = %s", (i,))
                        conn.execute("INSERT INTO big VALUES (%s, 1)", (BIG_ROWS + self.count + 1,))
                        conn.execute("INSERT INTO ledger (big_id, at) VALUES (%s, now())", (i,))
                        conn.execute("UPDATE small_a SET note = note || '+' WHERE id = %s",
                                     (rnd.randint(1, 2000),))
                        conn.execute("DELETE FROM small_b WHERE id = %s", (rnd.randint(1, 2000),))
                        conn.execute("INSERT INTO small_c VALUES (%s, 'new') ON CONFLICT DO NOTHING",
                                     (2000 + self.count + 1,))
                    self.count += 1
                    time.sleep(0.002)
        except Exception as exc:  # reported by finish()
            self.error = exc

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error
        return self.count


def loading(d, table):
    """The sink's load of table (e.g. "public.big") with its bytes so far, or None."""
    for job in sync_status(d, "sink").get("loading", []):
        if job["table"] == table:
            return job
    return None


SMALL = ("public.small_a", "public.small_b", "public.small_c", "public.ledger")


@pytest.mark.parametrize("victim", ["sink", "source", "link"])
def test_resume_after_kill_9_in_the_middle_of_a_big_table(tmp_path, pg_factory, straitd_factory,
                                                          victim):
    """victim "link": both daemons live on, but the source stops answering
    (SIGSTOP) until the sink declares the link dead, then goes on: a lost
    link, as a WAN outage makes one."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, seed_big)
    writer = Writer(src)
    try:
        # The small tables are loaded while big is still on its way.
        def in_the_middle():
            st = sync_status(cloud, "sink")
            job = loading(cloud, "public.big")
            return (st["state"] == "loading" and st["tables_done"] == 4 and job is not None
                    and job["bytes"] > 0)
        wait_until(in_the_middle, 120, interval=0.05, what="the small tables loaded, big loading")
        before = sync_tables(dst)
        assert set(before) == set(SMALL), before
        first_lsn = set(before.values())
        assert len(first_lsn) == 1
        assert dst.sql("SELECT count(*) FROM big")[0][0] == 0   # its load is not committed

        if victim == "link":
            onprem.signal(signal.SIGSTOP)
            try:
                wait_until(lambda: not stream_status(cloud, "sink")["link_up"], 30, interval=0.2,
                           what="the sink to declare the link dead")
                wait_until(lambda: sync_status(cloud, "sink")["state"] != "loading", 30,
                           what="the sink to end the round")
            finally:
                onprem.signal(signal.SIGCONT)
            restarted = onprem       # nothing restarts: the same daemons go on
        else:
            d = onprem if victim == "source" else cloud
            d.kill()
            restarted = harness.Straitd(d.config_path, site=d.site).start()
        try:
            other = onprem if victim == "sink" else cloud
            sink_d = restarted if victim == "sink" else cloud
            wait_until(lambda: sync_status(sink_d, "sink")["state"] == "done", 300, interval=0.2,
                       what="the initial sync after the restart")
            writes = writer.finish()
            assert writes > 0
            wait_equal(src, dst, ["big", "small_a", "small_b", "small_c", "ledger"], timeout=180)
            # (the records are folded once streaming passes them: the log tells)
            done = loads(sink_d)
            # Tables loaded before the kill were not copied again...
            for t in SMALL:
                assert [lsn for table, lsn in done if table == t] == [before[t]], (t, done)
            big_lsn = lsn_int([lsn for table, lsn in done if table == "public.big"][-1])
            first = lsn_int(first_lsn.pop())
            if victim == "source":
                # ...big was, in a snapshot of its own, later than the first one...
                assert big_lsn > first
                # ...and streaming started at the earliest table's snapshot, skipping
                # big's changes that its copy already holds.
                assert lsn_int(sync_start(dst)) < big_lsn
                sink = sync_status(sink_d, "sink")
                assert sink["changes_skipped"] > 0, sink
            else:
                # ...big was, in the first snapshot, which the source held for the sink
                assert big_lsn == first
                assert lsn_int(sync_start(dst)) == first
                assert "going on in the held snapshot" in onprem.log_text()
            assert re.search(r"initial sync round \d+: 5 tables, 1 to copy", sink_d.log_text())
            log = restarted.log_text() + other.log_text()
            assert "AddressSanitizer" not in log and "runtime error" not in log
        finally:
            if restarted is not onprem:
                restarted.stop()
    finally:
        writer.stop.set()
        writer.thread.join(30)


# ---------------------------------------------------------------------------
# A fake source peer speaking SYNC frames to a real sink

FRAME_HELLO, FRAME_HEARTBEAT, FRAME_SYNC, FRAME_RESUME = 0x01, 0x06, 0x03, 0x08
SYNC_LAST = 0x01
PLAN = ("pg_catalog", "strait_sync_plan")


def sync_payload(stream, schema, table, lsn, chunk, flags, data, raw_len=None):
    from test_relay import wire_str
    raw_len = len(data) if raw_len is None else raw_len
    return (wire_str(stream) + wire_str(schema) + wire_str(table) +
            struct.pack(">QIIIBI", lsn, 0, 0, chunk, flags, raw_len) + data)


def plan_text(generation, *lines):
    return (f"strait-sync-plan\t2\t{generation}\n" + "".join(l + "\n" for l in lines)).encode()


class FakeSource:
    """The source site "alpha" as a TLS client of the sink "beta": one thread
    owns the socket, sends HELLO, heartbeats and whatever is queued, and
    collects the frames beta sends."""

    def __init__(self, cluster, sink_addr, port):
        import queue
        from test_relay import frame, hello_payload
        self.frame = frame
        host = os.path.join(cluster.base, "alpha", "tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(os.path.join(host, "ca.crt"))
        ctx.load_cert_chain(os.path.join(host, "site.crt"), os.path.join(host, "site.key"))
        raw = socket.create_connection((sink_addr, port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="beta")
        self.sock.settimeout(0.05)
        self.out = queue.Queue()
        self.frames = []
        self.lock = threading.Lock()
        self.running = True
        self.out.put(frame(FRAME_HELLO, hello_payload("acme-dr", "alpha"), epoch=1))
        self.thread = threading.Thread(target=self.pump, daemon=True)
        self.thread.start()

    def pump(self):
        import queue
        buf = b""
        last_hb = 0.0
        while self.running:
            now = time.monotonic()
            if now - last_hb > 0.3:
                from test_relay import heartbeat_payload
                self.out.put(self.frame(FRAME_HEARTBEAT, heartbeat_payload(), epoch=1))
                last_hb = now
            try:
                while True:
                    self.sock.sendall(self.out.get_nowait())
            except queue.Empty:
                pass
            try:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError:
                break
            while len(buf) >= 24:
                (length,) = struct.unpack(">I", buf[8:12])
                if len(buf) < 24 + length:
                    break
                with self.lock:
                    self.frames.append((buf[5], buf[24:24 + length]))
                buf = buf[24 + length:]

    def send_sync(self, *args, flags_frame=0, stream="app", **kw):
        self.out.put(self.frame(FRAME_SYNC, sync_payload(stream, *args, **kw), flags=flags_frame,
                                epoch=1))

    def resumes(self, stream="app"):
        """The RESUME frames beta sent for stream: [(lsn, generation)]."""
        out = []
        with self.lock:
            for ftype, payload in self.frames:
                if ftype == FRAME_RESUME:
                    # stream, received LSN, committed LSN, queued bytes, generation
                    (n,) = struct.unpack(">H", payload[:2])
                    if payload[2:2 + n].decode() != stream:
                        continue
                    received, _committed, _queued, gen = struct.unpack(
                        ">QQQI", payload[2 + n:2 + n + 28])
                    out.append((received, gen))
        return out

    def syncs(self):
        """The SYNC frames beta sent: [(schema, table, lsn, chunk, flags, data)]."""
        out = []
        with self.lock:
            for ftype, p in self.frames:
                if ftype != FRAME_SYNC:
                    continue
                fields, pos = [], 0
                for _ in range(3):
                    (n,) = struct.unpack(">H", p[pos:pos + 2])
                    fields.append(p[pos + 2:pos + 2 + n].decode())
                    pos += 2 + n
                lsn, _ranges, _range, chunk, flags, _raw = struct.unpack(">QIIIBI",
                                                                         p[pos:pos + 25])
                out.append((fields[1], fields[2], lsn, chunk, flags, p[pos + 25:]))
        return out

    def wait_resume(self, after, stream="app"):
        """The next RESUME for stream beyond the first `after` ones."""
        return wait_until(lambda: len(self.resumes(stream)) > after and
                          self.resumes(stream)[after], 30,
                          what=f"a RESUME for stream {stream} from the sink")

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


# The malformed rounds the fake sends: (stream, table, send(fake, stream,
# table, generation), the reason beta logs). A failed round waits
# STREAMSYNC_RETRY_MS before beta asks again, so the rounds go on streams of
# their own, side by side (eight); a stream's rounds follow each other in
# this order. The gap,
# whose load must roll back, goes on "app" and table t, which the well-formed
# round then loads.
SNAP = 0x1000000


def _plan(fake, stream, table, g):
    fake.send_sync(*PLAN, SNAP, 0, SYNC_LAST, plan_text(g, f"c\tpublic\t{table}\tid"),
                   stream=stream)


MALFORMED_ROUNDS = [
    ("app", "t",
     lambda f, st, tb, g: f.send_sync(*PLAN, SNAP, 0, SYNC_LAST, b"not a plan\n", stream=st),
     r'refused SYNC plan from "alpha": not a version 2 plan'),
    ("app2", "t2",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", "u", SNAP, 0, SYNC_LAST, b"1\n", stream=st)),
     r'table "public"."u" is not copied in this round'),
    ("app3", "t3",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", tb, SNAP, 1, 0, b"1\n", stream=st)),
     r'for table public.{table}: chunk out of order'),
    # a gap once the load is under way: its COPY is ended with an error
    ("app", "t",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", tb, SNAP, 0, 0, b"7\n8\n", stream=st),
                           time.sleep(0.5),
                           f.send_sync("public", tb, SNAP, 2, 0, b"9\n", stream=st)),
     r'for table public.{table}: chunk out of order'),
    ("app5", "t5",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", tb, SNAP + 8, 0, 0, b"1\n", stream=st)),
     r'for table public.{table}: snapshot LSN differs'),
    ("app6", "t6",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", tb, SNAP, 0, 0, b"1\n", raw_len=2 * 1024 * 1024,
                                       stream=st)),
     r'for table public.{table}: chunk of 2097152 bytes is over the limit'),
    ("app7", "t7",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", tb, SNAP, 0, 0, b"1\n", flags_frame=0x01,
                                       stream=st)),
     r'for table public.{table}: compression flag differs'),
    ("app8", "t8",
     lambda f, st, tb, g: (_plan(f, st, tb, g),
                           f.send_sync("public", tb, SNAP, 0, 0, b"1\n", raw_len=5, stream=st)),
     r'for table public.{table}: data inflates to 2 bytes, its header says 5'),
    ("app1", "t1",
     lambda f, st, tb, g: f.send_sync(*PLAN, SNAP, 0, SYNC_LAST,
                                      plan_text(g, f"k\tpublic\t{tb}"), stream=st),
     r'it keeps table public.{table}, which the target has not loaded'),
]


def test_fake_source_malformed_sync_frames(tmp_path, pg_factory, straitd_factory):
    # eight streams into one server: each takes its apply origin and up to
    # three loader origins, and the README tells operators to raise
    # max_replication_slots (10 by default) to four per stream for that many,
    # or on 18 max_active_replication_origins, which counts origins there
    version = default_versions()[0] or 15
    settings = {"max_replication_slots": 32}
    if version >= 18:
        settings["max_active_replication_origins"] = 32
    dst = pg_factory("beta", settings=settings, version=version)
    rounds = {}                 # stream -> its rounds, in order
    for r in MALFORMED_ROUNDS:
        rounds.setdefault(r[0], []).append(r)
    tables = sorted({table for _, table, _, _ in MALFORMED_ROUNDS})
    for table in tables:
        dst.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, note text, extra text DEFAULT 'x')")
        dst.sql(f"INSERT INTO {table} VALUES (99, 'left over')")
    streams = [{"name": name, "from": "alpha", "to": "beta", "publication": "strait_app",
                "initial_sync": True, "compression": {"codec": "none"}} for name in rounds]
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([None, dst], ("alpha", "beta")),
                              streams)
    beta = straitd_factory(cluster.path("beta"), site="beta")
    port = cluster.cluster_cfg["relay"]["port"]
    fake = FakeSource(cluster, "127.0.0.2", port)
    try:
        gens = {}
        for name in rounds:
            lsn, gens[name] = fake.wait_resume(0, stream=name)
            assert lsn == 0 and gens[name] == 1     # nothing loaded: it asks for a round

        def refused(reason, since, stream=None):
            if stream is not None:      # the stream's own line
                reason = f'stream "{stream}": [^\n]*' + reason
            wait_until(lambda: re.search(reason, beta.log_text()[since:]), 15,
                       what=f"the log to say {reason!r}")
            assert beta.alive()

        # Frames that do not even decode, or name a stream beta has no sync of.
        at = len(beta.log_text())
        fake.out.put(fake.frame(FRAME_SYNC, b"\x00\x03app\x00", epoch=1))
        refused(r'refused malformed SYNC frame from "alpha": ', at)
        fake.send_sync("public", "t", 0x100, 0, 0x80, b"")
        refused(r'refused malformed SYNC frame from "alpha": ', at)
        fake.out.put(fake.frame(FRAME_SYNC, sync_payload("other", "public", "t", 1, 0, 0, b""),
                                epoch=1))
        refused(r'refused SYNC frame from "alpha" for stream "other"', at)

        # Each malformed round is refused with its reason; beta asks again.
        for n in range(max(len(r) for r in rounds.values())):
            wave = [r[n] for r in rounds.values() if len(r) > n]
            at = len(beta.log_text())
            for name, table, send, _ in wave:
                send(fake, name, table, gens[name])
            for name, table, _, reason in wave:
                refused(reason.format(table=table), at, stream=name)
                lsn, gens[name] = fake.wait_resume(n + 1, stream=name)
                assert lsn == 0
        assert beta.alive()
        # the load the gap interrupted was rolled back
        assert dst.sql("SELECT id FROM t") == [(99,)]
        assert ('stream "app": initial sync: dropping the load of public.t (rolled back)'
                in beta.log_text())
        gen, resumes = gens["app"], len(rounds["app"]) + 1
        snap = SNAP

        # A plan of an older round is ignored; a well-formed round loads.
        fake.send_sync(*PLAN, snap, 0, SYNC_LAST, plan_text(gen - 1, "c\tpublic\tt\tid"))
        fake.send_sync(*PLAN, snap, 0, 0, plan_text(gen, "c\tpublic\tt\tid\tnote")[:30])
        fake.send_sync(*PLAN, snap, 1, SYNC_LAST, plan_text(gen, "c\tpublic\tt\tid\tnote")[30:])
        fake.send_sync("public", "t", snap, 0, 0, b"1\tone\n2\tt")
        fake.send_sync("public", "t", snap, 1, 0, b"wo\n")
        fake.send_sync("public", "t", snap, 2, SYNC_LAST, b"")
        lsn, gen2 = fake.wait_resume(resumes)
        assert (lsn, gen2) == (snap, gen + 1)    # streaming from the round's snapshot
        assert dst.sql("SELECT id, note, extra FROM t ORDER BY id") == [(1, "one", "x"),
                                                                       (2, "two", "x")]
        assert sync_tables(dst) == {"public.t": "0/1000000"}
        assert sync_start(dst) == "0/1000000"
        st = next(r for r in beta.status()["replication"]
                  if r["role"] == "sink" and r["stream"] == "app")["initial_sync"]
        assert st["state"] == "done" and st["tables_done"] == 1 and st["rows"] == 2
        # it acknowledged the chunks and said it has the table
        sent = fake.syncs()
        assert ("public", "t", snap, 1, 0, b"") in sent
        assert ("public", "t", snap, 0, SYNC_LAST, b"") in sent
        assert "target table public.t has rows; truncating it" in beta.log_text()
    finally:
        fake.close()
    log = beta.log_text()
    assert "AddressSanitizer" not in log and "runtime error" not in log
