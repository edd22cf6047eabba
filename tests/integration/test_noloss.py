"""Nothing committed is ever lost, nothing arrives twice: two sites on this
host's loopback, a real PostgreSQL at each, straitd at each, and the faults
that come between a commit on the primary and its commit on the target.

- A blocked apply: the sink holds a backlog it cannot apply (a lock on the
  target), the source's straitd restarts, then the sink's is killed before
  it applied anything; everything still arrives once the lock goes.
- One transaction of many batches sent at a limited rate while both ends
  restart in the middle of it: it arrives once and whole, the sink does not
  loop over it and its memory stays bounded.
- Every fault point (common/fault.h, STRAIT_FAULTS) crashed in turn under a
  ledger load, for both durability modes; an fsync that fails stops the
  source's stream without losing anything; the initial sync's chunks.
- A sink that asks for a position older than the source's spool holds gets
  a clear "gap" error instead of a silent jump over what is missing.
"""

import json
import os
import random
import re
import threading
import time

import psycopg
import pytest

import harness
from harness import table_dump, wait_until

MiB = 1024 * 1024
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# ----------------------------------------------------------------- helpers


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def start_pair(tmp_path, pg_factory, straitd_factory, schema, stream_extra=None, env=None,
               sink_env=None):
    """Source and target servers with schema(pg) run on both, and a straitd
    per site (the sink's with sink_env when given)."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    schema(src)
    schema(dst)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    stream.update(stream_extra or {})
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem", env=dict(env or {}))
    cloud = straitd_factory(cluster.path("cloud"), site="cloud",
                            env=dict(sink_env if sink_env is not None else env or {}))
    return src, dst, onprem, cloud, cluster


def stream_status(d, role):
    return next(r for r in d.status()["replication"] if r["role"] == role)


def source_status(d):
    return stream_status(d, "source")


def sink_status(d):
    return stream_status(d, "sink")


def wait_streaming(onprem, timeout=90):
    wait_until(lambda: source_status(onprem)["link_up"] and source_status(onprem)["streaming"],
               timeout, interval=0.1, what="the source to stream over the link")


def wait_sink_ready(cloud, timeout=90):
    wait_until(lambda: sink_status(cloud)["link_up"] and sink_status(cloud)["apply_ready"],
               timeout, interval=0.1, what="the sink's apply to be ready")


def stream_state(d):
    """The stream's state as `straitctl lag` reports it (streaming, error, ...)."""
    return json.loads(d.ctl("lag", "--json").stdout)["lag"][0]["state"]


def restart(d, how="term", env=None):
    """Stops d (SIGTERM, or kill -9 with how="kill") and starts it again with env."""
    if how == "kill":
        d.kill()
    else:
        d.stop()
    d.env = dict(env or {})
    d.start(timeout=30)


def vm_hwm(pid):
    """Peak resident set size of a live process (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise harness.HarnessError(f"no VmHWM for pid {pid}")


def log_since(d, mark):
    return d.log_text()[mark:]


def stays(predicate, seconds, interval=0.1):
    """predicate() holds at every poll for seconds (the inverse of wait_until)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return True


def assert_no_sanitizer_reports(*daemons):
    for d in daemons:
        text = d.log_text()
        for pat in SANITIZER_PATTERNS:
            i = text.find(pat)
            assert i < 0, f"sanitizer report in {d.logfile}:\n{text[max(0, i - 200):i + 3000]}"


def tail(d, n=40):
    return "\n".join(d.log_text().splitlines()[-n:])


# ------------------------------------------------------------ blocked apply

BACKLOG = 300


def one_table(pg):
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL)")


