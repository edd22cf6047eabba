#!/usr/bin/python3
"""make bench: strait against PostgreSQL's native logical replication, side
by side in one run.

Two network namespaces joined by one veth pair (offloads off), a PostgreSQL
server in each (source in site a, target in site b). Native replication is a
publication and a subscription that connects through a WireGuard tunnel
(wireguard-go) with sslmode=require; strait is a straitd in each site with
its own WireGuard tunnel (backend userspace), TLS relay link and zstd. Both
replicate the same publication of the same source database.

Each repetition measures both systems (which goes first alternates between
repetitions, so a drift of the shared machine hits both alike):

  sync     a fresh empty target (pgbench's schema); time until the tables
           of pgbench -i -s SCALE are there and equal to the source's
  steady   pgbench -c 4 -T STEADY: bytes on the veth (both directions) per
           transaction, lag sampled every 250 ms, CPU of the replication
           processes
  catchup  the link held (native: subscription disabled; strait: a schedule
           rule rate 0) while pgbench runs BACKLOG s, then released: rows
           applied per second until the target has everything
  thin     the veth limited to 10 Mbit/s each way (tc tbf), pgbench -c 4 for
           THIN s: the transactions per second that arrive at the target
  bigtxn   one INSERT of BIG_ROWS rows (2,000,000 in the full profile, about
           190 MB of pgoutput changes): seconds from its commit (the
           statement returns on the source) until the target has every row,
           and the peak RSS of both straitd over the phase (native's
           subscription streams large transactions: streaming = on, or
           parallel on PostgreSQL 16 and later)

in this order: the first system's sync, steady, thin and bigtxn; the
second's sync; the catch-up of both from one load (both held, one pgbench
run, then the first released and its drain timed, then the second: the same
rows, drained while nothing else works); the first stops; the second's
steady, thin and bigtxn.
Only the catch-up has both systems set up at once.

and once, after the repetitions, for strait alone:

  spool    the stream held (rate 0) while psql writes rows of 64 KiB of
           hex text, 1 MiB a transaction, until the source's spool holds
           1 GiB; then released: straitd's peak RSS (VmHWM, reset with
           clear_refs) while it holds and while it drains, and the drain time

Lag is measured the same way for both, outside either system: the source's
WAL position sampled every 50 ms against the target's replication origin
(each system advances its origin in the commit of every applied
transaction). Every phase records the CPU the rest of the machine used.

Output: a table on stdout and in OUT/results.txt, every number in
OUT/results.json, the lag over time in OUT/lag.png.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
from benchlib import (CpuLedger, LagSampler, PidCpu, Pgbench, harness, lsn_int,  # noqa: E402
                      peak_rss, reset_peak_rss, rss, cpu_seconds, children, wait_until)
import report  # noqa: E402
import syncscale  # noqa: E402

SRC_DB = "bench"
PUBLICATION = "bench_pub"
STREAM = "app"             # strait's stream is app<rep>: origins are cluster-wide
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
CHANGES_PER_TXN = 4        # tpcb-like: three UPDATEs and one INSERT
MIB = 1024 * 1024
# The spool phase: rows of BULK_ROW bytes of hex text (md5 of distinct
# inputs, stored uncompressed, so WAL, pgoutput and the spool carry every
# byte), BULK_ROWS_PER_TXN to a transaction, until the spool holds SPOOL_BACKLOG.
SPOOL_BACKLOG = 1024 * MIB
BULK_ROW = 64 * 1024
BULK_ROWS_PER_TXN = 16
BULK_DDL = ("CREATE TABLE bench_bulk (id bigserial PRIMARY KEY, payload text); "
            "ALTER TABLE bench_bulk ALTER payload SET STORAGE EXTERNAL")
# The bigtxn phase: one INSERT of big_rows rows of 64 hex characters (about
# 95 bytes of pgoutput a row). The table exists, empty, on the source and on
# every target from the start of a run that has the phase (a table a
# subscription does not know yet is not replicated); TRUNCATE empties it
# again after each system's phase.
BIG_DDL = "CREATE TABLE bench_big (id bigint PRIMARY KEY, payload text)"
BIG_INSERT = ("INSERT INTO bench_big SELECT g, md5(g::text) || md5((g * 7)::text) "
              "FROM generate_series(1, {rows}) g")

PROFILES = {
    # name: scale, repetitions, steady s, backlog s, thin s, rows of the
    # big transaction, phases (limit: seconds after which no new
    # repetition starts); the initial sync at scale (syncscale.py, once
    # after the repetitions): its repetitions, tables of manytables, rows
    # of bigtable
    "full": dict(scale=20, reps=3, steady=30, backlog=60, thin=20, big_rows=2000000,
                 limit=24 * 60, phases=("sync", "steady", "catchup", "thin", "bigtxn", "spool"),
                 sync_reps=1, sync_tables=2000, sync_big_rows=5000000),
    "quick": dict(scale=5, reps=1, steady=10, backlog=10, thin=10, big_rows=500000,
                  limit=5 * 60, phases=("sync", "steady", "catchup", "thin", "bigtxn"),
                  sync_reps=1, sync_tables=200, sync_big_rows=500000),
    "smoke": dict(scale=1, reps=1, steady=5, backlog=5, thin=5, big_rows=2000000,
                  limit=3 * 60, phases=("sync", "steady"),
                  sync_reps=1, sync_tables=20, sync_big_rows=100000),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# The two systems, behind one small interface

class Native:
    """CREATE PUBLICATION / CREATE SUBSCRIPTION through the native tunnel."""

    name = "native"
    finished = False        # stopped and its results filed (Bench.finish)
    peak_before = {}        # straitd's VmHWM before a reset (none here)

    def __init__(self, bench, rep, src_db=SRC_DB, publication=PUBLICATION):
        self.b = bench
        self.sub = f"bench_sub_{rep}"
        self.tgt_db = f"tgt_native_{rep}"
        self.src_db = src_db
        self.publication = publication
        self.streaming = None

    def origin(self):
        oid = self.b.dst.sql("SELECT oid FROM pg_subscription WHERE subname = %s", (self.sub,),
                             dbname=self.tgt_db)[0][0]
        return f"pg_{oid}"

    def start(self):
        conn = (f"host={self.b.tunnel.addresses[0]} port={self.b.src.port} "
                f"dbname={self.src_db} user=postgres sslmode=require")
        # A transaction larger than the walsender's logical_decoding_work_mem
        # is sent while it is still open (and applied by a parallel worker
        # from 16 on) instead of spilled to disk and sent after its commit.
        # Smaller transactions, all the other phases have, are unchanged.
        version = int(self.b.dst.sql("SHOW server_version_num")[0][0])
        self.streaming = "parallel" if version >= 160000 else "on"
        self.b.dst.sql(f"CREATE SUBSCRIPTION {self.sub} CONNECTION '{conn}' "
                       f"PUBLICATION {self.publication} WITH (streaming = {self.streaming})",
                       dbname=self.tgt_db)

    def wait_streaming(self, timeout):
        def ready():
            rows = self.b.dst.sql("SELECT count(*) FILTER (WHERE srsubstate <> 'r'), count(*) "
                                  "FROM pg_subscription_rel", dbname=self.tgt_db)[0]
            return rows[0] == 0 and rows[1] > 0 and self.apply_pid()
        wait_until(ready, timeout, 0.2, what="the subscription to be ready")

    def apply_pid(self):
        rows = self.b.dst.sql("SELECT pid FROM pg_stat_subscription WHERE subname = %s "
                              "AND relid IS NULL AND pid IS NOT NULL", (self.sub,),
                              dbname=self.tgt_db)
        return rows[0][0] if rows else None

    def walsender_pid(self):
        rows = self.b.src.sql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                              (self.sub,))
        return rows[0][0] if rows else None

    def replication_pids(self):
        return {"walsender": [self.walsender_pid()], "apply": [self.apply_pid()],
                "wireguard-go": self.b.tunnel.pids}

    def link_stats(self):
        return {}

    def hold(self):
        self.b.dst.sql(f"ALTER SUBSCRIPTION {self.sub} DISABLE", dbname=self.tgt_db)
        wait_until(lambda: self.apply_pid() is None, 15, what="the apply worker to stop")
        return True

    def release(self):
        self.b.dst.sql(f"ALTER SUBSCRIPTION {self.sub} ENABLE", dbname=self.tgt_db)

    def settle(self, timeout):
        """Held, a disabled subscription has no process that works."""
        return 0.0

    def daemons(self):
        return {}

    def stop(self):
        self.b.dst.sql(f"DROP SUBSCRIPTION IF EXISTS {self.sub}", dbname=self.tgt_db)


class Strait:
    """A straitd per site (backend userspace), the stream onprem -> cloud."""

    name = "strait"
    finished = False

    def __init__(self, bench, rep, initial_sync=True, src_db=SRC_DB, publication=PUBLICATION,
                 stream_extra=None):
        self.b = bench
        self.rep = rep
        self.initial_sync = initial_sync
        self.src_db = src_db
        self.publication = publication
        self.stream_extra = stream_extra or {}
        self.tgt_db = f"tgt_strait_{rep}"
        # Replication origins belong to the whole target cluster, not to one
        # database: a second target database under the same stream name would
        # find the first one's origins and believe its sync done.
        self.stream = f"{STREAM}{rep}"
        self.cluster = None
        self.d = {}
        self.peak_before = {}   # each straitd's VmHWM before the bigtxn phase reset it

    def origin(self):
        return f"strait_{self.stream}"

    def start(self):
        b = self.b
        base = os.path.join(b.work, f"strait-{self.rep}")
        os.makedirs(base)
        sites = harness.tunnel_sites([b.src, b.dst], b.pair.sites, names=("onprem", "cloud"))
        sites[0]["database"] = b.src.dsn(self.src_db)
        sites[1]["database"] = b.dst.dsn(self.tgt_db)
        stream = {"name": self.stream, "from": "onprem", "to": "cloud",
                  "publication": self.publication, "initial_sync": self.initial_sync,
                  **self.stream_extra}
        self.cluster = harness.Cluster(base, sites, [stream], backend="userspace",
                                       cluster="bench")
        for name, site in (("onprem", b.pair.sites[0]), ("cloud", b.pair.sites[1])):
            d = harness.Straitd(self.cluster.path(name), site=name, netns=site.ns,
                                log_level="info")
            self.d[name] = d
            d.start(timeout=30)

    def stream_status(self, site, role):
        return next(r for r in self.d[site].status()["replication"] if r["role"] == role)

    def wait_streaming(self, timeout):
        wait_until(lambda: self.stream_status("onprem", "source")["streaming"], timeout, 0.2,
                   what="the source to stream")

    def replication_pids(self):
        pids = {"straitd": [d.pid for d in self.d.values()],
                "wireguard-go": [c for d in self.d.values() for c in children(d.pid)]}
        pids["walsender"] = [r[0] for r in self.b.src.sql(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (f"strait_{self.stream}",))]
        pids["apply"] = [r[0] for r in self.b.dst.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'strait-apply'", (self.tgt_db,))]
        return pids

    def link_stats(self):
        """The source's counters of the stream: batches and their bytes."""
        st = self.stream_status("onprem", "source")
        return {k: st.get(k) for k in ("batches_sent", "bytes_raw", "bytes_wire")}

    def _schedule(self, rules):
        for name in self.d:
            cfg = self.cluster.host(name)[1]
            if rules is None:
                cfg["streams"][0].pop("schedule", None)
            else:
                cfg["streams"][0]["schedule"] = rules
            self.cluster.update(name, cfg)
        ok = True
        for d in self.d.values():
            ok = d.ctl("reload", check=False).returncode == 0 and ok
        return ok

    def hold(self):
        return self._schedule([{"rate": 0}])

    def release(self):
        self._schedule(None)
        self.d["onprem"].ctl("sync-now", self.stream, check=False)

    def settle(self, timeout):
        """Held, the source keeps reading the slot into its spool: seconds
        until that reader is through (the spool's end unchanged for 0.5 s),
        so it does not share the CPU with another system's drain."""
        t0 = time.monotonic()
        last = [None]

        def idle():
            end = self.stream_status("onprem", "source")["spool"]["end_lsn"]
            done = end == last[0]
            last[0] = end
            return done
        try:
            wait_until(idle, timeout, 0.5, what="strait's reader to be through")
        except TimeoutError:
            log(f"  strait's reader still reading after {timeout}s")
        return time.monotonic() - t0

    def daemons(self):
        return {name: d.pid for name, d in self.d.items() if d.alive()}

    def stop(self):
        for d in self.d.values():
            try:
                d.stop(timeout=15)
            except harness.HarnessError:
                pass
        slot = f"strait_{self.stream}"
        try:
            wait_until(lambda: not self.b.src.sql(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)),
                15, what="strait's slot to be released")
            self.b.src.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE slot_name = %s", (slot,))
        except Exception as exc:
            log(f"  could not drop strait's slot: {exc}")
        self.b.dst.sql("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                       "WHERE roname = %s OR roname LIKE %s", (slot, slot + ":%"))


# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.p = dict(PROFILES[args.profile])
        for k in ("scale", "reps", "steady", "backlog", "thin", "big_rows", "sync_reps",
                  "sync_tables", "sync_big_rows"):
            v = getattr(args, k)
            if v is not None:
                self.p[k] = v
        if args.phases:
            self.p["phases"] = tuple(args.phases.split(","))
        self.out = os.path.abspath(args.out)
        self.pair = self.tunnel = self.src = self.dst = None
        self.work = None
        self.ledger = CpuLedger()
        self.results = {"native": [], "strait": []}
        self.series = []               # (system, rep, phase, samples)
        self.skipped = []              # what the time limit left out, and why
        self.spool_result = None       # the spool phase (strait only, once)
        self.sync_scale_result = None  # manytables and bigtable (syncscale.py, once)
        self.started = time.monotonic()

    # ---------------------------------------------------------------- budget
    def budget(self):
        p = self.p
        # from runs on a shared 2-core machine; native's sync is the slower
        # one. Sync (which every repetition runs: it starts the system),
        # steady, thin and bigtxn are each system's own, with a start and
        # stop; the catch-up is one for both: the load, native's drain (the
        # longer), strait's. bigtxn: the INSERT (~16 s for 2,000,000 rows),
        # the apply (~60 s, both systems alike), the TRUNCATE
        per = {"sync": 4 + 0.8 * p["scale"], "steady": p["steady"] + 2, "thin": p["thin"] + 2,
               "bigtxn": 5 + p["big_rows"] / 25000}
        phases = ("sync",) + tuple(ph for ph in p["phases"] if ph in per and ph != "sync")
        catchup = p["backlog"] * 1.8 + 5 if "catchup" in p["phases"] else 0
        setup = 10 + 0.5 * p["scale"]
        system_s = sum(per[ph] for ph in phases) + 3
        run_s = 2 * system_s + catchup
        total = setup + p["reps"] * run_s
        once = 75 if "spool" in p["phases"] else 0   # strait only: writing 1 GiB, draining it
        sync_scale = syncscale.estimate(p)
        total += once + sync_scale
        self.run_estimate = run_s
        # what runs after the repetitions: no repetition starts that would push it past the limit
        self.after_reps_estimate = once + sync_scale
        lines = [f"budget ({self.args.profile}): scale {p['scale']}, {p['reps']} repetition(s), "
                 f"phases {', '.join(p['phases'])}, time limit {p['limit'] / 60:.1f} min",
                 f"  setup ~{setup:.0f}s; per repetition ~{run_s:.0f}s: "
                 f"per system ~{system_s:.0f}s "
                 + "(" + ", ".join(f"{ph} ~{per[ph]:.0f}s" for ph in phases)
                 + ")" + (f", catch-up of both ~{catchup:.0f}s" if catchup else "") + "; "
                 + ("spool (once) ~75s; " if "spool" in p["phases"] else "")
                 + (f"initial sync at scale (once) ~{sync_scale:.0f}s; " if sync_scale else "")
                 + f"total ~{total / 60:.1f} min"]
        return total, lines

    # ----------------------------------------------------------------- setup
    def setup(self):
        tag = f"{os.getpid() % 10000}"
        self.work = tempfile.mkdtemp(prefix="bench-", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.pair = benchlib.VethPair(tag)
        self.tunnel = benchlib.WgTunnel(self.pair, tag, self.work)
        for pid in self.tunnel.pids:
            self.ledger.add_root(pid)
        self.src = harness.PgServer("bsrc", netns=self.pair.sites[0].ns, listen_addresses="*",
                                    settings={"ssl": "on",
                                              "max_wal_size": "2GB",
                                              "checkpoint_timeout": "15min"})
        self._server_cert(self.src)
        dst_settings = {"max_wal_size": "2GB", "checkpoint_timeout": "15min"}
        if self.has_sync_scale():
            # room for native's four table-sync workers beside its apply worker
            dst_settings["max_logical_replication_workers"] = str(syncscale.NATIVE_MAX_WORKERS)
        self.dst = harness.PgServer("bdst", netns=self.pair.sites[1].ns, settings=dst_settings)
        self.src.start()
        self.dst.start()
        self.ledger.add_root(self.src.pid)
        self.ledger.add_root(self.dst.pid)
        self.src.createdb(SRC_DB)
        t = time.monotonic()
        self.src.pgbench("-i", "-s", str(self.p["scale"]), "-q", dbname=SRC_DB)
        log(f"source loaded: pgbench -i -s {self.p['scale']} in {time.monotonic() - t:.1f}s")
        if "bigtxn" in self.p["phases"]:
            self.src.sql(BIG_DDL, dbname=SRC_DB)
        self.src.sql(f"CREATE PUBLICATION {PUBLICATION} FOR ALL TABLES", dbname=SRC_DB)
        self.expected_accounts = 100000 * self.p["scale"]

    def _server_cert(self, pg):
        """A self-signed certificate, so the server accepts sslmode=require."""
        cert, key = os.path.join(pg.base, "server.crt"), os.path.join(pg.base, "server.key")
        harness.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                     "-days", "2", "-subj", "/CN=bench-source"])
        os.chmod(key, 0o600)
        user = harness.test_user()
        shutil.chown(key, user)
        shutil.chown(cert, user)
        with open(os.path.join(pg.datadir, "postgresql.conf"), "a") as f:
            f.write(f"ssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")

    def cleanup(self):
        for pg in (self.src, self.dst):
            if pg:
                pg.cleanup()
        if self.tunnel:
            self.tunnel.cleanup()
        if self.pair:
            self.pair.cleanup()
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)

    # --------------------------------------------------------------- helpers
    def history_counts(self, sysobj):
        s = self.src.sql("SELECT count(*) FROM pgbench_history", dbname=SRC_DB)[0][0]
        t = self.dst.sql("SELECT count(*) FROM pgbench_history", dbname=sysobj.tgt_db)[0][0]
        return s, t

    def wait_caught_up(self, sysobj, timeout, interval=0.1):
        """Seconds until the target has every transaction (None on timeout)."""
        t0 = time.monotonic()
        try:
            wait_until(lambda: (lambda c: c[0] == c[1])(self.history_counts(sysobj)), timeout,
                       interval, what=f"{sysobj.name} to catch up")
        except TimeoutError:
            return None
        return time.monotonic() - t0

    def digest(self, pg, dbname):
        return pg.sql("SELECT (SELECT count(*) FROM pgbench_accounts), "
                      "(SELECT count(*) FROM pgbench_branches), "
                      "(SELECT count(*) FROM pgbench_tellers), "
                      "(SELECT count(*) FROM pgbench_history), "
                      "(SELECT sum(abalance) FROM pgbench_accounts), "
                      "(SELECT sum(bbalance) FROM pgbench_branches), "
                      "(SELECT sum(tbalance) FROM pgbench_tellers)", dbname=dbname)[0]

    def sampler(self, sysobj):
        return LagSampler(self.src, self.dst, SRC_DB, sysobj.tgt_db, sysobj.origin()).start()

    # ---------------------------------------------------------------- phases
    def phase_sync(self, sysobj, target_ddl=None):
        """Initial sync: from configuring replication until the target's
        tables are complete and equal to the source's. target_ddl: more
        tables for the target, besides pgbench's."""
        self.src.sql("TRUNCATE pgbench_history", dbname=SRC_DB)
        want = self.digest(self.src, SRC_DB)
        self.dst.createdb(sysobj.tgt_db)
        self.dst.pgbench("-i", "-I", "dtp", dbname=sysobj.tgt_db)   # schema, no rows
        if target_ddl:
            self.dst.sql(target_ddl, dbname=sysobj.tgt_db)
        n_branches, n_tellers = want[1], want[2]
        snap = self.ledger.snapshot()
        t0 = time.monotonic()
        sysobj.start()
        timeout = 60 + 6 * self.p["scale"]

        def arrived():
            # cheap: the last account by its key and the small tables' counts
            # (each system loads a table in one transaction), then the digest
            r = self.dst.sql("SELECT EXISTS (SELECT 1 FROM pgbench_accounts WHERE aid = %s), "
                             "(SELECT count(*) FROM pgbench_branches), "
                             "(SELECT count(*) FROM pgbench_tellers)",
                             (self.expected_accounts,), dbname=sysobj.tgt_db)[0]
            if not (r[0] and r[1] == n_branches and r[2] == n_tellers):
                return None
            t = time.monotonic()
            return t if self.digest(self.dst, sysobj.tgt_db) == want else None

        try:
            t_done = wait_until(arrived, timeout, 0.2, what="the initial sync")
            seconds = t_done - t0
        except TimeoutError:
            seconds = None
        cpu = CpuLedger.delta(snap, self.ledger.snapshot())
        if seconds is None:
            raise harness.HarnessError(f"the initial sync did not finish in {timeout}s")
        sysobj.wait_streaming(60)
        # the fresh tables vacuumed now, outside the measured phases: else
        # autovacuum visits them within a minute, in whichever phase follows
        # (a catch-up for one system, a steady phase for the other)
        t0 = time.monotonic()
        self.dst.sql("VACUUM (ANALYZE) " + ", ".join(TABLES), dbname=sysobj.tgt_db)
        return {"seconds": seconds, "timeout": timeout, "cpu": cpu,
                "vacuum_s": time.monotonic() - t0}

    def phase_steady(self, sysobj, rep):
        d = self.p["steady"]
        pids = sysobj.replication_pids()
        snap = self.ledger.snapshot()
        c0 = self.pair.counters()
        link0 = sysobj.link_stats()
        pcpu = PidCpu(pids).start()
        s0, _ = self.history_counts(sysobj)
        lag = self.sampler(sysobj)
        bench = Pgbench(self.src, SRC_DB, 4, d).wait(timeout=d + 60)
        load_end = time.monotonic() - lag.t0
        drain = self.wait_caught_up(sysobj, 30 + d)
        c1 = self.pair.counters()
        link1 = sysobj.link_stats()
        rcpu_by = pcpu.stop()
        rcpu = sum(rcpu_by.values())
        samples = lag.stop()
        cpu = CpuLedger.delta(snap, self.ledger.snapshot())
        s1, _ = self.history_counts(sysobj)
        txns = s1 - s0
        self.series.append((sysobj.name, rep, "steady", samples))
        window = lag.window(0, load_end)
        rx, tx, prx, ptx = (b - a for a, b in zip(c0, c1))
        wan = rx + tx
        link = {k: link1[k] - link0[k] for k in link0 if link0[k] is not None}
        if txns:
            link["per_txn"] = {k: round(v / txns, 3) for k, v in link.items()}
        return {"transactions": txns, "tps": bench.tps(), "wan_bytes": wan,
                "wan_bytes_to_target": tx, "wan_bytes_to_source": rx,
                "packets_to_target": ptx, "packets_to_source": prx,
                "bytes_per_txn": wan / txns if txns else None,
                "packets_per_txn": (ptx + prx) / txns if txns else None,
                "link": link, "replication_cpu_by_process": rcpu_by,
                "drain_s": drain, "lag_p50": benchlib.median(window),
                "lag_p99": benchlib.quantile(window, 0.99),
                "lag_max": max(window) if window else None, "lag_samples": len(window),
                "lag_error": lag.error,
                "replication_cpu_s": rcpu,
                "replication_cpu_per_1k_txn": rcpu / txns * 1000 if txns else None,
                "cpu": cpu}

    def phase_catchup(self, systems, rep):
        """One backlog for every system: all held, pgbench for BACKLOG s,
        then released one after the other, each drain measured alone while
        the others stay held (their backlog is the same rows: nothing is
        written once the load ends). Returns {system name: result}."""
        b = self.p["backlog"]
        out = {}
        snap = self.ledger.snapshot()
        held = []
        for s in systems:
            if s.hold():
                held.append(s)
            else:
                s.release()
                out[s.name] = {"supported": False, "why": "the hold was refused (reload failed)"}
        if not held:
            return self._catchup_cpu(out, snap)
        lsn0 = self.src.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
        before = {s.name: self.history_counts(s) for s in held}
        lags = {s.name: self.sampler(s) for s in held}
        bench = Pgbench(self.src, SRC_DB, 4, b)
        try:
            probe = min(3.0, b / 2)
            time.sleep(probe)    # the load runs; is anything getting through?
            live = []            # systems the hold did not stop
            for s in list(held):
                (s0, t0c), (s1, t1c) = before[s.name], self.history_counts(s)
                if s1 - s0 > 0 and (t1c - t0c) > 0.5 * (s1 - s0):
                    held.remove(s)
                    lags[s.name].stop()
                    s.release()
                    live.append(s)
                    out[s.name] = {"supported": False,
                                   "why": f"the hold had no effect ({t1c - t0c} of {s1 - s0} "
                                          f"transactions applied within {probe:.0f}s)"}
            if not held:
                bench.kill()
            else:
                bench.wait(timeout=b + 60)
            for s in live:       # done before any drain is measured
                self.wait_caught_up(s, 60)
            if not held:
                return self._catchup_cpu(out, snap)
            load_end = time.monotonic()
            load_cpu = CpuLedger.delta(snap, self.ledger.snapshot())
            lsn1 = self.src.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
            backlog = {}
            for s in held:
                s2, t2c = self.history_counts(s)
                backlog[s.name] = (s2 - t2c, t2c)
            for i, s in enumerate(held):
                # the systems still held: their readers done, so this drain has
                # the machine to itself
                settle = sum(o.settle(60) for o in held[i + 1:])
                backlog_txns, t2c = backlog[s.name]
                dsnap = self.ledger.snapshot()
                rel = time.monotonic()
                s.release()
                drain = self.wait_caught_up(s, max(60, 4 * b), interval=0.05)
                end = time.monotonic()
                samples = lags[s.name].stop()
                self.series.append((s.name, rep, "catchup", samples))
                cpu = CpuLedger.add(load_cpu, CpuLedger.delta(dsnap, self.ledger.snapshot()))
                r = out[s.name] = {"supported": True, "timed_out": drain is None,
                                   "backlog_txns": backlog_txns,
                                   "backlog_rows": backlog_txns * CHANGES_PER_TXN,
                                   "backlog_wal_bytes": lsn_int(lsn1) - lsn_int(lsn0),
                                   "load_tps": bench.tps(), "released": i + 1,
                                   "released_after_load_s": rel - load_end,
                                   "others_settled_s": settle, "cpu": cpu}
                if drain is None:
                    _, t3c = self.history_counts(s)
                    r.update(drain_s=None, rows_per_s=(t3c - t2c) * CHANGES_PER_TXN / (end - rel))
                else:
                    drain_s = end - rel
                    r.update(drain_s=drain_s, rows_per_s=backlog_txns * CHANGES_PER_TXN / drain_s
                             if drain_s else None)
            return out
        finally:             # an error on the way leaves nothing running
            bench.kill()
            for lag in lags.values():
                lag.stop()

    def _catchup_cpu(self, out, snap):
        cpu = CpuLedger.delta(snap, self.ledger.snapshot())
        for r in out.values():
            r["cpu"] = cpu
        return out

    def phase_thin(self, sysobj, rep):
        w = self.p["thin"]
        self.wait_caught_up(sysobj, 30)
        self.pair.shape("10mbit")
        try:
            snap = self.ledger.snapshot()
            c0 = self.pair.counters()
            s0, t0c = self.history_counts(sysobj)
            lag = self.sampler(sysobj)
            bench = Pgbench(self.src, SRC_DB, 4, w).wait(timeout=w + 60)
            s1, t1c = self.history_counts(sysobj)
            c1 = self.pair.counters()
            end = time.monotonic() - lag.t0
            samples = lag.stop()
            cpu = CpuLedger.delta(snap, self.ledger.snapshot())
        finally:
            self.pair.unshape()
        self.series.append((sysobj.name, rep, "thin", samples))
        tail = lag.window(end - 2.0, end + 1.0)
        lag_end = max(tail) if tail else None
        arrived = (t1c - t0c) / w
        offered = (s1 - s0) / w
        # lag that stays small means the link kept up with all pgbench offered:
        # the sustainable rate is at least that; else it is what arrived
        bounded = lag_end is not None and lag_end < 2.0
        # bytes per arrived transaction on the thin link, and what 10 Mbit/s
        # each way would carry at that cost (the busier direction decides)
        busier = max(c1[0] - c0[0], c1[1] - c0[1])
        per_txn = busier / (t1c - t0c) if t1c > t0c else None
        return {"offered_tps": offered, "arrived_tps": arrived, "lag_end_s": lag_end,
                "pgbench_tps": bench.tps(),
                "busier_direction_bytes_per_txn": per_txn,
                "link_capacity_estimate_tps": 10e6 / 8 / per_txn if per_txn else None,
                "bounded": bounded, "sustained_tps": offered if bounded else arrived,
                "cpu": cpu}

    def phase_bigtxn(self, sysobj):
        """One INSERT of big_rows rows in one transaction: seconds from its
        commit (the statement returns) until the target has every row, and
        straitd's peak RSS over the phase. TRUNCATE empties the table again
        after, at the source and (replicated) at the target, so the next
        system's initial sync copies no rows of it."""
        n = self.p["big_rows"]
        self.wait_caught_up(sysobj, 60)
        self.checkpoint()
        d = sysobj.daemons()
        for name, pid in d.items():     # the repetition's peak so far, kept for finish()
            sysobj.peak_before[name] = max(v for v in (peak_rss(pid),
                                                       sysobj.peak_before.get(name), 0) if v)
        reset = all(reset_peak_rss(pid) for pid in d.values())
        pcpu = PidCpu(sysobj.replication_pids()).start()
        snap = self.ledger.snapshot()
        c0 = self.pair.counters()
        origin = sysobj.origin()
        timeout = 120 + n / 5000
        r = {"rows": n, "timeout_s": timeout, "peak_rss_reset": reset,
             "native_streaming": getattr(sysobj, "streaming", None)}
        with self.src.connect(SRC_DB) as sc, self.dst.connect(sysobj.tgt_db) as dc:
            try:
                lsn0 = lsn_int(sc.execute("SELECT pg_current_wal_insert_lsn()::text")
                               .fetchone()[0])
                t0 = time.monotonic()
                sc.execute(BIG_INSERT.format(rows=n))       # autocommit: returns committed
                committed = time.monotonic()
                cc = self.pair.counters()       # what crossed while the transaction was open
                lsn1 = lsn_int(sc.execute("SELECT pg_current_wal_insert_lsn()::text")
                               .fetchone()[0])
                applied = None
                polls = counts = 0
                while True:
                    t = time.monotonic()
                    polls += 1
                    # Both systems make the whole transaction visible in one
                    # commit, which moves the target's replication origin
                    # past lsn0: count(*), a scan of the whole table, runs
                    # from then on only, so polling does not compete with the
                    # apply it waits for
                    row = dc.execute("SELECT remote_lsn::text FROM pg_replication_origin_status "
                                     "WHERE external_id = %s", (origin,)).fetchone()
                    if row and row[0] and lsn_int(row[0]) > lsn0:
                        counts += 1
                        if dc.execute("SELECT count(*) FROM bench_big").fetchone()[0] >= n:
                            applied = t
                            break
                    if t - committed > timeout:
                        break
                    time.sleep(max(0.0, t + 0.1 - time.monotonic()))
                c1 = self.pair.counters()
                rx, tx = c1[0] - c0[0], c1[1] - c0[1]
                r.update(insert_s=committed - t0, wal_bytes=lsn1 - lsn0,
                         commit_to_applied_s=applied - committed if applied else None,
                         timed_out=applied is None, polls=polls, counts=counts,
                         wan_bytes_to_target=tx, wan_bytes_to_source=rx,
                         wan_bytes_to_target_by_commit=cc[1] - c0[1],
                         peak_rss={name: peak_rss(pid) for name, pid in d.items()},
                         replication_cpu_by_process=pcpu.stop(),
                         cpu=CpuLedger.delta(snap, self.ledger.snapshot()))
            finally:
                sc.execute("TRUNCATE bench_big")
            try:
                wait_until(lambda: dc.execute("SELECT NOT EXISTS (SELECT 1 FROM bench_big)")
                           .fetchone()[0], 60, 0.2, what="the TRUNCATE to arrive")
            except TimeoutError:
                log(f"  {sysobj.name}: bench_big not emptied at the target within 60s")
        self.checkpoint()
        return r

    def checkpoint(self):
        """A CHECKPOINT on both servers, outside the timed part: the big
        transaction's WAL (hundreds of MiB at the source and at the target)
        would otherwise bring on a checkpoint inside whichever phase comes
        next, and the phase itself starts each system at the same WAL
        distance from the last checkpoint."""
        for pg, db in ((self.src, SRC_DB), (self.dst, "postgres")):
            pg.sql("CHECKPOINT", dbname=db)

    def phase_spool(self, sysobj):
        """A 1 GiB spool: hold the stream, write until the source's spool
        holds SPOOL_BACKLOG, release; straitd's peak RSS in each part."""
        d = {"source": sysobj.d["onprem"].pid, "sink": sysobj.d["cloud"].pid}
        if not sysobj.hold():
            sysobj.release()
            return {"supported": False, "why": "the hold was refused (reload failed)"}
        snap = self.ledger.snapshot()
        reset = all(reset_peak_rss(pid) for pid in d.values())
        per_txn = BULK_ROW * BULK_ROWS_PER_TXN
        txns = -(-SPOOL_BACKLOG // per_txn)
        chunks = 64                      # distinct rows in the pool, cycled
        script = os.path.join(self.work, "bulk.sql")
        with open(script, "w") as f:
            f.write("CREATE TEMP TABLE bench_pool AS SELECT k, (SELECT string_agg("
                    "md5(k::text || ':' || i::text), '') FROM generate_series(1, "
                    f"{BULK_ROW // 32}) i) AS chunk FROM generate_series(0, {chunks - 1}) k;\n")
            for j in range(txns):
                lo = (j * BULK_ROWS_PER_TXN) % chunks
                f.write("INSERT INTO bench_bulk (payload) SELECT chunk FROM bench_pool "
                        f"WHERE k >= {lo} AND k < {lo + BULK_ROWS_PER_TXN};\n")
        t0 = time.monotonic()
        harness.run(["psql", "-h", self.src.sockdir, "-p", str(self.src.port), "-U", "postgres",
                     "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", SRC_DB, "-f", script],
                    timeout=300)
        write_s = time.monotonic() - t0
        written = txns * per_txn

        def spool():
            return sysobj.stream_status("onprem", "source")["spool"]
        # the reader is through once the spool holds what was written, and stops growing
        last = [None]

        def spooled():
            b = spool()["bytes"]
            done = b >= written and b == last[0]
            last[0] = b
            return done
        try:
            wait_until(spooled, 120, 1.0, what="the spool to hold the backlog")
        except TimeoutError:
            pass
        held = spool()
        hold_s = time.monotonic() - t0
        hold_peak = {k: peak_rss(pid) for k, pid in d.items()}
        hold_rss = {k: rss(pid) for k, pid in d.items()}
        reset = all(reset_peak_rss(pid) for pid in d.values()) and reset
        rows = txns * BULK_ROWS_PER_TXN
        rel = time.monotonic()
        sysobj.release()
        try:
            wait_until(lambda: self.dst.sql("SELECT count(*) FROM bench_bulk",
                                            dbname=sysobj.tgt_db)[0][0] >= rows,
                       240, 0.5, what="the backlog to drain")
            drain_s = time.monotonic() - rel
        except TimeoutError:
            drain_s = None
        drain_peak = {k: peak_rss(pid) for k, pid in d.items()}
        return {"supported": True, "written_bytes": written, "transactions": txns,
                "write_s": write_s, "hold_s": hold_s, "spool_bytes": held["bytes"],
                "spool_records": held["records"], "peak_rss_reset": reset,
                "peak_rss_hold": hold_peak, "rss_end_of_hold": hold_rss,
                "peak_rss_drain": drain_peak, "drain_s": drain_s,
                "drain_mib_per_s": held["bytes"] / MIB / drain_s if drain_s else None,
                "cpu": CpuLedger.delta(snap, self.ledger.snapshot())}

    def run_spool(self):
        """The spool phase, once, with a strait system of its own. Its
        stream starts without an initial sync (the spool's rows are all
        written after it starts; pgbench's tables stay as they are, empty
        at the target), so the phase does not pay for copying them."""
        sysobj = Strait(self, "spool", initial_sync=False)
        res = {}
        log("spool backlog (strait only)")
        t0 = time.monotonic()
        try:
            # published (FOR ALL TABLES) from now on: only strait's run sees it
            self.src.sql(BULK_DDL, dbname=SRC_DB)
            self.dst.createdb(sysobj.tgt_db)
            self.dst.pgbench("-i", "-I", "dtp", dbname=sysobj.tgt_db)   # schema, no rows
            self.dst.sql(BULK_DDL, dbname=sysobj.tgt_db)
            sysobj.start()
            sysobj.wait_streaming(60)
            log(f"  strait streaming after {time.monotonic() - t0:.1f}s")
            res = self.phase_spool(sysobj)
            if res.get("supported"):
                peak = max(v for p in ("peak_rss_hold", "peak_rss_drain")
                           for v in res[p].values() if v)
                log(f"  spool held {res['spool_bytes'] / MIB:.0f} MiB after "
                    f"{fmt(res['hold_s'])}s, drained in {fmt(res['drain_s'])}s; "
                    f"straitd peak RSS {peak / MIB:.1f} MiB")
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  spool phase failed: {res['error']}")
            traceback.print_exc()
            for d in sysobj.d.values():
                if os.path.exists(d.logfile):
                    shutil.copy(d.logfile, os.path.join(self.out, f"straitd-spool-{d.site}.log"))
        finally:
            try:
                sysobj.stop()
            except Exception as exc:
                log(f"  stopping strait: {exc}")
            for pg, db in ((self.dst, None), (self.src, SRC_DB)):
                try:
                    if db:
                        pg.sql("DROP TABLE IF EXISTS bench_bulk", dbname=db)
                    else:
                        pg.sql(f'DROP DATABASE IF EXISTS "{sysobj.tgt_db}" WITH (FORCE)')
                except Exception as exc:
                    log(f"  cleaning up the spool phase: {exc}")
            log(f"  spool phase done in {time.monotonic() - t0:.0f}s")
        self.spool_result = res

    # ------------------------------------------------------------ a repetition
    def attempt(self, sysobj, res, fn):
        """Runs a step of one system unless an earlier one failed; a failure
        is recorded in res and ends the system's part of the repetition."""
        if "error" in res:
            return
        try:
            fn()
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  {sysobj.name} failed: {res['error']}")
            traceback.print_exc()

    def run_sync(self, sysobj, res):
        res["sync"] = self.phase_sync(sysobj, BIG_DDL if "bigtxn" in self.p["phases"] else None)
        log(f"  {sysobj.name} sync {fmt(res['sync']['seconds'])}s")

    def run_measures(self, sysobj, res, rep):
        """The phases each system has alone: steady and thin."""
        if "steady" in self.p["phases"]:
            r = res["steady"] = self.phase_steady(sysobj, rep)
            log(f"  {sysobj.name} steady: {r['transactions']} txn, {fmt(r['tps'])} tps, "
                f"{fmt(r['bytes_per_txn'])} B/txn, lag p50 {fmt(r['lag_p50'])}s "
                f"p99 {fmt(r['lag_p99'])}s")
        if "thin" in self.p["phases"]:
            r = res["thin"] = self.phase_thin(sysobj, rep)
            log(f"  {sysobj.name} thin WAN: offered {fmt(r['offered_tps'])} tps, arrived "
                f"{fmt(r['arrived_tps'])} tps, lag at end {fmt(r['lag_end_s'])}s")
        if "bigtxn" in self.p["phases"]:
            r = res["bigtxn"] = self.phase_bigtxn(sysobj)
            peak = max((v for v in r["peak_rss"].values() if v), default=None)
            log(f"  {sysobj.name} big transaction: {r['rows']} rows inserted in "
                f"{fmt(r['insert_s'])}s, applied {fmt(r['commit_to_applied_s'])}s after the "
                f"commit" + (f"; straitd peak RSS {peak / MIB:.1f} MiB" if peak else ""))

    def run_catchup(self, runs, rep):
        """The catch-up of every system of runs that has not failed."""
        ok = [(s, r) for s, r in runs if "error" not in r]
        if not ok:
            return
        log(f"  catch-up: {' and '.join(s.name for s, _ in ok)} held "
            f"{self.p['backlog']}s under one load, released one after the other")
        try:
            got = self.phase_catchup([s for s, _ in ok], rep)
        except Exception as exc:
            for s, r in ok:
                r["error"] = f"catch-up: {type(exc).__name__}: {exc}"
                try:
                    s.release()
                except Exception:
                    pass
            log(f"  catch-up failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            return
        for s, r in ok:
            c = r["catchup"] = got[s.name]
            if c.get("supported"):
                log(f"  {s.name} catch-up (released {c['released']}, "
                    f"{fmt(c['released_after_load_s'], 1)}s after the load): "
                    f"{c['backlog_txns']} txn backlog, drained in {fmt(c['drain_s'])}s, "
                    f"{fmt(c['rows_per_s'])} rows/s")
            else:
                log(f"  {s.name} catch-up: n/a ({c['why']})")

    def finish(self, sysobj, res):
        """Stops a system, drops its target and files its results (once)."""
        if sysobj.finished:
            return
        sysobj.finished = True
        if "error" in res and isinstance(sysobj, Strait):
            for d in sysobj.d.values():      # the daemons' side of the story
                if os.path.exists(d.logfile):
                    shutil.copy(d.logfile, os.path.join(
                        self.out, f"straitd-r{res['rep'] + 1}-{d.site}.log"))
        d = sysobj.daemons()
        # the peak of the whole repetition: the bigtxn phase resets VmHWM and
        # keeps the peak from before
        res["straitd"] = {name: {"peak_rss": max((v for v in (peak_rss(pid),
                                                             sysobj.peak_before.get(name))
                                                  if v), default=None),
                                 "cpu_s": cpu_seconds(pid)}
                          for name, pid in d.items()}
        try:
            sysobj.stop()
        except Exception as exc:
            log(f"  stopping {sysobj.name}: {exc}")
        try:
            self.dst.sql(f'DROP DATABASE IF EXISTS "{sysobj.tgt_db}" WITH (FORCE)')
        except Exception as exc:
            log(f"  dropping {sysobj.tgt_db}: {exc}")
        self.results[sysobj.name].append(res)

    def run_rep(self, rep):
        """One repetition: the first system's sync, steady and thin; the
        second's sync; then, both side by side, one catch-up load for the
        two; the first stops; the second's steady and thin. Only the
        catch-up has both systems at work at once, and there one drains
        while the other is held."""
        order = (Native, Strait) if rep % 2 == 0 else (Strait, Native)
        runs = [(cls(self, rep), {"rep": rep}) for cls in order]
        (first, r1), (second, r2) = runs
        joint = "catchup" in self.p["phases"]
        try:
            log(f"rep {rep + 1}: {first.name}, then {second.name}")
            self.attempt(first, r1, lambda: self.run_sync(first, r1))
            self.attempt(first, r1, lambda: self.run_measures(first, r1, rep))
            if not joint or "error" in r1:
                self.finish(first, r1)
            self.attempt(second, r2, lambda: self.run_sync(second, r2))
            if joint:
                self.run_catchup([(s, r) for s, r in runs if not s.finished], rep)
                self.finish(first, r1)
            self.attempt(second, r2, lambda: self.run_measures(second, r2, rep))
        finally:
            for s, r in runs:
                self.finish(s, r)

    def run(self):
        total, lines = self.budget()
        for line in lines:
            log(line)
        self.setup()
        log(f"veth offloads: {self.pair.offloads()}")
        for rep in range(self.p["reps"]):
            left = (self.p["limit"] - self.after_reps_estimate
                    - (time.monotonic() - self.started))
            if rep > 0 and left < self.run_estimate:
                self.skipped.append(f"repetitions {rep + 1}-{self.p['reps']}: "
                                    f"{left:.0f}s left of the time limit, "
                                    f"~{self.run_estimate:.0f}s needed")
                log(f"skipping {self.skipped[-1]}")
                break
            self.run_rep(rep)
            log(f"elapsed {(time.monotonic() - self.started) / 60:.1f} min "
                f"(budget {total / 60:.1f} min)")
        if "bigtxn" in self.p["phases"]:
            # every system stopped: no target is left to need it
            self.src.sql("DROP TABLE IF EXISTS bench_big", dbname=SRC_DB)
        if self.has_sync_scale():
            self.sync_scale_result = syncscale.SyncScale(self, Native, Strait, log).run()
        if "spool" in self.p["phases"]:
            self.run_spool()

    def has_sync_scale(self):
        return any(ph in self.p["phases"] for ph in ("manytables", "bigtable"))


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="build/bench", help="directory for results and plot")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="profile", action="store_const", const="quick",
                   help="one short repetition of every phase (~3 minutes)")
    g.add_argument("--smoke", dest="profile", action="store_const", const="smoke",
                   help="one very short repetition of sync and steady (a test of the script)")
    ap.set_defaults(profile="full")
    ap.add_argument("--scale", type=int, help="pgbench scale of the initial sync")
    ap.add_argument("--reps", type=int, help="repetitions of each phase")
    ap.add_argument("--steady", type=int, help="seconds of pgbench in the steady phase")
    ap.add_argument("--backlog", type=int, help="seconds the link is held in catch-up")
    ap.add_argument("--thin", type=int, help="seconds of pgbench over the thin WAN")
    ap.add_argument("--big-rows", type=int, dest="big_rows",
                    help="rows of the bigtxn phase's one INSERT")
    ap.add_argument("--phases",
                    help="comma-separated subset of sync,steady,catchup,thin,bigtxn,spool,"
                         "manytables,bigtable")
    ap.add_argument("--sync-reps", type=int, dest="sync_reps",
                    help="repetitions of the manytables and bigtable phases")
    ap.add_argument("--sync-tables", type=int, dest="sync_tables",
                    help="tables of the manytables phase")
    ap.add_argument("--sync-big-rows", type=int, dest="sync_big_rows",
                    help="rows of the bigtable phase's table")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, WireGuard, PostgreSQL user)",
              file=sys.stderr)
        return 2
    for path in (harness.STRAITD, harness.STRAITCTL):
        if not os.access(path, os.X_OK):
            print(f"bench: {path} is missing: run make first", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    bench = Bench(args)
    # SIGTERM unwinds like Ctrl-C, so cleanup() runs
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    failed = None
    try:
        bench.run()
    except KeyboardInterrupt:
        failed = "interrupted"
    except Exception as exc:
        failed = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        bench.cleanup()
    text = report.write(bench, os.path.abspath(args.out), failed)
    print(text, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
