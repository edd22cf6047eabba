"""The chaos test's faults: each strikes one part of the two-site world and
heals it again. A fault names the resources it touches, so that two faults
that overlap in time never fight over the same daemon, server or link.

Every choice a fault makes (which table, how long, which signal) is drawn
from the round's generator when the fault is made, so a seed replays the
same plan.
"""

import json
import os
import re
import signal
import time

import psycopg

from harness import wait_until


class ChaosFailure(Exception):
    """strait did something it must not (or a fault could not be healed)."""


class Fault:
    """kind: the fault's name; resources: what it holds while active."""

    kind = "?"
    resources = ()

    def __init__(self, world, rng):
        self.world = world
        self.detail = ""

    def inject(self):
        raise NotImplementedError

    def heal(self):
        raise NotImplementedError

    def describe(self):
        return self.kind + (f" ({self.detail})" if self.detail else "")


class KillStraitd(Fault):
    """kill -9 of one site's straitd; healed by starting it again."""

    def __init__(self, world, rng, site):
        super().__init__(world, rng)
        self.site = site
        self.kind = f"kill -9 straitd@{site}"
        self.resources = (f"daemon:{site}",)

    def inject(self):
        d = self.world.daemons[self.site]
        self.detail = f"pid {d.pid}"
        d.kill()

    def heal(self):
        self.world.start_daemon(self.site)


class WanDown(Fault):
    """The veth under the tunnel taken down, then up."""

    def __init__(self, world, rng, index):
        super().__init__(world, rng)
        self.index = index
        self.kind = f"veth down@{world.names[index]}"
        self.resources = ("wan",)

    def inject(self):
        self.world.sites[self.index].set_wan(False)

    def heal(self):
        self.world.sites[self.index].set_wan(True)


class RestartPg(Fault):
    """A PostgreSQL server stopped (fast or immediate), started again at heal."""

    def __init__(self, world, rng, which, mode):
        super().__init__(world, rng)
        self.which = which              # "source" or "target"
        self.mode = mode
        self.kind = f"{which} postgres stop -m {mode}"
        self.resources = (f"pg:{which}",)

    def inject(self):
        self.world.pg(self.which).stop(self.mode)

    def heal(self):
        self.world.pg(self.which).start()


class KillWireguardGo(Fault):
    """kill -9 of the wireguard-go that a straitd supervises; healed when
    that straitd runs a new one (a straitd that does not is a finding)."""

    RESTART_TIMEOUT = 60.0

    def __init__(self, world, rng, site):
        super().__init__(world, rng)
        self.site = site
        self.kind = f"kill -9 wireguard-go@{site}"
        self.resources = (f"daemon:{site}",)
        self.old_pid = None

    def inject(self):
        us = self.world.daemons[self.site].status()["tunnel"]["userspace"]
        self.old_pid = us["pid"]
        if not self.old_pid:
            raise ChaosFailure(f"straitd@{self.site} has no wireguard-go child to kill: {us}")
        self.detail = f"pid {self.old_pid}"
        os.kill(self.old_pid, signal.SIGKILL)

    def heal(self):
        d = self.world.daemons[self.site]

        def replaced():
            us = d.status()["tunnel"]["userspace"]
            return (us["state"] == "running" and us["pid"] and us["pid"] != self.old_pid
                    and os.path.exists(f"/proc/{us['pid']}"))
        t0 = time.monotonic()
        try:
            wait_until(replaced, self.RESTART_TIMEOUT, interval=0.2,
                       what=f"straitd@{self.site} to restart wireguard-go")
        except TimeoutError as e:
            us = d.status()["tunnel"]["userspace"] if d.alive() else "straitd not running"
            raise ChaosFailure(f"{e}; tunnel status: {us}")
        self.detail += (f", new pid {d.status()['tunnel']['userspace']['pid']}"
                        f" seen {time.monotonic() - t0:.1f}s into the heal")


