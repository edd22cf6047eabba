"""Infrastructure of the benchmark (tests/bench/bench.py): the two sites and
the veth pair between them, the WireGuard tunnel native replication runs
through, the impaired WAN (a delay and loss relay any of the tunnels can be
moved through), CPU and memory bookkeeping from /proc, the lag sampler and
pgbench.

Everything that runs PostgreSQL or straitd comes from the integration
harness (tests/integration/harness.py); this module adds only what a
measurement needs. Whatever is started here is stopped by pid in cleanup().

Measurements are taken so that only replication crosses the veth: pgbench,
the samplers and every query of the bench use the servers' unix sockets,
which are file system objects and reach into the namespaces without a
network.
"""

import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
import impair  # noqa: E402
from harness import children, run, wait_until  # noqa: E402,F401

CLK_TCK = os.sysconf("SC_CLK_TCK")
IMPAIR_TOOL = impair.TOOL   # make tools
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------
# Two namespace sites joined by one veth pair

class VethPair:
    """Two network namespaces, each with one end of a veth pair (wan0),
    192.0.2.1 and 192.0.2.2. Offloads are off so the counters see the frames
    as they would cross a real wire (no 64 KiB super-frames)."""

    def __init__(self, tag):
        self.namespaces = []
        self.sites = []
        names = [f"sb{tag}a", f"sb{tag}b"]
        for ns in names:
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
        run(["ip", "link", "add", "name", "wan0", "netns", names[0], "type", "veth",
             "peer", "name", "wan0", "netns", names[1]])
        for i, ns in enumerate(names):
            site = harness.Site(ns, "wan0", f"192.0.2.{i + 1}")
            site.run(["ip", "link", "set", "lo", "up"])
            site.run(["ip", "addr", "add", f"{site.wan_ip}/24", "dev", "wan0"])
            site.run(["ip", "link", "set", "wan0", "up"])
            site.run(["ethtool", "-K", "wan0", "tso", "off", "gso", "off", "gro", "off"])
            self.sites.append(site)

    def offloads(self):
        """The offload settings as ethtool reports them (for the record)."""
        out = self.sites[0].run(["ethtool", "-k", "wan0"]).stdout
        keep = ("tcp-segmentation-offload", "generic-segmentation-offload",
                "generic-receive-offload")
        return {line.split(":")[0].strip(): line.split(":")[1].strip()
                for line in out.splitlines() if line.split(":")[0].strip() in keep}

    def counters(self):
        """(rx_bytes, tx_bytes, rx_packets, tx_packets) of site 0's veth end:
        every frame either way."""
        base = f"/sys/class/net/{self.sites[0].wan_if}/statistics"
        out = self.sites[0].run(["cat"] + [f"{base}/{n}" for n in
                                           ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")])
        return tuple(int(x) for x in out.stdout.split())

    def shape(self, rate="10mbit"):
        """A token bucket on both ends, so each direction is limited to rate."""
        for s in self.sites:
            s.run(["tc", "qdisc", "replace", "dev", "wan0", "root", "tbf", "rate", rate,
                   "burst", "32kbit", "latency", "400ms"])

    def unshape(self):
        for s in self.sites:
            s.run(["tc", "qdisc", "del", "dev", "wan0", "root"], check=False)

    def cleanup(self):
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces = []


# --------------------------------------------------------------------------
# The tunnel native replication uses: wireguard-go, as straitd runs it

class WgTunnel:
    """wireguard-go in each site (foreground, our child), configured with wg:
    tunnel addresses 10.78.0.1 and .2, UDP port 51821, keepalive 25 s (as
    strait's default), MTU 1420 (wireguard-go's default, what strait
    computes for a 1500-byte veth)."""

    def __init__(self, pair, tag, workdir, port=51821, subnet="10.78.0"):
        self.procs = []
        self.ifnames = []
        self.addresses = []
        self.port = port
        keys = []
        for i in range(2):
            priv = run(["wg", "genkey"]).stdout.strip()
            pub = run(["wg", "pubkey"], input=priv + "\n").stdout.strip()
            path = os.path.join(workdir, f"wg{i}.key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(priv + "\n")
            keys.append((path, pub))
        self.pubkeys = [pub for _, pub in keys]
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        for i, site in enumerate(pair.sites):
            # UAPI sockets are shared by all namespaces: a name of our own
            ifname = f"bwg{tag}{i}"[:15]
            log = open(os.path.join(workdir, f"{ifname}.log"), "w")
            self.procs.append(site.popen(["wireguard-go", "-f", ifname], stdout=log,
                                         stderr=subprocess.STDOUT, env=env))
            log.close()
            self.ifnames.append(ifname)
            sock = f"/var/run/wireguard/{ifname}.sock"
            wait_until(lambda: os.path.exists(sock), 10, what=f"{ifname}'s UAPI socket")
        for i, site in enumerate(pair.sites):
            peer = pair.sites[1 - i]
            ifname = self.ifnames[i]
            addr = f"{subnet}.{i + 1}"
            self.addresses.append(addr)
            site.run(["wg", "set", ifname, "listen-port", str(port), "private-key", keys[i][0],
                      "peer", keys[1 - i][1], "endpoint", f"{peer.wan_ip}:{port}",
                      "allowed-ips", f"{subnet}.{2 - i}/32", "persistent-keepalive", "25"])
            site.run(["ip", "addr", "add", f"{addr}/24", "dev", ifname])
            site.run(["ip", "link", "set", ifname, "up"])
        # the first handshake, so the first measurement does not pay for it
        wait_until(lambda: pair.sites[1].run(["ping", "-c", "1", "-W", "1", self.addresses[0]],
                                             check=False).returncode == 0,
                   15, what="a ping through the native tunnel")

    @property
    def pids(self):
        return [p.pid for p in self.procs if p.poll() is None]

    def path(self):
        return WgPath("native", self.ifnames, self.pubkeys, self.port, self.addresses)

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()      # our child: wait() reaps it (kill_pid would see a zombie)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []


# --------------------------------------------------------------------------
# An impaired WAN: tests/tools/udp_impair carries the tunnels between the sites

class WgPath:
    """One WireGuard tunnel between the two sites of a VethPair: each end's
    interface and public key, and tunnel address (site a first), and the
    UDP port both ends listen on."""

    def __init__(self, name, ifnames, pubkeys, port, addresses):
        self.name = name
        self.ifnames = list(ifnames)
        self.pubkeys = list(pubkeys)
        self.port = port
        self.addresses = list(addresses)


class Impairment:
    """udp_impair in site a, on site a's veth address, with a delay, jitter
    and loss each way (the kernel has no netem), for the tunnels of the
    given ports.

    For each port it listens on two ports of its own: one stands for site b
    (site a's WireGuard sends there, the relay forwards across the veth to
    site b), the other for site a (site b's WireGuard sends there across the
    veth, the relay forwards to site a over loopback). Every datagram goes
    through the relay once and crosses the veth once, so the veth's counters
    and its qdisc see what they see without it, and the delay and the loss
    apply once each way. route() points both ends of a running tunnel at the
    relay with `wg set` (WireGuard roams to the address a packet comes from,
    so once both ends send to the relay, every packet goes through it);
    endpoints() gives the same addresses for a config, for a tunnel not
    started yet. stop() stops the relay first, so nothing it still holds
    arrives late and lures an end back to it, then points the ends straight
    at each other again. Everything waits a bounded time; the relay is our
    child, stopped by its pid."""

    BASE_PORT = 40000

    def __init__(self, pair, ports, workdir, delay_ms=0, jitter_ms=0, loss_pct=0, seed=1,
                 tag="wan"):
        self.pair = pair
        self.settings = {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss_pct": loss_pct,
                         "seed": seed}
        a, b = pair.sites
        self.relay_ends = {}     # port: (stands for site a, stands for site b)
        maps = []
        for k, port in enumerate(ports):
            for_b = f"{a.wan_ip}:{self.BASE_PORT + 2 * k}"
            for_a = f"{a.wan_ip}:{self.BASE_PORT + 2 * k + 1}"
            maps += [(for_b, f"{b.wan_ip}:{port}"), (for_a, f"{a.wan_ip}:{port}")]
            self.relay_ends[port] = (for_a, for_b)
        self.routed = {}         # path name: WgPath, to point back at each other
        self.stats = None
        self.relay = impair.ImpairProcess(
            a.ns, maps, delay_ms=delay_ms, jitter_ms=jitter_ms, loss_pct=loss_pct, seed=seed,
            logfile=os.path.join(workdir, f"udp_impair-{tag}.log"))

    @property
    def pid(self):
        return self.relay.pid

    def endpoints(self, port):
        """(site a's endpoint, site b's endpoint) as the relay stands for
        them: what each site's config gives as the other's address reaches
        it through the relay."""
        return self.relay_ends[port]

    def _peer_endpoint(self, i, path):
        out = self.pair.sites[i].run(["wg", "show", path.ifnames[i], "endpoints"]).stdout
        for line in out.splitlines():
            key, _, ep = line.partition("\t")
            if key == path.pubkeys[1 - i]:
                return ep.strip()
        return None

    def _set(self, path, ends):
        """Site i's peer endpoint to ends[i]."""
        for i, site in enumerate(self.pair.sites):
            site.run(["wg", "set", path.ifnames[i], "peer", path.pubkeys[1 - i],
                      "endpoint", ends[i]])

    def _via_relay(self, path):
        """Both ends send to the relay: site a to its own veth address (the
        relay's), site b to an address of site a other than its WireGuard
        port."""
        a, b = self.pair.sites
        ep_a, ep_b = self._peer_endpoint(0, path), self._peer_endpoint(1, path)
        return (ep_a is not None and ep_a.startswith(a.wan_ip + ":")
                and ep_b is not None and ep_b.startswith(a.wan_ip + ":")
                and ep_b != f"{a.wan_ip}:{path.port}")

    def _direct(self, path):
        a, b = self.pair.sites
        return (self._peer_endpoint(0, path) == f"{b.wan_ip}:{path.port}"
                and self._peer_endpoint(1, path) == f"{a.wan_ip}:{path.port}")

    def route(self, path, timeout=15):
        """Moves a running tunnel through the relay (a tunnel whose config
        already names the relay is only checked). A packet one end sent
        straight before the other was moved can make it roam back: each try
        sets both and checks 0.3 s later that both still send to the relay."""
        for_a, for_b = self.relay_ends[path.port]

        def moved():
            if not self._via_relay(path):
                self._set(path, (for_b, for_a))
                time.sleep(0.3)
            return self._via_relay(path)
        self.routed[path.name] = path
        wait_until(moved, timeout, 0.2, what=f"{path.name}'s tunnel to go through the relay")

    def rtt_ms(self, path, timeout=20):
        """The smallest round trip of a few pings through a tunnel (site b to
        site a's tunnel address), in ms: the impairment, as the tunnel sees it."""
        def ping():
            res = self.pair.sites[1].run(["ping", "-q", "-c", "3", "-i", "0.2", "-W", "2",
                                          path.addresses[0]], check=False)
            line = next((l for l in res.stdout.splitlines() if "min/avg/max" in l), None)
            return float(line.split("=")[1].split("/")[0]) if line else None
        return wait_until(ping, timeout, 0.5, what=f"a ping through {path.name}'s tunnel")

    def stop(self, timeout=15):
        """Stops the relay, points the routed tunnels' ends straight at each
        other again and returns the relay's statistics (None when it printed
        none). Safe to call twice."""
        self.stats = self.relay.stop()
        a, b = self.pair.sites
        for path in list(self.routed.values()):
            if not all(os.path.exists(f"/var/run/wireguard/{i}.sock") for i in path.ifnames):
                del self.routed[path.name]      # a tunnel stopped since: nothing to point back
                continue
            direct = (f"{b.wan_ip}:{path.port}", f"{a.wan_ip}:{path.port}")

            def back():
                if not self._direct(path):
                    self._set(path, direct)
                return self._direct(path)
            wait_until(back, timeout, 0.2, what=f"{path.name}'s tunnel to go straight again")
            del self.routed[path.name]
        return self.stats


# --------------------------------------------------------------------------
# CPU and memory from /proc

def _stat(pid):
    """(ppid, own CPU ticks, reaped children's CPU ticks) or None."""
    rest = harness.proc_stat(pid)
    if rest is None:
        return None
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def cpu_seconds(pid):
    """CPU seconds (user + system) one process used so far, None once gone."""
    st = _stat(pid)
    return None if st is None else st[1] / CLK_TCK


def peak_rss(pid):
    """VmHWM of a process in bytes (its peak resident set), None once gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def reset_peak_rss(pid):
    """Sets a process's VmHWM back to its current RSS (clear_refs 5, Linux
    4.0 and later), so peak_rss() then gives the peak of what follows.
    False when the kernel refused or the process is gone."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss(pid):
    """VmRSS of a process in bytes (its resident set now), None once gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def _busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle and iowait
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)


class CpuLedger:
    """Splits the machine's CPU into ours and everyone else's.

    Ours: every process descending from this one or from a root we were
    told about (the postmasters, which pg_ctl detaches); a process's reaped
    children count in its cutime, so short-lived pgbench backends are not
    lost. Everything else busy on the machine (other users, kernel softirq
    work not charged to one of ours) is "other"."""

    def __init__(self):
        self.roots = {os.getpid()}

    def add_root(self, pid):
        if pid:
            self.roots.add(pid)

    def snapshot(self):
        procs = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = _stat(name)
                if st:
                    procs[int(name)] = st
        kids = {}
        for pid, st in procs.items():
            kids.setdefault(st[0], []).append(pid)
        ours, todo = 0, [r for r in self.roots if r in procs]
        seen = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            ours += procs[pid][1] + procs[pid][2]
            todo.extend(kids.get(pid, []))
        return time.monotonic(), _busy_ticks(), ours

    @staticmethod
    def add(*deltas):
        """The sum of delta()s: one account of intervals apart in time."""
        return {k: sum(d[k] for d in deltas) for k in ("wall", "busy", "ours", "other")}

    @staticmethod
    def delta(a, b):
        """{'wall', 'busy', 'ours', 'other'} in seconds between two snapshots."""
        busy = (b[1] - a[1]) / CLK_TCK
        ours = (b[2] - a[2]) / CLK_TCK
        return {"wall": b[0] - a[0], "busy": busy, "ours": ours, "other": max(0.0, busy - ours)}


class PidCpu:
    """CPU seconds of labelled processes ({label: [pid, ...]}) between
    start() and stop(); stop() returns {label: seconds}."""

    def __init__(self, labelled):
        self.labelled = {k: [p for p in v if p] for k, v in labelled.items()}
        self.start_v = {}

    def start(self):
        self.start_v = {p: cpu_seconds(p) for v in self.labelled.values() for p in v}
        return self

    def stop(self):
        out = {}
        for label, pids in self.labelled.items():
            total = 0.0
            for p in pids:
                a, b = self.start_v.get(p), cpu_seconds(p)
                if a is not None and b is not None:
                    total += b - a
            out[label] = round(total, 2)
        return out


# --------------------------------------------------------------------------
# Where a system's apply is on the target: its replication origin, or with
# strait's parallel apply the highest of the stream's origin and its workers'.
ORIGIN_POSITION_SQL = ("SELECT max(remote_lsn)::text FROM pg_replication_origin_status "
                       "WHERE external_id = %s OR starts_with(external_id, %s || ':apply:')")


# Lag, measured the same way for both: the target's replication origin
# against a history of the source's WAL position

def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class LagSampler:
    """Samples the source's WAL insert position every 50 ms and the target's
    applied position (its replication origin's remote_lsn, which both
    PostgreSQL's apply worker and strait's sink advance in the commit of each
    applied transaction) every 250 ms.

    Lag at a moment t is t minus the time of the oldest source sample the
    target had not reached: how long ago WAL was written that is not applied
    yet (a lower bound, exact to the 50 ms of the source sampling); 0 when
    the target has applied all the source had written."""

    def __init__(self, src, dst, src_db, dst_db, origin, period=0.25, src_period=0.05):
        self.src, self.dst = src, dst
        self.src_db, self.dst_db = src_db, dst_db
        self.origin = origin
        self.period, self.src_period = period, src_period
        self.samples = []          # (t, lag_seconds)
        self._stop = threading.Event()
        self._thread = None
        self.error = None
        self.t0 = None

    def start(self):
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            with self.src.connect(self.src_db) as sc, self.dst.connect(self.dst_db) as dc:
                history = []      # (t, lsn) of the source
                behind_at = None  # applied position of the last "not caught up"
                next_lag = time.monotonic()
                while not self._stop.is_set():
                    now = time.monotonic()
                    lsn = sc.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
                    history.append((now, lsn_int(lsn)))
                    if now >= next_lag:
                        next_lag += self.period
                        row = dc.execute(ORIGIN_POSITION_SQL, (self.origin, self.origin)).fetchone()
                        t = time.monotonic()
                        applied = lsn_int(row[0]) if row and row[0] else 0
                        lag = 0.0
                        for ts, l in history:
                            if l > applied:
                                lag = max(0.0, t - ts)
                                break
                        # WAL written without a commit (an idle source's
                        # running-xacts records) never reaches the target.
                        # Not caught up stays so while the target applies
                        # nothing (its origin moves with every commit it
                        # applies): a held target is counted once, not at
                        # every sample, so it costs the servers nothing.
                        if lag > 0.5 and applied != behind_at:
                            if self.caught_up(sc, dc):
                                lag = 0.0
                            else:
                                behind_at = applied
                        # forget what is applied, keeping the last one as a floor
                        while len(history) > 1 and history[1][1] <= applied:
                            history.pop(0)
                        self.samples.append((t - self.t0, lag))
                    self._stop.wait(self.src_period)
        except Exception as exc:       # reported with the phase's numbers
            self.error = repr(exc)

    @staticmethod
    def caught_up(sc, dc):
        """Every pgbench transaction of the source is at the target."""
        q = "SELECT count(*) FROM pgbench_history"
        return sc.execute(q).fetchone()[0] == dc.execute(q).fetchone()[0]

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        return self.samples

    def window(self, start, end):
        """Lag values sampled between start and end (seconds since start())."""
        return [v for t, v in self.samples if start <= t <= end]


def quantile(values, q):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values):
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------
# pgbench

# pgbench's tpcb-like transaction, committed one by one inside the server:
# a backlog of hundreds of thousands in a fraction of the time clients take
# (no round trip per statement, no WAL flush per commit: the session runs
# with synchronous_commit off; what replication sees is the same).
TPCB_TXN = """\
    v_aid := 1 + floor(random() * 100000 * scale)::int;
    v_bid := 1 + floor(random() * scale)::int;
    v_tid := 1 + floor(random() * 10 * scale)::int;
    v_delta := floor(random() * 10001)::int - 5000;
    UPDATE pgbench_accounts SET abalance = abalance + v_delta WHERE aid = v_aid;
    SELECT abalance INTO v_bal FROM pgbench_accounts WHERE aid = v_aid;
    UPDATE pgbench_tellers SET tbalance = tbalance + v_delta WHERE tid = v_tid;
    UPDATE pgbench_branches SET bbalance = bbalance + v_delta WHERE bid = v_bid;
    INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
      VALUES (v_tid, v_bid, v_aid, v_delta, CURRENT_TIMESTAMP);
    COMMIT;
"""
BACKLOG_PROC = """
CREATE OR REPLACE PROCEDURE bench_backlog(n int, scale int) LANGUAGE plpgsql AS $$
DECLARE
  v_aid int; v_bid int; v_tid int; v_delta int; v_bal int;
BEGIN
  FOR i IN 1..n LOOP
{txn}  END LOOP;
END $$""".format(txn=TPCB_TXN)


class Backlog:
    """txns tpcb-like transactions on the source, from sessions psql
    sessions at once (BACKLOG_PROC), in the background; the interface of
    Pgbench."""

    def __init__(self, pg, dbname, txns, scale, sessions=4):
        pg.sql(BACKLOG_PROC, dbname=dbname)
        self.txns = txns
        per = [txns // sessions + (1 if i < txns % sessions else 0) for i in range(sessions)]
        env = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
        self.started = time.monotonic()
        self.ended = None
        self.procs = [subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.sockdir, "-p", str(pg.port),
             "-U", "postgres", "-d", dbname, "-c", f"CALL bench_backlog({n}, {scale})"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for n in per if n]

    def wait(self, timeout=None):
        for p in self.procs:
            _, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise harness.HarnessError(f"the backlog generator exited {p.returncode}: {err}")
        self.ended = time.monotonic()
        return self

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.communicate()

    def transactions(self):
        return self.txns if self.ended else None

    def tps(self):
        return self.txns / (self.ended - self.started) if self.ended else None


PACED_PROC = """
CREATE OR REPLACE PROCEDURE bench_paced(secs float8, rate float8, scale int)
LANGUAGE plpgsql AS $$
DECLARE
  v_aid int; v_bid int; v_tid int; v_delta int; v_bal int;
  t0 timestamptz := clock_timestamp();
  n bigint := 0;
  ahead float8;
BEGIN
  WHILE clock_timestamp() < t0 + secs * interval '1 second' LOOP
{txn}    n := n + 1;
    IF n % 8 = 0 THEN
      ahead := n / rate - extract(epoch FROM clock_timestamp() - t0);
      IF ahead > 0 THEN
        PERFORM pg_sleep(ahead);
      END IF;
    END IF;
  END LOOP;
  RAISE NOTICE 'bench_paced committed %', n;
END $$""".replace("{txn}", TPCB_TXN)


class PacedLoad:
    """tpcb-like transactions at tps for seconds, generated inside the
    source server by sessions sessions (PACED_PROC): a load that offers more
    than a client like pgbench can on a small machine, without its round
    trips' CPU; the interface of Pgbench."""

    def __init__(self, pg, dbname, seconds, tps, scale, sessions=4):
        pg.sql(PACED_PROC, dbname=dbname)
        env = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
        self.seconds = seconds
        self.started = time.monotonic()
        self.ended = None
        self.count = None
        self.procs = [subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.sockdir, "-p", str(pg.port),
             "-U", "postgres", "-d", dbname, "-c",
             f"CALL bench_paced({float(seconds)}, {tps / sessions}, {scale})"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(sessions)]

    def wait(self, timeout=None):
        n = 0
        for p in self.procs:
            _, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise harness.HarnessError(f"the paced load exited {p.returncode}: {err}")
            for line in err.splitlines():
                if "bench_paced committed" in line:
                    n += int(line.split()[-1])
        self.ended = time.monotonic()
        self.count = n
        return self

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.communicate()

    def transactions(self):
        return self.count

    def tps(self):
        return self.count / self.seconds if self.count is not None else None


class Pgbench:
    """pgbench against the source's unix socket, in the background."""

    def __init__(self, pg, dbname, clients, seconds, rate=None):
        cmd = ["pgbench", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-n",
               "-c", str(clients), "-T", str(max(1, int(round(seconds))))]
        if rate:
            cmd += ["-R", str(rate)]
        self.proc = subprocess.Popen(cmd + [dbname], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out = self.err = ""

    def wait(self, timeout=None):
        self.out, self.err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise harness.HarnessError(f"pgbench exited {self.proc.returncode}: {self.err}")
        return self

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def transactions(self):
        for line in self.out.splitlines():
            if line.startswith("number of transactions actually processed:"):
                return int(line.split(":")[1].split("/")[0])
        return None

    def tps(self):
        for line in self.out.splitlines():
            if line.startswith("tps ="):
                return float(line.split("=")[1].split()[0])
        return None
