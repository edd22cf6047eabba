#!/usr/bin/python3
"""make bench: strait against PostgreSQL's native logical replication, side
by side in one run, on a clean link and on WANs as they are: thin, far and
lossy.

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
  catchup  once after the repetitions, CATCHUP_REPS times: both systems
           held (native: subscription disabled; strait: a schedule rule
           rate 0) while CATCHUP_TXNS tpcb-like transactions commit
           (generated inside the source server: benchlib.Backlog), then
           each released alone, the order alternating: rows applied per
           second until the target has everything, and the CPU the apply
           used on the target per 1,000 transactions (native's apply
           worker; strait's sink straitd and its target sessions)
  thin     the veth limited to 2 Mbit/s each way (tc tbf): the lag under a
           fixed offered load both systems carry (pgbench -R THIN_RATE for
           THIN s), then for THIN s a load generated inside the source
           server at more than the target needs (THIN_LINKS' offer): the
           transactions per second that arrive at the target
  thin512  the same at 512 kbit/s (the fixed load scaled down with the link)
  far      both tunnels through the delay relay (tests/tools/udp_impair,
           60 ms each way: 120 ms round trip), both systems at once: the lag
           under pgbench -R WAN_RATE for WAN s, then the catch-up after a
           hold of HOLD s under the same load
  lossy    the same at 30 ms each way (60 ms round trip) and 1% loss each way
  farsync  the initial sync over the far link: with it in the run, it is
           how each system starts in every repetition (the clean sync is
           then a start of its own, stopped once measured)
  bigtxn   one INSERT of BIG_ROWS rows (2,000,000 in the full profile, about
           190 MB of pgoutput changes): seconds from its commit (the
           statement returns on the source) until the target has every row,
           and the peak RSS of both straitd over the phase (native's
           subscription streams large transactions: streaming = on, or
           parallel on PostgreSQL 16 and later)

The clean phases (sync, steady, bigtxn) run in the first CLEAN_REPS
repetitions only, the WAN phases in every one. In a repetition:
the first system's start (its clean sync, then the far-link sync), steady,
thin, thin512 and bigtxn; the second's start; both side by side, the
catch-up (one load for the two: both held, one pgbench run, then the first
released and its drain timed, then the second: the same rows, drained while
nothing else works), far and lossy; the first stops; the second's steady,
thin, thin512 and bigtxn. Only these joint phases have both systems set up
at once: the thin links are each system's alone, as tc shapes the whole
veth.

and once, after the repetitions, for strait alone:

  spool    the stream held (rate 0) while psql writes rows of 64 KiB of
           hex text, 1 MiB a transaction, until the source's spool holds
           1 GiB; then released: straitd's peak RSS (VmHWM, reset with
           clear_refs) while it holds and while it drains, and the drain time

Lag is measured the same way for both, outside either system: the source's
WAL position sampled every 50 ms (10 ms in the fixed-rate lag windows)
against the target's replication origin (each system advances its origin
in the commit of every applied transaction). Every phase records the CPU the rest of the machine used.

Output: a table on stdout and in OUT/results.txt, every number in
OUT/results.json, the lag over time in OUT/lag.png (steady, catch-up) and
OUT/lag-PHASE.png (each WAN phase, both systems on one chart), the headline
ratios in OUT/ratios.png.
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

# The thin links: tc tbf on both veth ends (the rate each way). The fixed
# offered load of their lag measurement is THIN_RATE tps at 2 Mbit/s, scaled
# with the link: native sends ~1,400 B a transaction when nothing queues,
# so 100 tps fill about half of 2 Mbit/s.
# offer: the unthrottled window's load (tps, generated inside the source
# server): twice what strait must carry to meet the link's target against
# native's link-bound rate (about 350 tps at 2 Mbit/s, 85 at 512 kbit/s),
# and more than strait's link carries at 512 kbit/s
THIN_LINKS = {"thin": {"rate": "2mbit", "bps": 2000000, "label": "2 Mbit/s", "offer": 3500},
              "thin512": {"rate": "512kbit", "bps": 512000, "label": "512 kbit/s",
                          "offer": 2000}}
THIN_REFERENCE_BPS = 2000000
# The impaired links: udp_impair's delay (half the round trip) and loss,
# each way. farsync uses far's.
WAN_LINKS = {"far": {"delay_ms": 60, "loss_pct": 0, "label": "120 ms RTT"},
             "lossy": {"delay_ms": 30, "loss_pct": 1, "label": "60 ms RTT, 1% loss each way"}}
STRAIT_PORT = 51820        # strait's WireGuard port (harness.tunnel_sites); native's is 51821
# strait's tunnel MTU when its config names the relay: the relay listens on
# site a's own address, and the route to it (loopback) would give 65,536;
# 1420 is what strait computes for the 1500-byte veth without the relay
STRAIT_MTU = 1420

PROFILES = {
    # name: scale, repetitions, repetitions of the clean phases (sync,
    # steady, catchup, bigtxn: the first clean_reps), steady s, backlog s,
    # seconds of each thin window, the thin links' fixed load (tps at 2
    # Mbit/s), the far and lossy lag window (s) and its fixed load (tps),
    # their hold (s, under the same load), rows of the big transaction,
    # phases (limit: seconds after which no new repetition starts); the
    # initial sync at scale (syncscale.py, once after the repetitions): its
    # repetitions, tables of manytables, rows of bigtable
    "full": dict(scale=20, reps=3, clean_reps=1, steady=30, backlog=60, catchup_reps=5,
                 catchup_txns=300000, thin=10, thin_rate=100,
                 wan=15, wan_rate=100, hold=60, big_rows=2000000, limit=25 * 60,
                 phases=("sync", "steady", "catchup", "thin", "thin512", "far", "lossy",
                         "farsync", "bigtxn", "spool"),
                 sync_reps=1, sync_tables=2000, sync_big_rows=5000000, apply_workers=2),
    "quick": dict(scale=5, reps=1, clean_reps=1, steady=10, backlog=10, catchup_reps=1,
                  catchup_txns=30000, thin=5, thin_rate=100,
                  wan=8, wan_rate=100, hold=15, big_rows=500000, limit=8 * 60,
                  phases=("sync", "steady", "catchup", "thin", "thin512", "far", "lossy",
                          "farsync", "bigtxn"),
                  sync_reps=1, sync_tables=200, sync_big_rows=500000, apply_workers=2),
    "smoke": dict(scale=1, reps=1, clean_reps=1, steady=5, backlog=5, catchup_reps=1,
                  catchup_txns=5000, thin=5, thin_rate=100,
                  wan=5, wan_rate=100, hold=5, big_rows=2000000, limit=3 * 60,
                  phases=("sync", "steady"),
                  sync_reps=1, sync_tables=20, sync_big_rows=100000, apply_workers=2),
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

    def target_apply_cpu(self):
        """CPU seconds the apply used on the target so far: the apply worker
        (disabling the subscription ends it: a release starts a new one)."""
        pid = self.apply_pid()
        return (cpu_seconds(pid) or 0.0) if pid else 0.0

    def apply_parallel(self):
        """One apply worker: nothing dealt side by side."""
        return None

    @property
    def port(self):
        return self.b.tunnel.port

    def path(self):
        return self.b.tunnel.path()

    def start_through(self, imp):
        """The tunnel is up before the subscription: moved through the relay now."""
        imp.route(self.path())

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

    def after_release(self, timeout):
        """An enabled subscription holds nothing open."""
        return 0.0

    def daemons(self):
        return {}

    def stop(self):
        self.b.dst.sql(f"DROP SUBSCRIPTION IF EXISTS {self.sub}", dbname=self.tgt_db)


class Strait:
    """A straitd per site (backend userspace), the stream onprem -> cloud."""

    name = "strait"
    finished = False
    port = STRAIT_PORT

    def __init__(self, bench, rep, initial_sync=True, src_db=SRC_DB, publication=PUBLICATION,
                 stream_extra=None):
        self.b = bench
        self.endpoints = None   # (site a's, site b's) when started through a relay
        self.rep = rep
        self.initial_sync = initial_sync
        self.src_db = src_db
        self.publication = publication
        # the sink's parallel apply (streams[].apply_workers)
        self.stream_extra = {"apply_workers": bench.p["apply_workers"], **(stream_extra or {})}
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
        if self.endpoints:
            for site, endpoint in zip(sites, self.endpoints):
                site["endpoint"] = endpoint
        self.cluster = harness.Cluster(base, sites, [stream], backend="userspace",
                                       cluster="bench")
        if self.endpoints:
            for name in ("onprem", "cloud"):
                cfg = self.cluster.host(name)[1]
                cfg["tunnel"]["mtu"] = STRAIT_MTU
                self.cluster.update(name, cfg)
        for name, site in (("onprem", b.pair.sites[0]), ("cloud", b.pair.sites[1])):
            d = harness.Straitd(self.cluster.path(name), site=name, netns=site.ns,
                                log_level="info")
            self.d[name] = d
            d.start(timeout=30)

    def start_through(self, imp):
        """The daemons are not started yet: their config will name the
        relay's addresses, so the tunnel's first packet already crosses it."""
        self.endpoints = imp.endpoints(self.port)

    def path(self):
        names = ("onprem", "cloud")
        cfgs = [self.cluster.host(n)[1] for n in names]
        return benchlib.WgPath("strait", [c["tunnel"]["interface"] for c in cfgs],
                               [self.cluster.keys[n][1] for n in names], self.port,
                               [c["sites"][n]["tunnel_address"].split("/")[0]
                                for c, n in zip(cfgs, names)])

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

    def target_apply_cpu(self):
        """CPU seconds the apply used on the target so far: the sink's
        straitd and its target sessions."""
        pids = [self.d["cloud"].pid] + [r[0] for r in self.b.dst.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'strait-apply'", (self.tgt_db,))]
        return sum(cpu_seconds(p) or 0.0 for p in pids)

    def apply_parallel(self):
        """The sink's parallel apply counters (status apply.parallel)."""
        try:
            return self.stream_status("cloud", "sink")["apply"].get("parallel")
        except (harness.HarnessError, KeyError, StopIteration):
            return None

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

    def after_release(self, timeout):
        """Seconds until the sync-now window of the release has closed:
        strait closes it once everything is applied, two ticks (1 s) in a
        row. A load that starts before keeps it open, and while it is open a
        rate-0 rule does not hold: a later hold would not hold."""
        t0 = time.monotonic()
        try:
            wait_until(lambda: not self.stream_status("onprem", "source")["schedule"]
                       ["sync_now_until_drained"], timeout, 0.2,
                       what="strait's sync-now window to close")
        except TimeoutError:
            log(f"  strait's sync-now window still open after {timeout}s")
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
        for k in ("scale", "reps", "clean_reps", "steady", "backlog", "thin", "thin_rate", "wan",
                  "wan_rate", "hold", "big_rows", "sync_reps", "sync_tables", "sync_big_rows",
                  "apply_workers", "catchup_reps", "catchup_txns"):
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
        self.catchup_results = {"native": [], "strait": []}   # the catch-up runs, once
        self.catchup_error = None
        self.sync_scale_result = None  # manytables and bigtable (syncscale.py, once)
        self.impairments = []          # every relay started, stopped again by cleanup()
        self.thin_links, self.wan_links = THIN_LINKS, WAN_LINKS   # for the report
        self.started = time.monotonic()

    # ---------------------------------------------------------------- budget
    def budget(self):
        """Seconds the run should take, and the lines that say how: the
        time limit is checked against it before each repetition."""
        p = self.p
        ph = p["phases"]
        # from runs on a shared 2-core machine; each estimate is the mean of
        # the two systems. Each system's own phases, with a start and stop:
        # the sync (native's is the slower one: at scale 20 ~18 s over the
        # far link, strait ~9 s; the clean sync, when the far one is the
        # start, pays a start and stop more), steady, the thin links (two
        # windows each, then native's backlog drains on the clean veth),
        # bigtxn (the INSERT, 7-10 s for 2,000,000 rows; the apply, 10-12 s
        # after it, both systems alike; the TRUNCATE). The joint phases are one for
        # both: the catch-up (the load, native's drain, the longer, then
        # strait's); far and lossy (the relay and a ping each way, the lag
        # window, the hold and the two drains of its fixed load's backlog,
        # a few seconds each)
        sync = 4 + 0.8 * p["scale"]
        per = {"sync": sync + (5 if "farsync" in ph else 0), "farsync": 3 + 0.55 * p["scale"],
               "steady": p["steady"] + 2, "thin": 2 * p["thin"] + 1,
               "thin512": 2 * p["thin"] + 1, "bigtxn": 5 + p["big_rows"] / 100000}
        joint = {"far": 5 + p["wan"] + p["hold"], "lossy": 5 + p["wan"] + p["hold"]}
        start = "farsync" if "farsync" in ph else "sync"
        every = [start] + [x for x in ("thin", "thin512") if x in ph]
        clean = [x for x in ("sync", "steady", "bigtxn") if x in ph and x != start]
        both = [x for x in ("far", "lossy") if x in ph]
        wan_rep = 2 * (sum(per[x] for x in every) + 3) + sum(joint[x] for x in both)
        clean_extra = 2 * sum(per[x] for x in clean)
        # the catch-up, once: two syncs, then each run's vacuum, backlog
        # (~20,000 transactions a second once vacuumed), native's drain
        # (~10,000 a second), strait's (~16,000), checkpoints
        catchup = (2 * sync + p["catchup_reps"] * (p["catchup_txns"] * (1 / 20000 + 1 / 10000
                   + 1 / 16000) + 15)) if "catchup" in ph else 0
        clean_reps = min(p["clean_reps"], p["reps"])
        setup = 10 + 0.5 * p["scale"]
        once = 45 if "spool" in ph else 0   # strait only: writing 1 GiB, draining it
        sync_scale = syncscale.estimate(p)
        total = (setup + p["reps"] * wan_rep + clean_reps * clean_extra + catchup + once +
                 sync_scale)
        self.rep_estimates = [wan_rep + (clean_extra if rep < clean_reps else 0)
                              for rep in range(p["reps"])]
        # what runs after the repetitions: no repetition starts that would push it past the limit
        self.after_reps_estimate = catchup + once + sync_scale

        def parts(names, table):
            return ", ".join(f"{x} ~{table[x]:.0f}s" for x in names)
        lines = [f"budget ({self.args.profile}): scale {p['scale']}, {p['reps']} repetition(s), "
                 f"the clean phases in {clean_reps} of them, phases {', '.join(ph)}, "
                 f"time limit {p['limit'] / 60:.1f} min",
                 f"  setup ~{setup:.0f}s; every repetition ~{wan_rep:.0f}s: per system "
                 f"({parts(every, per)})" + (f", both at once ({parts(both, joint)})"
                                             if both else ""),
                 f"  the clean repetitions ~{clean_extra:.0f}s more: per system "
                 f"({parts(clean, per)})",
                 "  " + (f"catch-up ({p['catchup_reps']} runs, once) ~{catchup:.0f}s; "
                         if catchup else "")
                 + ("spool (once) ~45s; " if once else "")
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
        for imp in self.impairments:       # left running by a failure: stopped by its pid
            try:
                imp.stop()
            except Exception as exc:
                log(f"  stopping the relay: {exc}")
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

    def sampler(self, sysobj, period=0.25, src_period=0.05):
        return LagSampler(self.src, self.dst, SRC_DB, sysobj.tgt_db, sysobj.origin(),
                          period=period, src_period=src_period).start()

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

    def phase_catchup(self, systems, rep, phase="catchup", seconds=None, rate=None, txns=None):
        """One backlog for every system: all held, pgbench for seconds
        (BACKLOG s unless given; unthrottled, or at rate tps) or, with txns,
        that many tpcb-like transactions from the backlog generator, then
        released one after the other, each drain measured alone while the
        others stay held (their backlog is the same rows: nothing is written
        once the load ends), with the CPU its apply used on the target.
        Returns {system name: result}."""
        b = seconds or self.p["backlog"]
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
        bench = (benchlib.Backlog(self.src, SRC_DB, txns, self.p["scale"]) if txns
                 else Pgbench(self.src, SRC_DB, 4, b, rate=rate))
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
                bench.wait(timeout=b + 60 if not txns else 1800)
            for s in live:       # done before any drain is measured
                self.wait_caught_up(s, 60)
                s.after_release(30)
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
                # every held system's reader done (strait's source reads the
                # slot into its spool while held: the outage outlasted the
                # load, for the first released as for the second), so this
                # drain has the machine to itself; and a checkpoint, so that
                # neither drain pays for the WAL of the load or of the other
                # drain (a checkpoint falling inside the second drain made it
                # ~35% slower, whichever system it was)
                settle = sum(o.settle(60) for o in held[i:])
                self.checkpoint()
                backlog_txns, t2c = backlog[s.name]
                dsnap = self.ledger.snapshot()
                par0 = s.apply_parallel()
                cpu0 = s.target_apply_cpu()
                rel = time.monotonic()
                s.release()
                drain = self.wait_caught_up(s, max(60, 4 * b, backlog_txns / 1000), interval=0.05)
                end = time.monotonic()
                apply_cpu = s.target_apply_cpu() - cpu0
                par1 = s.apply_parallel()
                samples = lags[s.name].stop()
                self.series.append((s.name, rep, phase, samples))
                cpu = CpuLedger.add(load_cpu, CpuLedger.delta(dsnap, self.ledger.snapshot()))
                r = out[s.name] = {"supported": True, "timed_out": drain is None,
                                   "held_s": b, "load_rate": rate,
                                   "backlog_txns": backlog_txns,
                                   "backlog_rows": backlog_txns * CHANGES_PER_TXN,
                                   "backlog_wal_bytes": lsn_int(lsn1) - lsn_int(lsn0),
                                   "load_tps": bench.tps(), "released": i + 1,
                                   "released_after_load_s": rel - load_end,
                                   "others_settled_s": settle, "cpu": cpu,
                                   "apply_cpu_s": apply_cpu,
                                   "apply_cpu_per_1000_txns": apply_cpu * 1000 / backlog_txns
                                   if backlog_txns else None,
                                   "parallel": parallel_delta(par0, par1)}
                if drain is None:
                    _, t3c = self.history_counts(s)
                    r.update(drain_s=None, rows_per_s=(t3c - t2c) * CHANGES_PER_TXN / (end - rel))
                else:
                    drain_s = end - rel
                    r.update(drain_s=drain_s, rows_per_s=backlog_txns * CHANGES_PER_TXN / drain_s
                             if drain_s else None)
            for s in held:       # nothing the release opened is left for a later hold
                out[s.name]["release_closed_s"] = s.after_release(30)
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

    def thin_rate(self, phase):
        """The thin link's fixed offered load: THIN_RATE scaled with the link."""
        return max(1, round(self.p["thin_rate"] * THIN_LINKS[phase]["bps"] / THIN_REFERENCE_BPS))

    def lag_load(self, systems, rep, phase, seconds, rate):
        """pgbench -R rate for seconds, the lag of every system sampled
        (each caught up first), then a bounded wait for each to have every
        transaction. Returns {system name: result}."""
        for s in systems:
            self.wait_caught_up(s, 60)
        snap = self.ledger.snapshot()
        before = {s.name: self.history_counts(s) for s in systems}
        # the target every 50 ms: a window of 15 s gives 300 samples, so p99
        # is not the largest of 60 (the tail on a lossy link is a few loss
        # recoveries, and 60 samples catch one or none); the source every
        # 10 ms, so a lag is known to 10 ms: in 50 ms steps a far link's
        # one-way 60 ms read as 52 or 103 ms by the phase of the sampling,
        # and p99 was a coin toss between the two for either system
        lags = {s.name: self.sampler(s, period=0.05, src_period=0.01) for s in systems}
        bench = Pgbench(self.src, SRC_DB, 4, seconds, rate=rate)
        try:
            bench.wait(timeout=seconds + 60)
            load_end = time.monotonic()
            drains = {s.name: self.wait_caught_up(s, 30 + seconds) for s in systems}
        finally:             # an error on the way leaves nothing running
            bench.kill()
            for lag in lags.values():
                lag.stop()
        cpu = CpuLedger.delta(snap, self.ledger.snapshot())
        out = {}
        for s in systems:
            lag = lags[s.name]
            self.series.append((s.name, rep, phase, lag.samples))
            window = lag.window(0, load_end - lag.t0)
            s1, t1 = self.history_counts(s)
            out[s.name] = {"rate": rate, "seconds": seconds, "pgbench_tps": bench.tps(),
                           "transactions": s1 - before[s.name][0], "drain_s": drains[s.name],
                           "lag_p50": benchlib.median(window),
                           "lag_p99": benchlib.quantile(window, 0.99),
                           "lag_max": max(window) if window else None,
                           "lag_samples": len(window),
                           # how many samples were past one and two 50 ms
                           # steps says more than p99 alone
                           "lag_over_50ms": sum(1 for v in window if v >= 0.05),
                           "lag_over_100ms": sum(1 for v in window if v >= 0.1),
                           "lag_error": lag.error, "cpu": cpu}
        return out

    def phase_thin(self, sysobj, rep, phase):
        """A thin link, tc tbf on both veth ends: the lag under a fixed
        offered load the link carries for both systems, then the link's
        offer (PacedLoad) for THIN s: the rate the system sustains with
        bounded lag. What arrives is counted over the second half of that window,
        once the link's queue is full and an adaptive sender (strait's
        compression level) has settled. The backlog a link-bound system has
        after it drains on the clean veth before the phase ends (not timed)."""
        link = THIN_LINKS[phase]
        w = self.p["thin"]
        self.wait_caught_up(sysobj, 60)
        self.pair.shape(link["rate"])
        lag = bench = None
        try:
            fixed = self.lag_load([sysobj], rep, f"{phase}-fixed", w,
                                  self.thin_rate(phase))[sysobj.name]
            snap = self.ledger.snapshot()
            s0, _ = self.history_counts(sysobj)
            lag = self.sampler(sysobj)
            bench = benchlib.PacedLoad(self.src, SRC_DB, w, link["offer"], self.p["scale"])
            time.sleep(w / 2)
            tm, (_, tmc), cm = time.monotonic(), self.history_counts(sysobj), self.pair.counters()
            bench.wait(timeout=w + 60)
            t1, (s1, t1c), c1 = time.monotonic(), self.history_counts(sysobj), self.pair.counters()
            end = t1 - lag.t0
            cpu = CpuLedger.delta(snap, self.ledger.snapshot())
        finally:
            if bench:
                bench.kill()
            if lag:
                lag.stop()
            self.pair.unshape()
        drain = self.wait_caught_up(sysobj, 120)
        self.series.append((sysobj.name, rep, f"{phase}-sustained", lag.samples))
        tail = lag.window(end - 2.0, end + 1.0)
        lag_end = max(tail) if tail else None
        arrived = (t1c - tmc) / (t1 - tm)
        offered = (s1 - s0) / w
        # lag that stays small (under a tenth of the window, at most 2 s)
        # means the link kept up with all pgbench offered: the sustainable
        # rate is at least that; else it is what arrived
        bounded = lag_end is not None and lag_end < min(2.0, 0.1 * w)
        # bytes per arrived transaction on the thin link, and what the link
        # carries each way at that cost (the busier direction decides)
        busier = max(c1[0] - cm[0], c1[1] - cm[1])
        per_txn = busier / (t1c - tmc) if t1c > tmc else None
        return {"link": link["rate"], "offered_tps": offered, "arrived_tps": arrived,
                "lag_end_s": lag_end, "pgbench_tps": bench.tps(), "drain_after_s": drain,
                "busier_direction_bytes_per_txn": per_txn,
                "link_capacity_estimate_tps": link["bps"] / 8 / per_txn if per_txn else None,
                "bounded": bounded, "sustained_tps": offered if bounded else arrived,
                "fixed": fixed, "cpu": CpuLedger.add(fixed["cpu"], cpu)}

    def impairment(self, link, rep, ports):
        """A relay with the impairment of link (WAN_LINKS) for the tunnels
        of ports, kept for cleanup() until it is stopped."""
        spec = WAN_LINKS[link]
        imp = benchlib.Impairment(self.pair, ports, self.work, delay_ms=spec["delay_ms"],
                                  loss_pct=spec["loss_pct"], seed=rep + 1,
                                  tag=f"{link}-r{rep + 1}")
        self.impairments.append(imp)
        return imp

    def phase_farsync(self, sysobj, rep, target_ddl=None):
        """The initial sync over the far link: the relay carries the tunnel
        before the system starts (native's is moved through it; strait's
        config names it), so its first packet already crosses it. The
        round trip a ping sees is measured after, outside the timing."""
        imp = self.impairment("far", rep, [sysobj.port])
        try:
            sysobj.start_through(imp)
            r = self.phase_sync(sysobj, target_ddl)
            imp.route(sysobj.path())        # checked, and pointed back by stop()
            r["rtt_ms"] = imp.rtt_ms(sysobj.path())
        finally:
            stats = imp.stop()
        r.update(relay=stats, **imp.settings)
        return r

    def phase_wan(self, systems, rep, link):
        """far or lossy for every system at once, through one relay: the
        lag under pgbench -R WAN_RATE for WAN s, then the catch-up after a
        hold of HOLD s under the same load. Returns {system name: (lag
        result, catch-up result)}."""
        imp = self.impairment(link, rep, [s.port for s in systems])
        try:
            rtt = {}
            for s in systems:
                imp.route(s.path())
                rtt[s.name] = imp.rtt_ms(s.path())
            lag = self.lag_load(systems, rep, link, self.p["wan"], self.p["wan_rate"])
            got = self.phase_catchup(systems, rep, f"{link}_catchup", self.p["hold"],
                                     self.p["wan_rate"])
        finally:
            stats = imp.stop()
        for s in systems:
            lag[s.name].update(rtt_ms=rtt[s.name], relay=stats, **imp.settings)
        return {s.name: (lag[s.name], got[s.name]) for s in systems}

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
                    row = dc.execute(benchlib.ORIGIN_POSITION_SQL, (origin, origin)).fetchone()
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

    def vacuum(self, src_dbs, dst_dbs):
        """VACUUM ANALYZE of the given databases on each server, outside the
        timed part."""
        for pg, dbs in ((self.src, src_dbs), (self.dst, dst_dbs)):
            for db in dbs:
                pg.sql("VACUUM ANALYZE", dbname=db)

    def log_state(self, dst_dbs):
        """What a repetition starts from: the WAL each slot of the source
        keeps, and the size of the tables at the source and each target."""
        slots = self.src.sql("SELECT slot_name, pg_current_wal_lsn() - restart_lsn, "
                             "pg_current_wal_lsn() - confirmed_flush_lsn "
                             "FROM pg_replication_slots ORDER BY 1", dbname=SRC_DB)
        sizes = [(db, pg.sql("SELECT pg_total_relation_size('pgbench_accounts'), "
                             "pg_total_relation_size('pgbench_history'), "
                             "pg_database_size(current_database())", dbname=db)[0])
                 for pg, db in [(self.src, SRC_DB)] + [(self.dst, d) for d in dst_dbs]]
        log("    slots (WAL kept, unconfirmed): " + ", ".join(
            f"{n} {int(r) >> 20} MiB/{int(c) >> 20} MiB" for n, r, c in slots))
        log("    sizes (accounts, history, database MiB): " + ", ".join(
            f"{db} {a >> 20}/{h >> 20}/{t >> 20}" for db, (a, h, t) in sizes))

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

    def run_start(self, sysobj, res, rep, clean):
        """Starts a system with its initial sync: over the far link when the
        run has farsync, after (in a clean repetition) the clean sync as a
        start of its own, stopped once measured; else the clean sync."""
        if "farsync" not in self.p["phases"]:
            self.run_sync(sysobj, res)
            return
        if clean and "sync" in self.p["phases"]:
            probe = type(sysobj)(self, f"{rep}s")
            try:
                self.run_sync(probe, res)
            except Exception:
                self.save_logs(probe, f"r{rep + 1}-sync")
                raise
            finally:
                self.stop_system(probe)
        r = res["farsync"] = self.phase_farsync(
            sysobj, rep, BIG_DDL if "bigtxn" in self.p["phases"] else None)
        log(f"  {sysobj.name} sync over the far link ({fmt(r['rtt_ms'], 0)} ms ping) "
            f"{fmt(r['seconds'])}s")

    def run_measures(self, sysobj, res, rep, clean):
        """The phases each system has alone: steady (clean repetitions), the
        thin links, bigtxn (clean repetitions)."""
        ph = self.p["phases"]
        if clean and "steady" in ph:
            r = res["steady"] = self.phase_steady(sysobj, rep)
            log(f"  {sysobj.name} steady: {r['transactions']} txn, {fmt(r['tps'])} tps, "
                f"{fmt(r['bytes_per_txn'])} B/txn, lag p50 {fmt(r['lag_p50'])}s "
                f"p99 {fmt(r['lag_p99'])}s")
        for phase in (x for x in THIN_LINKS if x in ph):
            r = res[phase] = self.phase_thin(sysobj, rep, phase)
            f = r["fixed"]
            log(f"  {sysobj.name} {THIN_LINKS[phase]['label']}: at {f['rate']} tps lag p50 "
                f"{fmt(f['lag_p50'], 3)}s p99 {fmt(f['lag_p99'], 3)}s; offered "
                f"{fmt(r['offered_tps'])} tps, arrived {fmt(r['arrived_tps'])} tps, lag at end "
                f"{fmt(r['lag_end_s'])}s")
        if clean and "bigtxn" in ph:
            r = res["bigtxn"] = self.phase_bigtxn(sysobj)
            peak = max((v for v in r["peak_rss"].values() if v), default=None)
            log(f"  {sysobj.name} big transaction: {r['rows']} rows inserted in "
                f"{fmt(r['insert_s'])}s, applied {fmt(r['commit_to_applied_s'])}s after the "
                f"commit" + (f"; straitd peak RSS {peak / MIB:.1f} MiB" if peak else ""))

    def joint_phases(self, clean):
        """The phases both systems have at once, in this repetition."""
        return [ph for ph in ("far", "lossy") if ph in self.p["phases"]]

    def run_joint(self, runs, rep, phase):
        """A joint phase (catchup, far, lossy) of every system of runs that
        has not failed. A failure ends the repetition for all of them (each
        is released first): the phase leaves them in no known state."""
        ok = [(s, r) for s, r in runs if "error" not in r]
        if not ok:
            return
        names = " and ".join(s.name for s, _ in ok)
        try:
            if phase == "catchup":
                log(f"  catch-up: {names} held {self.p['backlog']}s under one load, "
                    "released one after the other")
                got = {k: (None, v) for k, v in self.phase_catchup([s for s, _ in ok],
                                                                   rep).items()}
            else:
                log(f"  {phase} WAN ({WAN_LINKS[phase]['label']}): {names} at "
                    f"{self.p['wan_rate']} tps for {self.p['wan']}s, then held "
                    f"{self.p['hold']}s under that load, released one after the other")
                got = self.phase_wan([s for s, _ in ok], rep, phase)
        except Exception as exc:
            for s, r in ok:
                r["error"] = f"{phase}: {type(exc).__name__}: {exc}"
                try:
                    s.release()
                except Exception:
                    pass
            log(f"  {phase} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            return
        key, what = (("catchup", "catch-up") if phase == "catchup"
                     else (f"{phase}_catchup", f"{phase} catch-up"))
        for s, r in ok:
            lag, c = got[s.name]
            if lag:
                r[phase] = lag
                log(f"  {s.name} {phase}: {fmt(lag['rtt_ms'], 0)} ms ping; at {lag['rate']} "
                    f"tps lag p50 {fmt(lag['lag_p50'], 3)}s p99 {fmt(lag['lag_p99'], 3)}s")
            r[key] = c
            if c.get("supported"):
                log(f"  {s.name} {what} (released {c['released']}, "
                    f"{fmt(c['released_after_load_s'], 1)}s after the load): "
                    f"{c['backlog_txns']} txn backlog, drained in {fmt(c['drain_s'])}s, "
                    f"{fmt(c['rows_per_s'])} rows/s")
            else:
                log(f"  {s.name} {what}: n/a ({c['why']})")

    def save_logs(self, sysobj, tag):
        """A failed strait's daemon logs, kept in the output directory."""
        for d in getattr(sysobj, "d", {}).values():
            if os.path.exists(d.logfile):
                shutil.copy(d.logfile, os.path.join(self.out, f"straitd-{tag}-{d.site}.log"))

    def stop_system(self, sysobj):
        """Stops a system and drops its target database."""
        try:
            sysobj.stop()
        except Exception as exc:
            log(f"  stopping {sysobj.name}: {exc}")
        try:
            self.dst.sql(f'DROP DATABASE IF EXISTS "{sysobj.tgt_db}" WITH (FORCE)')
        except Exception as exc:
            log(f"  dropping {sysobj.tgt_db}: {exc}")

    def finish(self, sysobj, res):
        """Stops a system, drops its target and files its results (once)."""
        if sysobj.finished:
            return
        sysobj.finished = True
        if "error" in res:
            self.save_logs(sysobj, f"r{res['rep'] + 1}")   # the daemons' side of the story
        d = sysobj.daemons()
        # the peak of the whole repetition: the bigtxn phase resets VmHWM and
        # keeps the peak from before
        res["straitd"] = {name: {"peak_rss": max((v for v in (peak_rss(pid),
                                                             sysobj.peak_before.get(name))
                                                  if v), default=None),
                                 "cpu_s": cpu_seconds(pid)}
                          for name, pid in d.items()}
        self.stop_system(sysobj)
        self.results[sysobj.name].append(res)

    def run_rep(self, rep):
        """One repetition: the first system's start (its syncs), steady,
        thin links and bigtxn; the second's start; then, both side by side,
        the joint phases (catch-up, far, lossy); the first stops; the
        second's steady, thin links and bigtxn. Only the joint phases have
        both systems at work at once. In a repetition past CLEAN_REPS only
        the far-link sync, the thin links, far and lossy run."""
        order = (Native, Strait) if rep % 2 == 0 else (Strait, Native)
        clean = rep < self.p["clean_reps"]
        runs = [(cls(self, rep), {"rep": rep, "clean": clean}) for cls in order]
        (first, r1), (second, r2) = runs
        joint = self.joint_phases(clean)
        try:
            log(f"rep {rep + 1}: {first.name}, then {second.name}"
                + ("" if clean else " (the WAN phases only)"))
            self.attempt(first, r1, lambda: self.run_start(first, r1, rep, clean))
            self.attempt(first, r1, lambda: self.run_measures(first, r1, rep, clean))
            if not joint or "error" in r1:
                self.finish(first, r1)
            self.attempt(second, r2, lambda: self.run_start(second, r2, rep, clean))
            for phase in joint:
                self.run_joint([(s, r) for s, r in runs if not s.finished], rep, phase)
            self.finish(first, r1)
            self.attempt(second, r2, lambda: self.run_measures(second, r2, rep, clean))
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
            need = self.rep_estimates[rep]
            if rep > 0 and left < need:
                self.skipped.append(f"repetitions {rep + 1}-{self.p['reps']}: "
                                    f"{left:.0f}s left of the time limit, ~{need:.0f}s needed")
                log(f"skipping {self.skipped[-1]}")
                break
            self.run_rep(rep)
            log(f"elapsed {(time.monotonic() - self.started) / 60:.1f} min "
                f"(budget {total / 60:.1f} min)")
        if "catchup" in self.p["phases"]:
            self.run_catchup()
            log(f"elapsed {(time.monotonic() - self.started) / 60:.1f} min "
                f"(budget {total / 60:.1f} min)")
        if "bigtxn" in self.p["phases"]:
            # every system stopped: no target is left to need it
            self.src.sql("DROP TABLE IF EXISTS bench_big", dbname=SRC_DB)
        if self.has_sync_scale():
            self.sync_scale_result = syncscale.SyncScale(self, Native, Strait, log).run()
        if "spool" in self.p["phases"]:
            self.run_spool()

    def run_catchup(self):
        """The catch-up figure, once after the repetitions: both systems set
        up (their initial syncs), then CATCHUP_REPS times both held while the
        backlog generator commits CATCHUP_TXNS tpcb-like transactions, and
        each released alone (which goes first alternates) and its drain
        timed, with the CPU its apply used on the target."""
        systems = [Native(self, "cu"), Strait(self, "cu")]
        started = []
        try:
            for s in systems:
                res = {}
                self.run_sync(s, res)
                started.append(s)
            for i in range(self.p["catchup_reps"]):
                order = systems if i % 2 == 0 else systems[::-1]
                # each run from tables as a maintained database has them: the
                # previous run's 300,000 updates of 20 branch rows leave dead
                # versions autovacuum may or may not have reached by now
                self.vacuum([SRC_DB], [s.tgt_db for s in systems])
                self.log_state([s.tgt_db for s in systems])
                log(f"  catch-up {i + 1}/{self.p['catchup_reps']}: "
                    f"{' and '.join(s.name for s in order)} held while "
                    f"{self.p['catchup_txns']} transactions commit, released one after the other")
                got = self.phase_catchup(order, i, txns=self.p["catchup_txns"])
                for s in systems:
                    c = dict(got.get(s.name) or {"supported": False, "why": "not measured"},
                             rep=i)
                    self.catchup_results[s.name].append(c)
                    if c.get("supported"):
                        log(f"  {s.name} catch-up (released {c['released']}): "
                            f"{c['backlog_txns']} txn drained in {fmt(c['drain_s'])}s, "
                            f"{fmt(c['rows_per_s'])} rows/s, apply CPU "
                            f"{fmt(c['apply_cpu_per_1000_txns'])}s per 1,000 txn")
        except Exception as exc:
            log(f"  catch-up failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            self.catchup_error = f"{type(exc).__name__}: {exc}"
        finally:
            for s in started:
                self.stop_system(s)

    def has_sync_scale(self):
        return any(ph in self.p["phases"] for ph in ("manytables", "bigtable"))


def parallel_delta(before, after):
    """Segments strait's parallel apply dealt over a drain: side by side
    and to one session (hot rows), and its share of hot segments at the end."""
    if not before or not after:
        return None
    segs = after["segments"] - before["segments"]
    one = after["one_session_segments"] - before["one_session_segments"]
    return {"workers": after["workers"], "segments": segs, "one_session_segments": one,
            "side_by_side_segments": segs - one, "hot_share": after["hot_share"]}


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
                   help="one short repetition of every phase but spool (~6 minutes)")
    g.add_argument("--smoke", dest="profile", action="store_const", const="smoke",
                   help="one very short repetition of sync and steady (a test of the script)")
    ap.set_defaults(profile="full")
    ap.add_argument("--scale", type=int, help="pgbench scale of the initial syncs")
    ap.add_argument("--reps", type=int, help="repetitions of each phase")
    ap.add_argument("--clean-reps", type=int, dest="clean_reps",
                    help="repetitions with the clean phases (sync, steady, catchup, bigtxn)")
    ap.add_argument("--steady", type=int, help="seconds of pgbench in the steady phase")
    ap.add_argument("--backlog", type=int, help="seconds the link is held in catch-up")
    ap.add_argument("--thin", type=int, help="seconds of each pgbench window on a thin link")
    ap.add_argument("--thin-rate", type=int, dest="thin_rate",
                    help="fixed offered load on the thin links (tps at 2 Mbit/s, scaled)")
    ap.add_argument("--wan", type=int, help="seconds of the far and lossy lag windows")
    ap.add_argument("--wan-rate", type=int, dest="wan_rate",
                    help="fixed offered load on the far and lossy links (tps)")
    ap.add_argument("--hold", type=int, help="seconds the far and lossy links are held")
    ap.add_argument("--big-rows", type=int, dest="big_rows",
                    help="rows of the bigtxn phase's one INSERT")
    ap.add_argument("--catchup-reps", type=int, dest="catchup_reps",
                    help="runs of the catch-up (after the repetitions)")
    ap.add_argument("--catchup-txns", type=int, dest="catchup_txns",
                    help="transactions of each catch-up's backlog")
    ap.add_argument("--apply-workers", type=int, dest="apply_workers",
                    help="strait's target sessions applying side by side (streams[].apply_workers)")
    ap.add_argument("--phases",
                    help="comma-separated subset of sync,steady,catchup,thin,thin512,far,lossy,"
                         "farsync,bigtxn,spool,manytables,bigtable")
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
    phases = set(args.phases.split(",") if args.phases else PROFILES[args.profile]["phases"])
    unknown = phases - set(PROFILES["full"]["phases"]) - {"manytables", "bigtable"}
    if unknown:
        print(f"bench: unknown phases: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if phases & {"far", "lossy", "farsync"} and not os.access(benchlib.IMPAIR_TOOL, os.X_OK):
        print(f"bench: {benchlib.IMPAIR_TOOL} is missing: run make tools first", file=sys.stderr)
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