@pytest.mark.parametrize("durability", ["spool", "remote"])
def test_blocked_apply_source_restart_sink_kill(tmp_path, pg_factory, straitd_factory,
                                                durability):
    """300 one-row transactions reach the sink while a lock on the target
    blocks its apply; the source's straitd restarts (kill -9 with durability
    spool, SIGTERM with remote), then the sink's is killed with the backlog
    still unapplied; the lock is released and the sink starts again. Every
    row arrives, once."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, one_table,
                                            {"durability": durability})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    locker = psycopg.connect(dst.dsn(), autocommit=False)
    try:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with src.connect() as conn:
            for i in range(1, BACKLOG):
                conn.execute("INSERT INTO t VALUES (%s, %s)", (i, f"row {i}"))
            with conn.transaction():
                conn.execute("INSERT INTO t VALUES (%s, %s)", (BACKLOG, f"row {BACKLOG}"))
                # the last commit's record goes after this position
                before_last = lsn_int(conn.execute(
                    "SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
        wait_until(lambda: lsn_int(sink_status(cloud)["received_lsn"]) > before_last, 60,
                   interval=0.1, what="the whole backlog to reach the sink")
        applied = lsn_int(sink_status(cloud)["apply"]["applied_lsn"])
        assert applied < before_last, "the lock did not hold the apply back"
        assert locker.execute("SELECT count(*) FROM t").fetchone()[0] == 0

        restart(onprem, "kill" if durability == "spool" else "term")
        wait_streaming(onprem)          # the sink resumed: its HELLO came and was served
        cloud.kill()
    finally:
        locker.rollback()
        locker.close()
    cloud.env = {}
    cloud.start(timeout=30)

    def count():
        return dst.sql("SELECT count(*) FROM t")[0][0]
    try:
        wait_until(lambda: count() == BACKLOG, 30, interval=0.25,
                   what=f"all {BACKLOG} rows at the target")
    except TimeoutError:
        have = {r[0] for r in dst.sql("SELECT id FROM t")}
        missing = sorted(set(range(1, BACKLOG + 1)) - have)
        pytest.fail(f"{len(have)} of {BACKLOG} rows arrived; missing {len(missing)}: "
                    f"{missing[:5]}..{missing[-5:]}\nsink status: {sink_status(cloud)}\n"
                    f"source status: {source_status(onprem)}\n"
                    f"sink log:\n{tail(cloud)}\nsource log:\n{tail(onprem)}")
    assert dst.sql("SELECT count(DISTINCT id), min(id), max(id) FROM t")[0] == (BACKLOG, 1, BACKLOG)
    assert table_dump(dst, "t") == table_dump(src, "t")
    wait_sink_ready(cloud)
    sink = sink_status(cloud)
    assert sink["last_error"] is None, sink
    assert sink["apply"]["last_error"] is None, sink
    assert_no_sanitizer_reports(onprem, cloud)


# ---------------------------------------------- interrupted large transaction

LARGE_ROWS = 150000          # about 17 MB of pgoutput changes, 66 batches
# The case is 600,000 rows at 2 MiB/s (make chaos); a quarter of the
# rows at half the rate keeps about the same time per restart (7 s a pass).
LARGE_RATE = "1MiB/s"
# The sink asks to resume once per reconnect of its apply or of the link
# (each source restart, its own restart, each rollback of a partial copy): a
# few each here. A sink that loops over the same transaction asks hundreds
# of times.
MAX_RESUMES = 10


def large_schema(pg):
    pg.sql("CREATE TABLE big (id bigint PRIMARY KEY, a float8 NOT NULL, b text NOT NULL)")


def table_digest(pg, table="big"):
    return pg.sql(f"SELECT count(*), coalesce(sum(id), 0), "
                  f"md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM {table} t")[0]


def test_interrupted_large_transaction(tmp_path, pg_factory, straitd_factory):
    """One INSERT of 150,000 rows of random values (about 17 MB of changes,
    dozens of batches) sent at 1 MiB/s; the source's straitd is killed (-9)
    and started again twice during the transfer, then the sink's once. The
    transaction arrives once and whole, the sink asks to resume only a
    handful of times (no loop over interrupted copies), and its memory stays
    bounded."""
    # The sanitizer build keeps up to 256 MiB of freed memory in quarantine,
    # which would count in the sink's resident size whatever it holds live:
    # a small quarantine makes the peak a measure of what the sink holds.
    sink_env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8"}
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory, large_schema,
        {"durability": "spool", "schedule": [{"rate": LARGE_RATE}]}, sink_env=sink_env)
    wait_streaming(onprem)
    wait_sink_ready(cloud)

    # Counts seen at the target while the transfer goes on: all or nothing.
    seen = set()
    stop_watch = threading.Event()

    def watch():
        while not stop_watch.is_set():
            try:
                seen.add(dst.sql("SELECT count(*) FROM big")[0][0])
            except psycopg.Error:
                pass
            stop_watch.wait(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with src.connect() as conn:
            with conn.transaction():
                conn.execute(f"INSERT INTO big SELECT g, random(), md5(random()::text) || "
                             f"md5(random()::text) FROM generate_series(1, {LARGE_ROWS}) g")
                before_commit = lsn_int(conn.execute(
                    "SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
        # pgoutput's Insert: 'I', relation id, 'N', column count, and per
        # column 't', length and text: 23 bytes a row besides the texts
        raw = src.sql("SELECT sum(23 + octet_length(id::text) + octet_length(a::text) + "
                      "octet_length(b)) FROM big")[0][0]
        sent_at = []

        def resumes():
            log = cloud.log_text()
            return (len(re.findall(r"to resume at", log)),
                    len(re.findall(r"was interrupted by the BEGIN of", log)))

        def not_looping():
            n, k = resumes()
            if n > MAX_RESUMES:
                pytest.fail(f"the sink loops over the transaction: {n} resumes, {k} interrupted "
                            f"copies so far\n{tail(cloud)}")
            return True

        def sent(at_least):
            """at_least bytes of the transaction went out in the source's
            current pass over it (from its Begin: the spool's read cursor goes
            back there on every resume), and not all of it, or a restart would
            interrupt nothing."""
            not_looping()
            sp = source_status(onprem)["spool"]      # it holds this transaction only
            done = sp["bytes"] - sp["unsent_bytes"]
            if lsn_int(sp["end_lsn"]) > before_commit and sp["unsent_bytes"] == 0:
                pytest.fail(f"the whole transaction went out before the restart ({done} bytes)")
            if done >= at_least:
                sent_at.append(f"{done / MiB:.1f}")
                return True
            return False
        for _ in range(2):
            wait_until(lambda: sent(raw // 5), 60, interval=0.05,
                       what="a fifth of the transaction sent")
            restart(onprem, "kill")
            wait_streaming(onprem)
        wait_until(lambda: sent(raw // 5), 60, interval=0.05, what="a fifth of the transaction sent")
        hwm_first_sink = vm_hwm(cloud.pid)
        cloud.kill()
        cloud.start(timeout=30)
        want = table_digest(src)
        try:
            wait_until(lambda: not_looping() and table_digest(dst) == want, 180, interval=0.5,
                       what="the transaction at the target")
        except TimeoutError:
            pytest.fail(f"the transaction did not arrive: target {table_digest(dst)[:2]}, source "
                        f"{want[:2]}\nsink status: {sink_status(cloud)}\nsink log:\n{tail(cloud)}")
        hwm_last_sink = vm_hwm(cloud.pid)
    finally:
        stop_watch.set()
        watcher.join(10)
    assert seen <= {0, LARGE_ROWS}, f"the target showed part of the transaction: {sorted(seen)}"
    n_resumes, interrupted = resumes()
    print(f"\nlarge transaction: {raw / MiB:.1f} MiB raw, restarts after {', '.join(sent_at)} MiB "
          f"of a pass; sink peak RSS {hwm_first_sink / MiB:.0f} MiB before its restart, "
          f"{hwm_last_sink / MiB:.0f} MiB after; {n_resumes} resumes, {interrupted} interrupted "
          f"copies")
    assert n_resumes <= MAX_RESUMES, f"{n_resumes} resumes ({interrupted} interrupted copies)"
    assert interrupted <= 6, f"{interrupted} interrupted copies in the sink's log"
    # Memory: the sink holds the transaction while it applies it (the window
    # never cuts one): its batches and the statements in flight. With the
    # small quarantine an uninterrupted pass peaks at about 62 MiB here (27
    # MiB at rest, plus about twice the 16 MiB raw). 3x the raw size plus 64
    # MiB leaves room for a second copy on its way; a sink that loops over
    # interrupted copies grows by some 2 MiB a second without end.
    bound = 3 * raw + 64 * MiB
    assert hwm_first_sink < bound and hwm_last_sink < bound, \
        f"sink peak RSS {hwm_first_sink / MiB:.0f} / {hwm_last_sink / MiB:.0f} MiB, bound {bound / MiB:.0f}"
    sink = sink_status(cloud)
    assert sink["last_error"] is None and sink["apply"]["last_error"] is None, sink
    assert table_dump(dst, "big") == table_dump(src, "big")
    assert_no_sanitizer_reports(onprem, cloud)


# ---------------------------------------------------------- fault point walk

def ledger_schema(pg):
    pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, n int NOT NULL, pad text)")


class LedgerLoad:
    """Writes unique ids to ledger: one-row and few-row transactions without
    pause, and every big_every seconds one transaction of big_rows rows with
    wide values (several 256 KiB batches). committed: ids whose COMMIT
    returned; unknown: ids whose COMMIT's answer never came. pause() holds
    the writers between transactions until resume()."""

    def __init__(self, pg, big_rows=3000, big_every=1.5, pad_bytes=300, seed=1):
        self.pg = pg
        self.big_rows = big_rows
        self.big_every = big_every
        self.pad_bytes = pad_bytes
        self.rng = random.Random(seed)
        self.next_id = 1
        self.committed = set()
        self.unknown = set()
        self.big_txns = 0
        self.lock = threading.Lock()
        self.gate = threading.Lock()      # held by each transaction, and by pause()
        self.stop_event = threading.Event()
        self.errors = []
        self.threads = []

    def take(self, n):
        with self.lock:
            first = self.next_id
            self.next_id += n
        return list(range(first, first + n))

    def _commit(self, conn, ids, work):
        try:
            with conn.transaction():
                work(conn)
        except psycopg.OperationalError:
            with self.lock:
                self.unknown.update(ids)
            raise
        with self.lock:
            self.committed.update(ids)

    def _small(self):
        rng = random.Random(self.rng.random())
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            while not self.stop_event.is_set():
                ids = self.take(1 if rng.random() < 0.8 else rng.randint(2, 5))
                with self.gate:
                    self._commit(conn, ids, lambda c: c.execute(
                        "INSERT INTO ledger (id, n) SELECT g, mod(g, 97) "
                        "FROM unnest(%s::bigint[]) g", (ids,)))
                time.sleep(0.002)

    def big(self, conn):
        """One transaction of big_rows rows with wide values, on conn."""
        pieces = max(1, self.pad_bytes // 32)
        ids = self.take(self.big_rows)
        self._commit(conn, ids, lambda c: c.execute(
            "INSERT INTO ledger (id, n, pad) SELECT g, mod(g, 97), (SELECT string_agg("
            "md5(random()::text || x::text || g::text), '') FROM generate_series(1, %s) x) "
            "FROM generate_series(%s::bigint, %s::bigint) g", (pieces, ids[0], ids[-1])))
        self.big_txns += 1

    def big_now(self):
        """One big transaction from the caller's thread (while paused)."""
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            self.big(conn)

    def _big(self):
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            while not self.stop_event.wait(self.big_every):
                with self.gate:
                    self.big(conn)

    def _run(self, fn):
        try:
            fn()
        except Exception as e:          # surfaced by stop()
            self.errors.append(e)

    def start(self):
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True)
                        for fn in (self._small, self._big)]
        for t in self.threads:
            t.start()
        return self

    def pause(self):
        self.gate.acquire()

    def resume(self):
        self.gate.release()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
        self.check()

    def check(self):
        """Raises what stopped a writer, if one stopped."""
        if self.errors:
            raise self.errors[0]

    def resolve_unknown(self):
        if self.unknown:
            rows = self.pg.sql("SELECT id FROM ledger WHERE id = ANY(%s)", (sorted(self.unknown),))
            self.committed |= {r[0] for r in rows}
            self.unknown.clear()


