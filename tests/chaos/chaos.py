#!/usr/bin/python3
"""Chaos test: a ledger workload on the primary (one-row transactions, and
every few seconds one of thousands of rows with wide values that spans
several batches) while a seeded random schedule of faults strikes (kill -9
of either straitd, the veth under the tunnel down and up, the target and the
source PostgreSQL restarted fast or immediately, wireguard-go killed, the
stream held by rate 0 and released, the target's apply blocked by a lock or
slowed by a trigger, both daemons restarted while the sink holds a backlog
it cannot apply, and now and then one large transaction sent at a limited
rate with both ends restarted inside it). After each round the target must
converge to exactly the source: every ledger id once, the same balances,
the same sorted table contents.

    make chaos [CHAOS_ROUNDS=20] [CHAOS_SEED=N] [CHAOS_SITES=3] [CHAOS_APPLY_WORKERS=1]

The sinks apply with three sessions side by side (streams[].apply_workers)
unless told otherwise.

Two sites in network namespaces joined by a bridge, straitd at each with a
userspace WireGuard tunnel (wireguard-go), a PostgreSQL server per site; all
set up once and reused by every round, and removed by pid at the end (also on
failure and Ctrl-C). A round's fault plan depends only on the seed and the
round number, so a failing seed replays the same faults. With three sites the
stream goes from onprem to cloud and edge (fan-out): the daemon and link
faults strike any site, the target's faults strike cloud, and both targets
must converge.
"""

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import table_dump, wait_until  # noqa: E402

import faults  # noqa: E402
from faults import ChaosFailure  # noqa: E402
from ledger import ACCOUNTS, INITIAL_BALANCE, Ledger, create_schema  # noqa: E402

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
TABLES = ("ledger", "accounts")       # compared as sorted dumps
DIGEST_TABLES = ("bulk",)             # large: compared by a digest computed in PostgreSQL
APPLY_WORKERS = 3                     # the faults strike a parallel apply


def log(msg):
    print(msg, flush=True)


class World:
    """Everything a run sets up once: namespaces, servers, cluster, daemons."""

    def __init__(self, workdir, large_rows=faults.LARGE_ROWS, n_sites=2, via=False,
                 apply_workers=APPLY_WORKERS):
        self.names = ("onprem", "cloud", "edge")[:n_sites]
        self.apply_workers = apply_workers  # the sinks' parallel apply
        self.via = via                    # edge's copy goes through cloud (three sites)
        self.workdir = workdir
        self.large_rows = large_rows      # rows of a large transaction fault; 0: none
        self.bulk_rows = 0                # rows the large transactions committed
        self.ledger = None                # the load, which some faults pause
        self.net = None
        self.src = self.dst = None
        self.dsts = []                    # every target; dst is the first
        self.daemons = {}
        self.cluster = None
        self.sites = []

    def setup(self):
        harness.test_user()
        self.net = harness.SiteNetwork(len(self.names), tag=f"c{os.getpid() % 10000}")
        self.sites = self.net.sites
        self.src = harness.PgServer("chaos-onprem")
        self.dsts = [harness.PgServer(f"chaos-{name}") for name in self.names[1:]]
        self.dst = self.dsts[0]
        for pg in [self.src] + self.dsts:
            pg.start()
            create_schema(pg)
        to = list(self.names[1:]) if len(self.names) > 2 else "cloud"
        stream = {"name": "app", "from": "onprem", "to": to, "publication": "strait_app",
                  "initial_sync": False, "schedule": [{"rate": "unlimited"}],
                  "apply_workers": self.apply_workers}
        if self.via:
            stream["via"] = {"edge": "cloud"}
        self.cluster = harness.Cluster(self.workdir,
                                       harness.tunnel_sites([self.src] + self.dsts, self.sites,
                                                            names=self.names),
                                       [stream], backend="userspace")
        for name in self.names:
            self.daemons[name] = harness.Straitd(self.cluster.path(name), site=name,
                                                 netns=self.sites[self.names.index(name)].ns)
            self.start_daemon(name)
        wait_until(self.streaming, 90, interval=0.2, what="the source to stream over the tunnel")

    def pg(self, which):
        return self.src if which == "source" else self.dst

    def start_daemon(self, name):
        self.daemons[name].start(timeout=45)

    def streaming(self):
        sts = [r for r in self.daemons["onprem"].status()["replication"] if r["role"] == "source"]
        return len(sts) == len(self.names) - 1 and all(
            st.get("link_up") and (st.get("streaming") or st.get("relayed_by")) for st in sts)

    def set_schedule(self, rules):
        for name in self.names:
            _, cfg = self.cluster.host(name)
            cfg["streams"][0]["schedule"] = rules
            self.cluster.update(name, cfg)

    def logs(self):
        out = [d.logfile for d in self.daemons.values()]
        out += [pg.logfile for pg in [self.src] + self.dsts if pg]
        return out

    def keep_logs(self, dest):
        """Copies the servers' logs next to the daemons' (servers' dirs go)."""
        for pg in [self.src] + self.dsts:
            if pg and os.path.exists(pg.logfile):
                shutil.copy(pg.logfile, os.path.join(dest, f"{pg.name}.postgres.log"))

    def stop_daemons(self):
        """SIGTERM to each straitd; False when one had to be killed."""
        clean = True
        for d in self.daemons.values():
            if d.alive():
                try:
                    d.stop(timeout=10)
                except harness.HarnessError:
                    clean = False          # stop() killed it
        return clean

    def cleanup(self):
        self.stop_daemons()
        for pg in [self.src] + self.dsts:
            if pg:
                pg.cleanup()
        if self.net:
            self.net.cleanup()