class HoldStream(Fault):
    """The stream's schedule flipped to rate 0 (held) by a reload, and back
    to unlimited."""

    def __init__(self, world, rng):
        super().__init__(world, rng)
        self.kind = "schedule rate 0"
        self.resources = ("daemon:onprem", "daemon:cloud")
        self.heal_by = rng.choice(["reload", "sync-now"])

    def held(self):
        d = self.world.daemons["onprem"]
        return json.loads(d.ctl("schedule", "--json").stdout)["streams"][0]["schedule"]

    def wait_held(self, want):
        try:
            wait_until(lambda: self.held()["held"] == want, 15, interval=0.1,
                       what=f"the stream to be {'held' if want else 'sending'}")
        except TimeoutError as e:
            raise ChaosFailure(f"{e}: schedule {self.held()}")

    def inject(self):
        self.world.set_schedule([{"rate": 0}])
        self.world.daemons["onprem"].ctl("reload")
        if self.held()["sync_now_until_drained"]:
            # an earlier sync-now of this round has not seen the spool drained
            # under the load: it goes before the schedule (DESIGN.md), and the
            # round checks that it closes once the load stops
            self.detail = "a sync-now window is still open: not held yet"
            return
        self.wait_held(True)

    def heal(self):
        if self.heal_by == "sync-now":
            # a one-off window first (unlimited until drained), then the
            # schedule itself back to unlimited
            self.world.daemons["onprem"].ctl("sync-now", "app")
            self.wait_held(False)
        self.world.set_schedule([{"rate": "unlimited"}])
        self.world.daemons["onprem"].ctl("reload")
        self.wait_held(False)
        self.detail = f"healed by {self.heal_by}"


# --------------------------------------------------------------------------
# The target's apply held up, and restarts while the sink holds a backlog

REPLICATED = ("ledger", "accounts")


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def stream_status(d, role):
    return next(r for r in d.status()["replication"] if r["role"] == role)


def lock_table(pg, table):
    """A session on pg holding ACCESS EXCLUSIVE on table, in a transaction
    it keeps open: everything that touches the table waits behind it."""
    conn = psycopg.connect(pg.dsn(), autocommit=False)
    try:
        conn.execute("SET lock_timeout = '60s'")
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    except BaseException:
        conn.close()
        raise
    return conn


def unlock(conn):
    if conn is None:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        pass                # the server went away: so did the lock
    conn.close()


class LockTarget(Fault):
    """A session on the target database holding ACCESS EXCLUSIVE on a
    replicated table: the apply waits for it (every ledger transaction
    writes both tables), the sink's queue and the source's spool fill."""

    def __init__(self, world, rng):
        super().__init__(world, rng)
        self.table = rng.choice(REPLICATED)
        self.kind = f"target lock on {self.table}"
        self.resources = ("pg:target",)
        self.conn = None

    def inject(self):
        self.conn = lock_table(self.world.pg("target"), self.table)

    def heal(self):
        unlock(self.conn)
        self.conn = None