def check_ledger(src, dst, load, timeout=120, daemons=()):
    """The target converges to the source, and both hold every committed id once."""
    load.resolve_unknown()

    fingerprint = ledger_fingerprint
    try:
        wait_until(lambda: fingerprint(src) == fingerprint(dst), timeout, interval=0.5,
                   what="the target's ledger to equal the source's")
    except TimeoutError:
        src_ids = {r[0] for r in src.sql("SELECT id FROM ledger")}
        dst_ids = {r[0] for r in dst.sql("SELECT id FROM ledger")}
        lost = sorted(src_ids - dst_ids)
        detail = "\n".join(f"{d.site} log:\n{tail(d)}" for d in daemons)
        pytest.fail(f"ledger differs: source {fingerprint(src)}, target {fingerprint(dst)}; "
                    f"{len(lost)} ids lost at the target (e.g. {lost[:5]}), "
                    f"{len(dst_ids - src_ids)} extra\n{detail}")
    src_ids = {r[0] for r in src.sql("SELECT id FROM ledger")}
    assert load.committed - src_ids == set(), "committed ids missing on the source itself"
    assert src_ids - load.committed == set(), "ids on the source that no writer committed"
    assert table_dump(dst, "ledger") == table_dump(src, "ledger")
    return len(src_ids)