# --------------------------------------------------------------------------
# Rounds

def plan_round(world, rng, span):
    """1-3 faults with start offsets and durations inside span seconds; two
    faults that share a resource never overlap."""
    planned = []
    for _ in range(rng.randint(1, 3)):
        f = faults.make_fault(world, rng)
        start = rng.uniform(1.0, span)
        duration = rng.uniform(0.5, 6.0)
        for other, ostart, oend in sorted(planned, key=lambda p: p[1]):
            if set(other.resources) & set(f.resources) and start < oend and ostart < start + duration:
                start = oend + rng.uniform(0.5, 2.0)
        planned.append((f, start, start + duration))
    return sorted(planned, key=lambda p: p[1])


def run_faults(planned, t0):
    """Injects and heals each fault at its offset from t0; returns the log lines."""
    events = []
    for f, start, end in planned:
        events.append((start, 0, f))
        events.append((end, 1, f))
    events.sort(key=lambda e: (e[0], e[1]))
    lines = []
    last = t0
    for at, heal, f in events:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        offset = time.monotonic() - t0
        try:
            (f.heal if heal else f.inject)()
        except ChaosFailure:
            raise
        except Exception as e:
            raise ChaosFailure(f"could not {'heal' if heal else 'inject'} {f.describe()}: {e}")
        line = f"  +{offset:6.2f}s {'heal  ' if heal else 'inject'} {f.describe()}"
        log(line)
        lines.append(line)
        last = time.monotonic()
    return lines, last


def fingerprint(pg):
    return pg.sql("SELECT (SELECT count(*) FROM ledger), (SELECT coalesce(sum(id), 0) FROM ledger), "
                  "(SELECT array_agg(balance ORDER BY id) FROM accounts), "
                  "(SELECT count(*) FROM bulk), (SELECT coalesce(sum(id), 0) FROM bulk)")[0]


def table_digest(pg, table):
    return pg.sql(f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) "
                  f"FROM {table} t")[0]


def wait_converged(world, timeout):
    """Seconds until the target's tables equal the source's, compared as
    sorted dumps once a cheap fingerprint agrees."""
    t0 = time.monotonic()

    def same_as(dst):
        if fingerprint(world.src) != fingerprint(dst):
            return False
        return (all(table_dump(world.src, t) == table_dump(dst, t) for t in TABLES) and
                all(table_digest(world.src, t) == table_digest(dst, t) for t in DIGEST_TABLES))
    try:
        wait_until(lambda: all(same_as(dst) for dst in world.dsts), timeout, interval=0.25,
                   what="every target to equal the source")
    except TimeoutError:
        src, dst = fingerprint(world.src), [fingerprint(d) for d in world.dsts]
        raise ChaosFailure(f"no convergence within {timeout:.0f}s: source (rows, sum of ids, "
                           f"balances, bulk rows, sum of their ids) {src}, targets {dst}")
    return time.monotonic() - t0