class SlowTarget(Fault):
    """A slow target: a row trigger on the target's ledger sleeps a few
    milliseconds per one-row transaction's row (the multi-batch ones pass),
    enabled ALWAYS so that it fires under the apply's
    session_replication_role = replica, then disabled."""

    def __init__(self, world, rng):
        super().__init__(world, rng)
        self.ms = rng.randint(2, 8)
        self.kind = f"slow target ({self.ms} ms a ledger row)"
        self.resources = ("pg:target",)

    def _run(self, *statements):
        with psycopg.connect(self.world.pg("target").dsn(), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '60s'")
            for sql in statements:
                conn.execute(sql)

    def inject(self):
        self._run("CREATE OR REPLACE FUNCTION chaos_slow() RETURNS trigger LANGUAGE plpgsql AS "
                  f"$$BEGIN IF NEW.memo IS NULL THEN PERFORM pg_sleep({self.ms / 1000.0}); "
                  "END IF; RETURN NEW; END$$",
                  "CREATE OR REPLACE TRIGGER chaos_slow BEFORE INSERT ON ledger "
                  "FOR EACH ROW EXECUTE FUNCTION chaos_slow()",
                  "ALTER TABLE ledger ENABLE ALWAYS TRIGGER chaos_slow")

    def heal(self):
        self._run("ALTER TABLE ledger DISABLE TRIGGER chaos_slow")


class RestartsWithBacklog(Fault):
    """The target's apply blocked by a lock while transactions pile up in
    the sink; then the primary goes quiet (the ledger's writers pause) and,
    once the sink has received everything and applied none of it, the
    source's straitd restarts (SIGTERM or kill -9) and the sink's is killed
    (-9). Healed by releasing the lock and starting the sink's straitd
    again: everything the sink held must still arrive, once."""

    BACKLOG_TIMEOUT = 20.0
    # More than one target transaction's worth (200 ledger transactions):
    # what the blocked apply already sent its session is committed by that
    # session once the lock goes, even with the sink's straitd gone; what
    # waits in the sink's queue exists nowhere else at the target's site.
    BACKLOG_BYTES = 1024 * 1024

    def __init__(self, world, rng):
        super().__init__(world, rng)
        self.table = rng.choice(REPLICATED)
        self.source_stop = rng.choice(["SIGTERM", "kill -9"])
        self.kind = f"restarts with a backlog at the sink (source {self.source_stop})"
        self.resources = ("daemon:onprem", "daemon:cloud", "pg:target", "pg:source", "wan")
        self.conn = None

    def inject(self):
        w = self.world
        source, sink = w.daemons["onprem"], w.daemons["cloud"]
        self.conn = lock_table(w.pg("target"), self.table)
        start = lsn_int(stream_status(sink, "sink")["received_lsn"])

        def backlog():
            st = stream_status(sink, "sink")
            received = lsn_int(st["received_lsn"])
            applied = lsn_int(st["apply"]["applied_lsn"])
            return (received > start and received - applied >= self.BACKLOG_BYTES and
                    (received, applied))
        try:
            received, applied = wait_until(backlog, self.BACKLOG_TIMEOUT, interval=0.1,
                                           what="a backlog at the sink")
            self.detail = f"{received - applied} bytes of WAL received and not applied"
        except TimeoutError:
            st = stream_status(sink, "sink")
            self.detail = (f"a backlog of {lsn_int(st['received_lsn']) - lsn_int(st['apply']['applied_lsn'])}"
                           f" bytes of WAL only")

        def all_received():
            sp = stream_status(source, "source")["spool"]
            return (sp["unsent_bytes"] == 0 and
                    lsn_int(stream_status(sink, "sink")["received_lsn"]) >= lsn_int(sp["end_lsn"]))
        w.ledger.pause()
        try:
            try:
                wait_until(all_received, 30, interval=0.1, what="the sink to receive everything")
            except TimeoutError:
                self.detail += ", not all of it received"
            if self.source_stop == "SIGTERM":
                source.stop()
            else:
                source.kill()
            w.start_daemon("onprem")
            try:
                wait_until(w.streaming, 60, interval=0.1, what="the source to stream again")
            except TimeoutError as e:
                raise ChaosFailure(f"{e}: source status "
                                   f"{json.dumps(stream_status(source, 'source'))}")
            sink.kill()
        finally:
            w.ledger.resume()

    def heal(self):
        unlock(self.conn)
        self.conn = None
        self.world.start_daemon("cloud")


# --------------------------------------------------------------------------
# One large transaction at a limited rate, both ends restarted inside it

LARGE_ROWS = 600000            # about 70 MB of changes
LARGE_RATE = "2MiB/s"
LARGE_MAX_RESUMES = 10


class LargeTransactionRestarts(Fault):
    """One INSERT of many rows of random values into bulk (600,000 rows are
    some 70 MB of changes, hundreds of batches), sent at a limited rate (the
    schedule changed by a reload) while the primary is otherwise quiet (the
    ledger's writers pause until the restarts are done); the source's
    straitd is killed (-9) and started again twice during the transfer, then
    the sink's once. Healed by the unlimited schedule again. The sink must
    not loop over the interrupted copies (at most a handful of resumes), and
    the round's check finds the rows there once."""

    def __init__(self, world, rng, rows=LARGE_ROWS):
        super().__init__(world, rng)
        self.rows = rows
        self.kind = f"large transaction at {LARGE_RATE} ({rows} rows), restarts inside it"
        self.resources = ("daemon:onprem", "daemon:cloud", "pg:target", "pg:source", "wan")
        self.mark = 0

    def resumes(self):
        log = self.world.daemons["cloud"].log_text()[self.mark:]
        return len(re.findall(r"to resume at", log))

    def check_loop(self):
        n = self.resumes()
        if n > LARGE_MAX_RESUMES:
            raise ChaosFailure(f"the sink loops over the large transaction: {n} resumes "
                               f"({self.detail})")

    def inject(self):
        w = self.world
        w.ledger.pause()
        try:
            self._inject()
        finally:
            w.ledger.resume()

    def _inject(self):
        w = self.world
        source, sink = w.daemons["onprem"], w.daemons["cloud"]
        self.mark = len(sink.log_text())
        try:
            wait_until(lambda: stream_status(source, "source")["spool"]["records"] == 0, 120,
                       interval=0.1, what="the spool to empty")
        except TimeoutError as e:
            raise ChaosFailure(f"{e}: source status {json.dumps(stream_status(source, 'source'))}")
        w.set_schedule([{"rate": LARGE_RATE}])
        source.ctl("reload")
        with psycopg.connect(w.src.dsn(), autocommit=True) as conn:
            with conn.transaction():
                first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM bulk").fetchone()[0]
                conn.execute("INSERT INTO bulk SELECT g, random(), md5(random()::text) || "
                             "md5(random()::text) FROM generate_series(%s::bigint, %s::bigint) g",
                             (first, first + self.rows - 1))
                before_commit = lsn_int(conn.execute(
                    "SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
        w.bulk_rows += self.rows
        spooled = {}

        def part_sent():
            """A fifth of the transaction went out in the source's current
            pass over it (the spool holds it alone; its cursor goes back to
            the Begin on a resume), or the sink loops."""
            if self.resumes() > LARGE_MAX_RESUMES:
                return True
            sp = stream_status(source, "source")["spool"]
            if lsn_int(sp["end_lsn"]) > before_commit:
                spooled.setdefault("bytes", sp["bytes"])
            # until the whole transaction is in the spool its size is not known
            need = spooled["bytes"] // 5 if "bytes" in spooled else 8 * 1024 * 1024
            return sp["bytes"] - sp["unsent_bytes"] >= need
        sent = []
        for victim in ("onprem", "onprem", "cloud"):
            try:
                wait_until(part_sent, 300, interval=0.1, what="a fifth of the transaction sent")
            except TimeoutError as e:
                raise ChaosFailure(f"{e}: source status "
                                   f"{json.dumps(stream_status(source, 'source'))}")
            self.check_loop()
            sp = stream_status(source, "source")["spool"]
            sent.append(f"{(sp['bytes'] - sp['unsent_bytes']) / 1e6:.0f}")
            size = (f"{spooled['bytes'] / 1e6:.0f} MB raw" if "bytes" in spooled
                    else "not yet whole in the spool")
            self.detail = f"{size}, restarts after {'/'.join(sent)} MB of a pass"
            w.daemons[victim].kill()
            w.start_daemon(victim)
            if victim == "onprem":
                wait_until(w.streaming, 60, interval=0.1, what="the source to stream again")

    def heal(self):
        self.world.set_schedule([{"rate": "unlimited"}])
        self.world.daemons["onprem"].ctl("reload")
        self.check_loop()
        self.detail += f", {self.resumes()} resumes so far"


# share of faults that are a large transaction (each takes a minute or more)
LARGE_SHARE = 0.04


def make_fault(world, rng):
    """One fault, chosen by rng among every kind the chaos test knows."""
    if rng.random() < LARGE_SHARE and world.large_rows:
        return LargeTransactionRestarts(world, rng, world.large_rows)
    choices = [
        lambda: KillStraitd(world, rng, "onprem"),
        lambda: KillStraitd(world, rng, world.names[1] if len(world.names) == 2
                            else rng.choice(world.names[1:])),
        lambda: WanDown(world, rng, rng.randrange(len(world.names))),
        lambda: RestartPg(world, rng, "target", rng.choice(["fast", "immediate"])),
        lambda: RestartPg(world, rng, "source", rng.choice(["fast", "immediate"])),
        lambda: KillWireguardGo(world, rng, rng.choice(world.names)),
        lambda: HoldStream(world, rng),
        lambda: LockTarget(world, rng),
        lambda: SlowTarget(world, rng),
        lambda: RestartsWithBacklog(world, rng),
    ]
    return rng.choice(choices)()