SOURCE_POINTS = ("source.ack_received", "source.spool_append", "source.spool_fsync",
                 "source.slot_confirm")
SINK_POINTS = ("sink.batch_received", "sink.before_apply", "sink.target_committed",
               "sink.ack_sent")


def mid_transaction_points(durability):
    """Points a transaction of several batches reaches more than once."""
    return [p for p in ("source.spool_append", "sink.batch_received", "source.spool_fsync")
            if durability == "spool" or p != "source.spool_fsync"]


def walk_points(durability):
    """The points a live stream reaches, source and sink in turn. With
    durability remote the spool is only a buffer and is never fsynced."""
    src = [p for p in SOURCE_POINTS if durability == "spool" or p != "source.spool_fsync"]
    out = []
    for i in range(max(len(src), len(SINK_POINTS))):
        out += [p for p in (src[i:i + 1] + list(SINK_POINTS[i:i + 1]))]
    return out


def start_with_faults(d, faults):
    """Restarts d with STRAIT_FAULTS=faults; returns the log offset where the
    new run begins. It may crash before its control socket answers."""
    d.stop()
    mark = len(d.log_text())
    d.env = {"STRAIT_FAULTS": faults}
    d.start(wait=False)
    return mark


def wait_fired(d, mark, point, action="crash", timeout=30):
    what = f"fault point {point}: {action}"
    try:
        wait_until(lambda: what in log_since(d, mark), timeout, interval=0.05,
                   what=f"\"{what}\" in {d.site}'s log")
    except TimeoutError:
        pytest.fail(f"{point}={action} never fired in {d.site}'s straitd within {timeout}s:\n"
                    f"{log_since(d, mark)[-3000:]}")
    if action != "crash":
        return
    try:
        d.wait_exit(timeout=15)
    except Exception:
        pytest.fail(f"{point}: straitd@{d.site} still runs after its crash fault fired")
    assert d.proc.returncode == -9, f"{point}: exit status {d.proc.returncode}"