def check_ledger(world, ledger):
    """What the writers know against the source, then the target against both."""
    found, lost = ledger.resolve_unknown()
    src_ids = {r[0] for r in world.src.sql("SELECT id FROM ledger")}
    missing = ledger.committed - src_ids
    if missing:
        raise ChaosFailure(f"{len(missing)} committed ids missing on the source itself "
                           f"(e.g. {sorted(missing)[:5]})")
    extra = src_ids - ledger.committed
    if extra:
        raise ChaosFailure(f"{len(extra)} ids on the source that no writer committed "
                           f"(e.g. {sorted(extra)[:5]})")
    for dst in world.dsts:
        dst_ids = {r[0] for r in dst.sql("SELECT id FROM ledger")}
        if dst_ids != src_ids:
            raise ChaosFailure(f"target {dst.name} ledger differs: {len(src_ids - dst_ids)} lost "
                               f"(e.g. {sorted(src_ids - dst_ids)[:5]}), "
                               f"{len(dst_ids - src_ids)} extra (e.g. {sorted(dst_ids - src_ids)[:5]})")
    for pg, where in [(world.src, "source")] + [(d, f"target {d.name}") for d in world.dsts]:
        total = pg.sql("SELECT sum(balance) FROM accounts")[0][0]
        if total != ACCOUNTS * INITIAL_BALANCE:
            raise ChaosFailure(f"sum of balances on the {where} is {total}, "
                               f"not {ACCOUNTS * INITIAL_BALANCE}")
        # each balance is the opening one plus what the ledger moved: a
        # transaction applied in part would break this
        bad = pg.sql("SELECT a.id, a.balance, %s + coalesce(i.s, 0) - coalesce(o.s, 0) "
                     "FROM accounts a "
                     "LEFT JOIN (SELECT to_acct, sum(amount) s FROM ledger GROUP BY 1) i "
                     "ON i.to_acct = a.id "
                     "LEFT JOIN (SELECT from_acct, sum(amount) s FROM ledger GROUP BY 1) o "
                     "ON o.from_acct = a.id "
                     "WHERE a.balance <> %s + coalesce(i.s, 0) - coalesce(o.s, 0)",
                     (INITIAL_BALANCE, INITIAL_BALANCE))
        if bad:
            raise ChaosFailure(f"balances on the {where} disagree with its ledger: {bad[:5]}")
        bulk = pg.sql("SELECT count(*), count(DISTINCT id) FROM bulk")[0]
        if bulk != (world.bulk_rows, world.bulk_rows):
            raise ChaosFailure(f"bulk on the {where} has {bulk[0]} rows ({bulk[1]} ids), the "
                               f"large transactions committed {world.bulk_rows}")
    return len(src_ids), found, lost


def check_sync_now_closes(world, timeout=30.0):
    """A sync-now window that waits for the spool to drain closes once the
    load has stopped and the target has everything (DESIGN.md: two ticks of
    a drained spool)."""
    d = world.daemons["onprem"]

    def schedule():
        return json.loads(d.ctl("schedule", "--json").stdout)["streams"][0]["schedule"]
    if not schedule()["sync_now_until_drained"]:
        return
    t0 = time.monotonic()
    try:
        wait_until(lambda: not schedule()["sync_now_until_drained"], timeout, interval=0.2,
                   what="the sync-now window to close on a drained spool")
    except TimeoutError as e:
        src = next(r for r in d.status()["replication"] if r["role"] == "source")
        raise ChaosFailure(f"{e}: schedule {schedule()}; source status {json.dumps(src)}")
    log(f"  sync-now window closed {time.monotonic() - t0:.1f}s after convergence")


def check_logs(world):
    for path in world.logs():
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        for pat in SANITIZER_PATTERNS:
            i = text.find(pat)
            if i >= 0:
                raise ChaosFailure(f"sanitizer report in {path}:\n{text[max(0, i - 200):i + 3000]}")


def check_daemons(world):
    for name, d in world.daemons.items():
        if not d.alive():
            raise ChaosFailure(f"straitd@{name} exited by itself (status {d.proc.returncode}); "
                               f"log {d.logfile}")