def start_clean(d, onprem, cloud):
    """Starts d again without faults; returns once the stream runs again."""
    d.env = {}
    d.start(timeout=30)
    wait_streaming(onprem)
    wait_sink_ready(cloud)


def start_armed(d, faults, point, onprem, cloud, attempts=3):
    """Starts d with faults and waits until the stream runs again, so that
    what comes next passes the point. The point may also be passed by what
    a restart resends (a batch the sink had not committed, a confirmation
    the slot had not taken): then the fault fires before the stream runs,
    and d is started again with it. Returns the log mark of the armed run."""
    for _ in range(attempts):
        mark = start_with_faults(d, faults)

        def running_or_fired():
            if f"fault point {point}" in log_since(d, mark):
                return "fired"
            if not d.alive():
                return "exited"
            try:
                src, snk = source_status(onprem), sink_status(cloud)
            except Exception:
                return None
            up = src["link_up"] and src["streaming"] and snk["link_up"] and snk["apply_ready"]
            return "running" if up else None
        try:
            what = wait_until(running_or_fired, 90, interval=0.1,
                              what="the stream to run with the fault armed")
        except TimeoutError:
            pytest.fail(f"the stream did not run again with {faults} armed:\n"
                        f"onprem: {tail(onprem)}\ncloud: {tail(cloud)}")
        if what == "running":
            return mark
        if what == "exited":
            pytest.fail(f"straitd@{d.site} exited with {faults} armed before it fired:\n{tail(d)}")
        d.wait_exit(timeout=15)
    pytest.fail(f"{point} fired before the stream ran, {attempts} times in a row")


def ledger_fingerprint(pg):
    return pg.sql("SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM ledger")[0]


@pytest.mark.parametrize("durability", ["spool", "remote"])
def test_fault_point_walk(tmp_path, pg_factory, straitd_factory, durability):
    """Under a ledger load (one-row and few-row transactions, and a
    multi-batch one every 1.5 s), each fault point of a live stream crashes
    its straitd in turn (crash @N, a few passes after the start); the daemon
    is started again without faults and the walk goes on. Then the points a
    multi-batch transaction passes more than once crash inside one. With
    durability spool, an fsync of the spool that fails stops the source's
    stream (its status says why) until straitd is restarted. At the end the
    target holds every committed id exactly once, as the source does."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, ledger_schema,
                                            {"durability": durability})
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    rng = random.Random(f"walk:{durability}")
    load = LedgerLoad(src, seed=rng.random()).start()
    fired = []
    try:
        for point in walk_points(durability):
            load.check()
            d = cloud if point.startswith("sink.") else onprem
            n = rng.randint(3, 8)
            t0 = time.monotonic()
            wait_fired(d, start_with_faults(d, f"{point}=crash@{n}"), point)
            start_clean(d, onprem, cloud)
            fired.append(f"{point}@{n} {time.monotonic() - t0:.1f}s")

        # The points a transaction of several batches passes more than once,
        # each crashed inside one: the writers pause, the stream goes quiet,
        # the daemon starts with the fault at the point's 2nd pass, and one
        # multi-batch transaction is written.
        for point in mid_transaction_points(durability):
            load.check()
            d = cloud if point.startswith("sink.") else onprem
            t0 = time.monotonic()
            load.pause()
            try:
                wait_until(lambda: ledger_fingerprint(src) == ledger_fingerprint(dst), 60,
                           interval=0.2, what="the stream to go quiet")
                mark = start_armed(d, f"{point}=crash@2", point, onprem, cloud)
                load.big_now()
                wait_fired(d, mark, point)
                start_clean(d, onprem, cloud)
            finally:
                load.resume()
            fired.append(f"{point}@2 in a multi-batch transaction {time.monotonic() - t0:.1f}s")

        if durability == "spool":
            wait_fired(onprem, start_with_faults(onprem, "source.spool_fsync=fail@3"),
                       "source.spool_fsync", "fail")

            def stopped_on_fsync():
                err = source_status(onprem)["last_error"] or ""
                return "fsync" in err.lower() and stream_state(onprem) == "error"
            try:
                wait_until(stopped_on_fsync, 15, interval=0.1,
                           what="the source's stream to stop on the failed fsync")
            except TimeoutError:
                pytest.fail(f"the stream did not stop on the failed fsync: state "
                            f"{stream_state(onprem)}, status {source_status(onprem)}\n{tail(onprem)}")
            assert onprem.alive(), "straitd exited on a failed fsync instead of stopping the stream"
            # stopped, not flapping: it stays in error until straitd restarts
            assert stays(stopped_on_fsync, 2.0), source_status(onprem)
            fired.append("source.spool_fsync=fail")
            restart(onprem, "term")
            wait_streaming(onprem)
    finally:
        load.stop()
    rows = check_ledger(src, dst, load, daemons=(onprem, cloud))
    print(f"\n{durability}: {len(fired)} faults ({', '.join(fired)}); {rows} ledger rows, "
          f"{load.big_txns} multi-batch transactions")
    for d in (onprem, cloud):
        assert d.alive()
    sink = sink_status(cloud)
    assert sink["last_error"] is None, sink
    assert_no_sanitizer_reports(onprem, cloud)


SYNC_ROWS = 40000             # about 4 MB of COPY text: 16 chunks of 256 KiB


def sync_schema(pg):
    ledger_schema(pg)
    pg.sql("CREATE TABLE seeded (id int PRIMARY KEY, body text NOT NULL)")
    pg.sql(f"INSERT INTO seeded SELECT g, md5(g::text) || md5((g * 7)::text) || "
           f"md5((g * 13)::text) FROM generate_series(1, {SYNC_ROWS}) g")


def test_fault_point_walk_initial_sync(tmp_path, pg_factory, straitd_factory):
    """The initial sync's chunk points: the source's straitd crashes at its
    3rd chunk read, the sink's at its 6th chunk received (in the next round),
    each is started again without faults, and the copy and the ledger written
    meanwhile arrive exactly once."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    sync_schema(src)
    ledger_schema(dst)
    dst.sql("CREATE TABLE seeded (id int PRIMARY KEY, body text NOT NULL)")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem",
                             env={"STRAIT_FAULTS": "source.sync_chunk=crash@3"})
    cloud = straitd_factory(cluster.path("cloud"), site="cloud",
                            env={"STRAIT_FAULTS": "sink.sync_chunk=crash@6"})
    load = LedgerLoad(src, big_rows=1000, big_every=2.0, seed=7).start()
    try:
        for d, point in ((onprem, "source.sync_chunk"), (cloud, "sink.sync_chunk")):
            try:
                wait_until(lambda: f"fault point {point}: crash" in d.log_text(), 60, interval=0.05,
                           what=f"{point} to fire")
            except TimeoutError:
                pytest.fail(f"{point} never fired:\n{tail(d)}")
            d.wait_exit(timeout=15)
            assert d.proc.returncode == -9, f"{point}: exit status {d.proc.returncode}"
            d.env = {}
            d.start(timeout=30)

        def synced():
            st = sink_status(cloud)
            return st["initial_sync"]["state"] == "done"
        wait_until(synced, 120, interval=0.2, what="the initial sync to finish")
    finally:
        load.stop()
    check_ledger(src, dst, load, daemons=(onprem, cloud))
    assert table_dump(dst, "seeded") == table_dump(src, "seeded")
    assert_no_sanitizer_reports(onprem, cloud)