def run_round(world, ledger, seed, rnd, span, timeout):
    rng = random.Random(f"{seed}:{rnd}")
    planned = plan_round(world, rng, span)
    log(f"round {rnd}: {len(planned)} fault(s)")
    ledger.start()
    t0 = time.monotonic()
    try:
        _, last_heal = run_faults(planned, t0)
        # a little load after the last heal, so recovery happens under load
        time.sleep(max(0.0, t0 + max(e for _, _, e in planned) + 1.0 - time.monotonic()))
    finally:
        ledger.stop()
    load_s = time.monotonic() - t0
    check_daemons(world)
    took = wait_converged(world, timeout)
    since_heal = time.monotonic() - last_heal
    check_sync_now_closes(world)
    rows, found, lost = check_ledger(world, ledger)
    check_daemons(world)
    check_logs(world)
    log(f"round {rnd}: converged in {took:.2f}s after the load stopped ({since_heal:.2f}s "
        f"after the last heal, {load_s:.1f}s of load); "
        f"{rows} ledger rows ({ledger.big_rows} in {ledger.big_txns} multi-batch transactions), "
        f"{found}+{lost} unknown commits (happened+did not), "
        f"{ledger.errors} writer errors so far")
    return took, since_heal


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--span", type=float, default=12.0,
                    help="faults start within this many seconds of a round's start")
    ap.add_argument("--converge-timeout", type=float, default=180.0)
    ap.add_argument("--workdir", default=None, help="where configs and logs go")
    ap.add_argument("--large-rows", type=int, default=faults.LARGE_ROWS,
                    help="rows of the large transaction fault (0: never drawn)")
    ap.add_argument("--sites", type=int, choices=(2, 3), default=2,
                    help="3: the stream fans out from onprem to cloud and edge")
    ap.add_argument("--via", action="store_true",
                    help="with --sites 3: edge's copy goes through cloud (streams[].via)")
    ap.add_argument("--apply-workers", type=int, default=APPLY_WORKERS,
                    help="the sinks' target sessions applying side by side (1: one)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        log("chaos: needs root (network namespaces, tunnels)")
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    log(f"chaos: seed {seed}, {args.rounds} rounds, {args.sites} sites"
        f"{' (edge through cloud)' if args.via else ''}, {args.apply_workers} apply sessions "
        f"per sink, straitd {harness.STRAITD}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="strait-chaos-")
    os.makedirs(workdir, exist_ok=True)
    if args.via and args.sites != 3:
        log("chaos: --via needs --sites 3")
        return 2
    world = World(workdir, large_rows=args.large_rows, n_sites=args.sites, via=args.via,
                  apply_workers=args.apply_workers)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    ok = interrupted = False
    times = []
    rnd = 0
    try:
        world.setup()
        ledger = world.ledger = Ledger(world.src, seed=seed)
        for rnd in range(1, args.rounds + 1):
            times.append(run_round(world, ledger, seed, rnd, args.span, args.converge_timeout))
        # a clean exit, and what the sanitizers say at exit (leaks)
        if not world.stop_daemons():
            raise ChaosFailure("a straitd did not stop on SIGTERM within 10 s")
        check_logs(world)
        ok = True
        took = [t for t, _ in times]
        log(f"chaos: {args.rounds} rounds passed with seed {seed}; convergence after the load "
            f"stopped: longest {max(took):.2f}s, mean {sum(took) / len(took):.2f}s; after the "
            f"last heal: longest {max(h for _, h in times):.2f}s")
    except ChaosFailure as e:
        log(f"chaos: FAILED in round {rnd} (seed {seed}): {e}")
    except KeyboardInterrupt as e:
        log(f"chaos: interrupted in round {rnd} ({e})")
        interrupted = True
    except Exception as e:
        log(f"chaos: FAILED in round {rnd} (seed {seed}): {type(e).__name__}: {e}")
    finally:
        if not ok:
            try:
                world.keep_logs(workdir)
            except OSError:
                pass
        world.cleanup()
    if not ok:
        if not interrupted:
            log(f"chaos: reproduce with: make chaos CHAOS_SEED={seed} CHAOS_ROUNDS={max(rnd, 1)}")
        log(f"chaos: logs kept in {workdir}:")
        for top, _, files in os.walk(workdir):
            for name in sorted(files):
                if name.endswith(".log"):
                    log(f"  {os.path.join(top, name)}")
        return 1
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