# ------------------------------------------------------- resume below spool

def test_resume_below_spool_is_a_gap(tmp_path, pg_factory, straitd_factory):
    """With durability spool the slot moves on as soon as the spool has a
    batch, and the spool lets it go once the sink applied it. A sink that then
    asks for an older position (its origin moved back) asks for what exists
    nowhere any more: the source refuses with a "gap" error naming both
    positions, and nothing later is applied at the target."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, one_table,
                                            {"durability": "spool"})
    wait_streaming(onprem)
    wait_sink_ready(cloud)

    def origin():
        return dst.sql("SELECT pg_replication_origin_progress('strait_app', true)::text")[0][0]

    def applied(n):
        wait_until(lambda: dst.sql("SELECT count(*) FROM t")[0][0] == n, 30, interval=0.1,
                   what=f"{n} rows at the target")
    for i in range(1, 11):
        src.sql("INSERT INTO t VALUES (%s, 'early')", (i,))
    applied(10)
    old = origin()
    for i in range(11, 31):
        src.sql("INSERT INTO t VALUES (%s, 'released')", (i,))
    applied(30)
    assert lsn_int(origin()) > lsn_int(old)
    # applied and acknowledged: the spool has let everything go, the slot is past it
    wait_until(lambda: source_status(onprem)["spool"]["records"] == 0 and
               lsn_int(source_status(onprem)["acked_lsn"]) >= lsn_int(origin()), 30, interval=0.1,
               what="the spool to empty")
    cloud.stop()
    # the origin is free once the apply's session is gone
    def move_back():
        dst.sql("SELECT pg_replication_origin_advance('strait_app', %s)", (old,))
        return True
    wait_until(move_back, 30, interval=0.2, what="the origin to move back")
    assert origin() == old
    for i in range(1001, 1006):
        src.sql("INSERT INTO t VALUES (%s, 'after the gap')", (i,))
    mark = len(onprem.log_text())
    cloud.env = {}
    cloud.start(timeout=30)

    def later_rows():
        return dst.sql("SELECT count(*) FROM t WHERE id > 1000")[0][0]

    def refused():
        if later_rows():
            pytest.fail(f"the target applied {later_rows()} rows from beyond the gap "
                        f"(asked for {old}):\nsource log:\n{tail(onprem)}")
        err = source_status(onprem)["last_error"] or ""
        return "gap" in err.lower() and err
    err = None
    try:
        err = wait_until(refused, 30, interval=0.1, what="the source to refuse the resume")
    except TimeoutError:
        pytest.fail(f"no gap error in the source's status: {source_status(onprem)}\n{tail(onprem)}")
    positions = re.findall(r"[0-9A-F]+/[0-9A-F]+", err)
    assert old in positions and len(set(positions)) >= 2, f"both positions in: {err}"
    logged = [line for line in log_since(onprem, mark).splitlines()
              if "gap" in line.lower() and old in line]
    assert logged, f"no gap line naming {old} in the source's log:\n{tail(onprem)}"
    # stopped: nothing later arrives while the error stands
    assert stays(lambda: later_rows() == 0 and "gap" in
                 (source_status(onprem)["last_error"] or "").lower(), 3.0)
    assert dst.sql("SELECT count(*) FROM t")[0][0] == 30
    assert_no_sanitizer_reports(onprem, cloud)
