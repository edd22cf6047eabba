"""The relay link between two straitd (gateway/relay/relay.c), driven through
tests/tools/relay_driver: one endpoint per process, sites on loopback
addresses (127.X.0.N, all of 127/8 is local), tunnel backend `none`.

Covers: HELLO exchange with resume positions, frames crossing intact
(CRC-32C over every payload), throughput, reconnect with backoff after a
restart, dead-peer detection by heartbeat timeout, reload adding and removing
peers, and the security checks of the link (issue 9): plain TCP, TLS below
1.3, an expired certificate, one from another CA, one naming another site,
and a fake peer with a valid certificate sending garbage, truncated,
oversized, corrupt, unknown or out-of-order frames. Each refusal must be
logged with its reason and must not disturb the endpoint's real link.

Every wait polls a condition with a deadline (harness.wait_until).
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import harness
import tlsutil
from harness import wait_until

DRIVER = os.path.join(harness.BUILD, "tools", "relay_driver")
CLUSTER = "acme"
HEALTH_MS = 200
HEALTH_FAILURES = 3
DEAD_S = HEALTH_MS * HEALTH_FAILURES / 1000.0

pytestmark = pytest.mark.skipif(not os.access(DRIVER, os.X_OK),
                                reason=f"{DRIVER} missing: make tools")

# ---------------------------------------------------------------------------
# Frames, as gateway/relay/frame.h defines them, for the fake peers

FRAME_HELLO, FRAME_BATCH, FRAME_HEARTBEAT, FRAME_GOODBYE = 0x01, 0x02, 0x06, 0x07
FRAME_PROBE = 0x20
FRAME_MAX_PAYLOAD = 16 * 1024 * 1024


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def frame(ftype, payload=b"", flags=0, epoch=0, length=None, bad_crc=False):
    length = len(payload) if length is None else length
    head = b"STRT" + struct.pack(">BBBBIQ", 1, ftype, flags, 0, length, epoch)
    crc = crc32c(payload, crc32c(head))
    if bad_crc:
        crc ^= 1
    return head + struct.pack(">I", crc) + payload


def wire_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def hello_payload(cluster, site, streams=()):
    """HELLO (the relay protocol's version): per stream its received and
    committed positions and the bytes queued at the sink."""
    out = struct.pack(">H", harness.RELAY_PROTO_VERSION) + wire_str(cluster) + wire_str(site)
    out += struct.pack(">H", len(streams))
    for name, lsn in streams:
        out += wire_str(name) + struct.pack(">QQQ", lsn, lsn, 0)
    return out


def heartbeat_payload():
    return struct.pack(">QqBI", 0, int(time.time() * 1e6), 2, 1)


def read_frames(sock, timeout=10.0):
    """Reads until the peer closes; returns the frames seen as (type, payload)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ssl.SSLError, ConnectionResetError, OSError):
        pass
    frames = []
    while len(data) >= 24:
        (length,) = struct.unpack(">I", data[8:12])
        if len(data) < 24 + length:
            break
        frames.append((data[5], data[24:24 + length]))
        data = data[24 + length:]
    return frames


def goodbye_reason(frames):
    for ftype, payload in frames:
        if ftype == FRAME_GOODBYE:
            (n,) = struct.unpack(">H", payload[:2])
            return payload[2:2 + n].decode()
    return None


# ---------------------------------------------------------------------------
# A relay endpoint (one relay_driver process)

class Endpoint:
    """relay_driver for one site: commands on stdin, events from stdout
    (collected by a thread), the log (stderr) in a file."""

    def __init__(self, cluster, site, extra_args=(), netns=None):
        self.cluster = cluster
        self.site = site
        self.netns = netns
        self.config = cluster.config_path(site)
        self.logfile = os.path.join(cluster.base, f"{site}.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.lines = []
        self.lock = threading.Lock()

    def start(self):
        self.lines = []
        log = open(self.logfile, "a")
        cmd = [DRIVER, "--config", self.config, "--site", self.site, "--log-level", "debug"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd   # execs in place: same pid
        self.proc = subprocess.Popen(
            cmd + self.extra_args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        log.close()
        threading.Thread(target=self._reader, args=(self.proc,), daemon=True).start()
        self.wait_event("ready")
        return self

    def _reader(self, proc):
        for line in proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cmd(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def mark(self):
        with self.lock:
            return len(self.lines)

    def events(self, since=0):
        with self.lock:
            return list(self.lines[since:])

    def wait_event(self, prefix, since=0, timeout=15.0):
        """The first stdout line from index since that starts with prefix
        (HarnessError when the driver exits without printing it)."""
        exited = object()

        def find():
            # Read the exit status first: lines printed before exiting count.
            gone = self.proc.poll() is not None
            for line in self.events(since):
                if line.startswith(prefix):
                    return line
            return exited if gone else None
        try:
            found = wait_until(find, timeout, what=f"{self.site}: {prefix!r}")
        except TimeoutError:
            raise TimeoutError(f"{self.site} never printed {prefix!r}; events:\n"
                               + "\n".join(self.events()) + "\nlog:\n" + self.log_text()[-6000:])
        if found is exited:
            raise harness.HarnessError(f"relay_driver {self.site} exited "
                                       f"{self.proc.returncode}:\n{self.log_text()}")
        return found

    def log_offset(self):
        try:
            return os.path.getsize(self.logfile)
        except FileNotFoundError:
            return 0

    def log_text(self, since=0):
        try:
            with open(self.logfile) as f:
                f.seek(since)
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, since=0, timeout=15.0):
        """The first log line from byte offset since that matches regex pattern."""
        rx = re.compile(pattern)

        def find():
            for line in self.log_text(since).splitlines():
                if rx.search(line):
                    return line
            return None
        try:
            return wait_until(find, timeout, what=f"{self.site} log: {pattern!r}")
        except TimeoutError:
            raise TimeoutError(f"{self.site} log never matched {pattern!r}:\n"
                               + self.log_text(since)[-6000:])

    def status(self):
        at = self.mark()
        self.cmd("status")
        return json.loads(self.wait_event("status ", since=at)[len("status "):])

    def peer_status(self, peer):
        for p in self.status()["peers"]:
            if p["site"] == peer:
                return p
        raise KeyError(peer)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with_suppressed(os.kill, self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        with_suppressed(self.proc.stdin.close)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        with_suppressed(self.proc.stdin.close)


def closed_by_peer(sock, timeout=10.0):
    """Whether the peer closed sock (FIN or RST) before timeout, sending nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def with_suppressed(fn, *args):
    try:
        fn(*args)
    except (OSError, ValueError):
        pass


def parse_kv(line):
    return dict(item.split("=", 1) for item in line.split()[2:] if "=" in item)


# ---------------------------------------------------------------------------
# A cluster of sites on loopback

class Cluster:
    """Sites named in sorted order (the first dials the others), each on its own
    127.X.0.N address, sharing one relay port; certificates from one CA."""

    def __init__(self, base, names, health_ms=HEALTH_MS, failures=HEALTH_FAILURES,
                 addrs=None, prefix=8):
        self.base = base
        self.names = list(names)
        self.port = harness.allocate_port()
        octet = 20 + os.getpid() % 200
        self.addr = addrs or {n: f"127.{octet}.0.{i + 1}" for i, n in enumerate(self.names)}
        self.pki = os.path.join(base, "pki")
        self.ca = tlsutil.make_ca(self.pki, CLUSTER)
        self.certs = {n: tlsutil.make_site_cert(self.ca, self.pki, n) for n in self.names}
        sites = []
        for n in self.names:
            _, pub = harness.make_keypair()
            sites.append({"name": n, "role": "primary" if n == self.names[0] else "replica",
                          "endpoint": f"{self.addr[n]}:51820",
                          "tunnel_address": f"{self.addr[n]}/{prefix}",
                          "public_key": pub,
                          "database": f"host=/tmp dbname={n}"})
        self.sites = sites
        self.cluster_cfg = harness.site_config(
            base, CLUSTER, sites, backend="none",
            extra={"relay": {"port": self.port},
                   "failover": {"health_interval": f"{health_ms}ms",
                                "health_failures": failures}})
        self.endpoints = []
        for n in self.names:
            self.write_host(n, self.certs[n])

    def host_dir(self, site):
        return os.path.join(self.base, site)

    def config_path(self, site):
        return os.path.join(self.host_dir(site), "strait.yaml")

    def write_host(self, site, cert, ca=None, sites=None):
        """(Re)writes site's config and TLS files; sites limits the cluster's sites."""
        host = self.host_dir(site)
        os.makedirs(host, exist_ok=True)
        tlsutil.install_site_tls(ca or self.ca, cert, host)
        cfg = dict(self.cluster_cfg)
        if sites is not None:
            cfg["sites"] = {k: v for k, v in self.cluster_cfg["sites"].items() if k in sites}
        harness.write_config(self.config_path(site), harness.host_config(cfg, host))
        return self.config_path(site)

    def endpoint(self, site, start=True, args=(), netns=None):
        ep = Endpoint(self, site, args, netns=netns)
        self.endpoints.append(ep)
        return ep.start() if start else ep

    def stop(self):
        for ep in self.endpoints:
            ep.stop()

    # fake peers ----------------------------------------------------------

    def tls_client(self, site, cert, ca=None, minimum=ssl.TLSVersion.TLSv1_3,
                   maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED):
        """A TLS connection to site's relay port with cert (a tlsutil.SiteCert)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = minimum
        ctx.maximum_version = maximum
        ctx.load_verify_locations((ca or self.ca).cert)
        ctx.load_cert_chain(cert.cert, cert.key)
        raw = socket.create_connection((self.addr[site], self.port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname=site)

    def tls_server(self, site, cert, maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED):
        """A fake listener on site's relay address that does TLS with cert and
        records what happened (for dialers connecting to it)."""
        return FakeServer(self, site, cert, maximum)


class FakeServer:
    def __init__(self, cluster, site, cert, maximum):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.maximum_version = maximum
        self.ctx.load_cert_chain(cert.cert, cert.key)
        self.ctx.load_verify_locations(cluster.ca.cert)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((cluster.addr[site], cluster.port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self.errors = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                conn.settimeout(5)
                tls = self.ctx.wrap_socket(conn, server_side=True)
                read_frames(tls, timeout=2)
                tls.close()
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(str(exc))
                conn.close()

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def cluster_factory():
    made = []

    def make(names, **kw):
        base = harness.scratch_dir("relay")
        c = Cluster(base, names, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
        shutil.rmtree(c.base, ignore_errors=True)


def send_and_check(sender, receiver, count, size, seed=1, timeout=60.0):
    """Sends count frames sender -> receiver; both sides' checksums must agree."""
    r_at, s_at = receiver.mark(), sender.mark()
    receiver.cmd(f"expect {sender.site} {count}")
    sender.cmd(f"send {receiver.site} {count} {size} {seed}")
    sent = parse_kv(sender.wait_event(f"sent {receiver.site} ", since=s_at, timeout=timeout))
    got = parse_kv(receiver.wait_event(f"received {sender.site} ", since=r_at, timeout=timeout))
    assert int(sent["count"]) == count
    assert int(got["count"]) == count
    assert int(got["bytes"]) == count * size
    assert got["sum"] == sent["sum"], (sent, got)
    return got


# ---------------------------------------------------------------------------
# The link itself

def test_hello_exchange_and_status(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta", args=["--resume", "app=0x16B3A28", "--resume", "audit=7",
                                    "--epoch", "3"])
    alpha = c.endpoint("alpha", args=["--role", "primary", "--epoch", "3"])

    # alpha sorts lower, so it dials; beta's HELLO carries its resume positions.
    line = alpha.wait_event("connected beta ")
    assert "epoch=3" in line and f"version={harness.RELAY_PROTO_VERSION}" in line
    assert "streams=app:0/16B3A28,audit:0/7" in line
    assert beta.wait_event("connected alpha ").endswith("streams=")
    # Heartbeats flow both ways with the sender's role.
    assert "role=replica" in alpha.wait_event("heartbeat beta ")
    assert "role=primary" in beta.wait_event("heartbeat alpha ")

    a = alpha.peer_status("beta")
    assert a["direction"] == "dial" and a["state"] == "up"
    assert a["address"] == f"{c.addr['beta']}:{c.port}"
    assert a["connected_since"] > 0 and a["frames_received"] >= 1
    b = beta.status()
    assert b["listen"] == f"{c.addr['beta']}:{c.port}" and b["listening"]
    assert b["peers"][0]["direction"] == "accept" and b["peers"][0]["state"] == "up"
    # The dialer leaves from its own tunnel address.
    assert b["peers"][0]["remote"].startswith(c.addr["alpha"] + ":")
    alpha.wait_log(r'relay site "beta" at .*: hello -> up: HELLO from "beta" '
                   rf'\(protocol {harness.RELAY_PROTO_VERSION}, epoch 3, 2 streams\)')


def test_frames_cross_intact(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")
    alpha = c.endpoint("alpha")
    alpha.wait_event("connected beta ")
    beta.wait_event("connected alpha ")

    send_and_check(alpha, beta, 2000, 1000, seed=1)      # many small frames
    send_and_check(beta, alpha, 500, 1000, seed=2)       # and the other way
    send_and_check(alpha, beta, 3, FRAME_MAX_PAYLOAD, seed=3, timeout=120)  # at the cap
    send_and_check(alpha, beta, 5, 0, seed=4)            # empty payloads

    # Throughput over loopback: 256 MiB in 256 KiB frames, through backpressure.
    got = send_and_check(alpha, beta, 1024, 256 * 1024, seed=5, timeout=120)
    secs = float(got["seconds"])
    print(f"\nrelay throughput over loopback: {1024 * 256 / 1024 / secs:.0f} MiB/s "
          f"(256 MiB in {secs:.2f} s)")
    st = alpha.peer_status("beta")
    assert st["bytes_sent"] >= 1024 * 256 * 1024 and st["frames_sent"] >= 3032
    assert beta.peer_status("alpha")["bytes_received"] >= 1024 * 256 * 1024


def test_reconnect_with_backoff_after_restart(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")
    alpha = c.endpoint("alpha")
    alpha.wait_event("connected beta ")
    send_and_check(alpha, beta, 50, 4096)

    at, log_at = alpha.mark(), alpha.log_offset()
    beta.kill()
    assert "reason=peer closed the connection" in alpha.wait_event("disconnected beta ", since=at)

    # The dialer keeps trying, each wait longer than the one before.
    def delays():
        return [int(m) for m in re.findall(r'relay site "beta": next attempt in (\d+) ms',
                                           alpha.log_text(log_at))]
    wait_until(lambda: len(delays()) >= 5, timeout=15, what="five reconnect attempts")
    d = delays()
    assert d[4] > d[1] > 0, d                       # 100 ms doubling, ±25 %
    assert d[4] >= 0.75 * 1600 and d[4] <= 1.25 * 1600, d
    alpha.wait_log(r"could not connect to .*Connection refused", since=log_at)

    beta2 = c.endpoint("beta")
    alpha.wait_event("connected beta ", since=at, timeout=20)
    beta2.wait_event("connected alpha ")
    send_and_check(alpha, beta2, 50, 4096, seed=9)
    st = alpha.peer_status("beta")
    assert st["reconnects"] == 1 and st["failures"] >= 4   # refused while beta was down


def test_restart_of_the_dialer_replaces_the_old_link(cluster_factory):
    c = cluster_factory(["alpha", "beta"], health_ms=1000, failures=10)
    beta = c.endpoint("beta")
    alpha = c.endpoint("alpha")
    beta.wait_event("connected alpha ")

    # SIGKILL leaves no trace on loopback beyond an EOF, which beta sees; to
    # test replacement, stop alpha so beta cannot notice, then start another.
    at = beta.mark()
    os.kill(alpha.pid, signal.SIGSTOP)
    try:
        alpha2 = Endpoint(c, "alpha")
        c.endpoints.append(alpha2)
        alpha2.start()
        alpha2.wait_event("connected beta ")
        line = beta.wait_event("disconnected alpha ", since=at)
        assert "replaced by a new connection" in line
        beta.wait_event("connected alpha ", since=at)
        send_and_check(alpha2, beta, 20, 1000)
    finally:
        os.kill(alpha.pid, signal.SIGCONT)
        alpha.stop()


def test_dead_peer_detected_by_heartbeat_timeout(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")
    alpha = c.endpoint("alpha")
    alpha.wait_event("connected beta ")
    beta.wait_event("connected alpha ")

    at_a, at_b = alpha.mark(), beta.mark()
    os.kill(beta.pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        line = alpha.wait_event("disconnected beta ", since=at_a, timeout=10)
        took = time.monotonic() - stopped
        assert "peer is dead: nothing received in 3 heartbeat intervals" in line
        # health_interval 200 ms * 3 failures: gone after 0.6 s, checked every 0.2 s.
        assert DEAD_S * 0.9 <= took <= DEAD_S + 3.0, took
    finally:
        os.kill(beta.pid, signal.SIGCONT)
    # Once beta runs again, alpha's next attempt brings the link back.
    alpha.wait_event("connected beta ", since=at_a + 1, timeout=15)
    beta.wait_event("connected alpha ", since=at_b + 1, timeout=15)
    send_and_check(alpha, beta, 20, 1000)


def test_reload_removes_and_adds_peers(cluster_factory):
    c = cluster_factory(["alpha", "beta", "gamma"])
    gamma = c.endpoint("gamma")
    beta = c.endpoint("beta")
    alpha = c.endpoint("alpha")
    for ep, peers in ((alpha, ("beta", "gamma")), (beta, ("alpha", "gamma")),
                      (gamma, ("alpha", "beta"))):
        for p in peers:
            ep.wait_event(f"connected {p} ")

    # gamma drops beta from its config: that link closes, beta is told why.
    at_g, at_b, log_b = gamma.mark(), beta.mark(), beta.log_offset()
    smaller = os.path.join(c.host_dir("gamma"), "smaller.yaml")
    cfg = harness.host_config(dict(c.cluster_cfg, sites={k: v for k, v in
                                   c.cluster_cfg["sites"].items() if k != "beta"}),
                              c.host_dir("gamma"))
    harness.write_config(smaller, cfg)
    gamma.cmd(f"reload {smaller}")
    gamma.wait_event("reloaded", since=at_g)
    assert "site removed from the configuration" in gamma.wait_event("disconnected beta ",
                                                                     since=at_g)
    beta.wait_event("disconnected gamma ", since=at_b)
    beta.wait_log(r"peer closed the link: site removed from the configuration", since=log_b)
    assert [p["site"] for p in gamma.status()["peers"]] == ["alpha"]
    # The other link is untouched.
    send_and_check(alpha, gamma, 20, 1000)

    # Back in the config: beta's next attempt gets through (beta sends once its
    # own side of the link is up, which may be a moment after gamma's)
    at_b = beta.mark()
    gamma.cmd(f"reload {c.config_path('gamma')}")
    gamma.wait_event("connected beta ", since=at_g, timeout=40)
    beta.wait_event("connected gamma ", since=at_b, timeout=40)
    send_and_check(beta, gamma, 20, 1000)

    # A reload whose TLS files do not load changes nothing.
    broken = os.path.join(c.host_dir("gamma"), "broken.yaml")
    cfg = harness.host_config(c.cluster_cfg, c.host_dir("gamma"))
    cfg["tls"]["cert"] = os.path.join(c.host_dir("gamma"), "missing.crt")
    harness.write_config(broken, cfg)
    at_g = gamma.mark()
    gamma.cmd(f"reload {broken}")
    gamma.wait_event("reload-failed relay", since=at_g)
    gamma.wait_log(r'could not load TLS certificate file ".*missing.crt"')
    assert relay_up(gamma, "alpha") and relay_up(gamma, "beta")


def relay_up(ep, peer):
    return ep.peer_status(peer)["state"] == "up"


def test_revoked_certificate_is_refused_after_reload(cluster_factory):
    """tls.crl: a reload reads the CA's revocation list; the link already up
    stays, and the revoked site's next connection is refused."""
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")
    alpha = c.endpoint("alpha")
    alpha.wait_event("connected beta ")

    # A list that revokes nobody changes nothing.
    cfg = harness.host_config(c.cluster_cfg, c.host_dir("alpha"))
    cfg["tls"]["crl"] = tlsutil.make_crl(c.ca, [], c.host_dir("alpha"), "empty.crl")
    with_crl = harness.write_config(os.path.join(c.host_dir("alpha"), "crl.yaml"), cfg)
    at = alpha.mark()
    alpha.cmd(f"reload {with_crl}")
    alpha.wait_event("reloaded", since=at)
    send_and_check(beta, alpha, 10, 1000)

    # beta's certificate revoked: after the reload, its next connection fails.
    cfg["tls"]["crl"] = tlsutil.make_crl(c.ca, [c.certs["beta"]], c.host_dir("alpha"), "revoked.crl")
    harness.write_config(with_crl, cfg)
    at, log_at = alpha.mark(), alpha.log_offset()
    alpha.cmd(f"reload {with_crl}")
    alpha.wait_event("reloaded", since=at)
    assert relay_up(alpha, "beta")
    beta.stop()
    beta = c.endpoint("beta")
    alpha.wait_log(r'relay site "beta" at .*: tls -> closed: TLS handshake failed: .*certificate revoked',
                   since=log_at, timeout=40)
    assert not relay_up(alpha, "beta")


# ---------------------------------------------------------------------------
# Security checks (issue 9): each refusal logged with its reason

def test_refuses_plain_tcp(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")

    # Plain text where a TLS ClientHello belongs: refused at once.
    at = beta.log_offset()
    with socket.create_connection((c.addr["beta"], c.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert closed_by_peer(s)
    beta.wait_log(r"relay connection from .*: tls -> closed: TLS handshake failed: ", since=at)

    # A connection that says nothing is closed when the handshake times out.
    at = beta.log_offset()
    with socket.create_connection((c.addr["beta"], c.port), timeout=10) as s:
        started = time.monotonic()
        assert closed_by_peer(s)
        assert time.monotonic() - started >= DEAD_S * 0.9
    beta.wait_log(r"relay connection from .*: tls -> closed: timed out after .* in state tls",
                  since=at)
    assert beta.status()["pending_connections"] == 0


def test_refuses_tls_below_1_3(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")
    cert = c.certs["alpha"]

    # As the acceptor: openssl s_client speaking TLS 1.2 with a valid certificate.
    at = beta.log_offset()
    res = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect",
                          f"{c.addr['beta']}:{c.port}", "-cert", cert.cert, "-key", cert.key,
                          "-CAfile", c.ca.cert, "-servername", "beta"],
                         input="", capture_output=True, text=True, timeout=20)
    assert res.returncode != 0
    assert "alert protocol version" in res.stdout + res.stderr
    beta.wait_log(r"relay connection from .*: tls -> closed: TLS handshake failed: "
                  r"unsupported protocol", since=at)

    # As the dialer: a fake "beta" that offers at most TLS 1.2.
    beta.stop()
    fake = c.tls_server("beta", c.certs["beta"], maximum=ssl.TLSVersion.TLSv1_2)
    try:
        alpha = c.endpoint("alpha")
        alpha.wait_log(r'relay site "beta" at .*: tls -> closed: TLS handshake failed: '
                       r'(tlsv1 alert protocol version|unsupported protocol)')
        wait_until(lambda: fake.errors, what="the fake server's handshake failure")
        assert not any(line.startswith("connected") for line in alpha.events())
    finally:
        fake.close()


def test_refuses_certificate_from_another_ca(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    beta = c.endpoint("beta")
    other = tlsutil.make_ca(os.path.join(c.base, "other"), "evil")
    forged = tlsutil.make_site_cert(other, os.path.join(c.base, "other"), "alpha")

    # A dialer with a certificate for the right site from the wrong CA. In TLS
    # 1.3 the client may finish its side of the handshake before the server
    # checks its certificate, so the refusal shows as an alert or a close.
    at = beta.log_offset()
    try:
        s = c.tls_client("beta", forged)
        s.sendall(frame(FRAME_HELLO, hello_payload(CLUSTER, "alpha")))
        assert read_frames(s) == []          # no HELLO back, just the end
        s.close()
    except (ssl.SSLError, ConnectionError):
        pass
    beta.wait_log(r"relay connection from .*: tls -> closed: TLS handshake failed: "
                  r"certificate verify failed: unable to get local issuer certificate", since=at)

    # An acceptor with such a certificate is refused by the dialer.
    beta.stop()
    fake = c.tls_server("beta", tlsutil.make_site_cert(other, os.path.join(c.base, "other"),
                                                       "beta"))
    try:
        alpha = c.endpoint("alpha")
        alpha.wait_log(r'relay site "beta" at .*: tls -> closed: TLS handshake failed: '
                       r'certificate verify failed: unable to get local issuer certificate')
    finally:
        fake.close()

    # A site whose own certificate is not from the cluster CA does not start its relay.
    c.write_host("alpha", forged, ca=c.ca)
    bad = Endpoint(c, "alpha")
    with pytest.raises(harness.HarnessError):
        bad.start()
    assert re.search(r'TLS certificate ".*site.crt" does not verify against CA', bad.log_text())


def test_refuses_certificate_for_another_site(cluster_factory):
    c = cluster_factory(["alpha", "beta", "gamma"])
    edge = tlsutil.make_site_cert(c.ca, c.pki, "edge")

    # The dialer expects the site it dials: a fake "gamma" showing alpha's certificate.
    fake = c.tls_server("gamma", c.certs["alpha"])
    try:
        beta = c.endpoint("beta")
        beta.wait_log(r'relay site "gamma" at [0-9.:]+: tls -> closed: peer [0-9.]+:\d+ '
                      r'presented a certificate for site "alpha", expected "gamma"')
    finally:
        fake.close()
    gamma = c.endpoint("gamma")
    beta.wait_event("connected gamma ", timeout=40)

    # The acceptor wants a certificate naming one of its peer sites...
    at = gamma.log_offset()
    s = c.tls_client("gamma", edge)
    s.sendall(frame(FRAME_HELLO, hello_payload(CLUSTER, "edge")))
    read_frames(s)
    s.close()
    gamma.wait_log(r'relay connection from [0-9.]+:\d+: tls -> closed: peer [0-9.]+:\d+ '
                   r'presented a certificate for site "edge", which is not a peer site of '
                   r'"gamma"', since=at)

    # ... and the HELLO to claim the site the certificate names.
    at = gamma.log_offset()
    s = c.tls_client("gamma", c.certs["alpha"])
    s.sendall(frame(FRAME_HELLO, hello_payload(CLUSTER, "beta")))
    frames = read_frames(s)
    s.close()
    assert goodbye_reason(frames) == ('HELLO from site "beta", but its certificate is for '
                                      'site "alpha"')
    gamma.wait_log(r'relay connection from .*: hello -> closing: HELLO from site "beta", but '
                   r'its certificate is for site "alpha"', since=at)
    # None of it touched the real link.
    assert relay_up(gamma, "beta")
    send_and_check(beta, gamma, 10, 1000)


def test_refuses_expired_certificate(cluster_factory):
    c = cluster_factory(["alpha", "beta"])
    expired = tlsutil.make_site_cert(c.ca, os.path.join(c.base, "old"), "alpha", expired=True)
    beta = c.endpoint("beta")

    # A real endpoint with an expired certificate starts (with a warning)...
    c.write_host("alpha", expired)
    at = beta.log_offset()
    alpha = c.endpoint("alpha")
    alpha.wait_log(r'TLS certificate ".*site.crt" has expired: peers will refuse this site')
    # ... and its peer refuses it.
    beta.wait_log(r"relay connection from .*: tls -> closed: TLS handshake failed: "
                  r"certificate verify failed: certificate has expired", since=at)
    alpha.wait_log(r'relay site "beta" at .*: (tls|hello) -> closed: TLS handshake failed: '
                   r'.*certificate expired')
    assert not any(line.startswith("connected") for line in alpha.events())
    assert beta.status()["refused_connections"] >= 1


# ---------------------------------------------------------------------------
# A fake peer with a valid certificate misbehaving: each closes only its own
# connection, with a logged reason, while the endpoint keeps serving its peer.

@pytest.fixture(scope="module")
def serving_pair():
    """gamma (acceptor) linked with its real peer beta; alpha's certificate is
    the fake peer's (alpha never runs), and zeta's, a site gamma dials."""
    base = harness.scratch_dir("relay-fake")
    c = Cluster(base, ["alpha", "beta", "gamma", "zeta"])
    gamma = c.endpoint("gamma")
    beta = c.endpoint("beta")
    gamma.wait_event("connected beta ")
    yield c, gamma, beta
    c.stop()
    shutil.rmtree(base, ignore_errors=True)


HELLO = frame(FRAME_HELLO, hello_payload(CLUSTER, "alpha"))

BAD_PEERS = {
    "garbage": (b"this is not a strait frame\r\n" * 4,
                r"hello -> closing: invalid frame: bad magic"),
    "truncated": (frame(FRAME_HELLO, hello_payload(CLUSTER, "alpha"))[:40],
                  r"hello -> closed: peer closed the connection in the middle of a frame "
                  r"\(40 of \d+ bytes\)"),
    "oversized": (frame(FRAME_BATCH, b"x" * 16, length=FRAME_MAX_PAYLOAD + 1)[:24],
                  r"hello -> closing: invalid frame: payload length over the limit"),
    "huge-length": (b"STRT" + struct.pack(">BBBBI", 1, FRAME_BATCH, 0, 0, 0xFFFFFFFF),
                    r"hello -> closing: invalid frame: payload length over the limit"),
    "bad-crc": (frame(FRAME_HELLO, hello_payload(CLUSTER, "alpha"), bad_crc=True),
                r"hello -> closing: invalid frame: CRC mismatch"),
    "unknown-type": (frame(0x42, b"hello"),
                     r"hello -> closing: invalid frame: unknown message type 0x42"),
    "bad-version": (frame(FRAME_HELLO)[:4] + b"\x09" + frame(FRAME_HELLO)[5:],
                    r"hello -> closing: invalid frame: unsupported frame version"),
    "before-hello": (frame(FRAME_HEARTBEAT, heartbeat_payload()),
                     r"hello -> closing: HEARTBEAT frame before HELLO"),
    "batch-before-hello": (frame(FRAME_BATCH, b"\x00" * 40),
                           r"hello -> closing: BATCH frame before HELLO"),
    "bad-hello": (frame(FRAME_HELLO, b"\x00\x01\x00"),
                  r"hello -> closing: invalid HELLO: "),
    "other-cluster": (frame(FRAME_HELLO, hello_payload("other", "alpha")),
                      r'hello -> closing: HELLO for cluster "other", expected "acme"'),
    "other-version": (frame(FRAME_HELLO, struct.pack(">H", 99) + hello_payload(CLUSTER,
                                                                               "alpha")[2:]),
                      r"hello -> closing: peer speaks relay protocol version 99"),
    "second-hello": (HELLO + HELLO, r"up -> closing: second HELLO"),
    "bad-heartbeat": (HELLO + frame(FRAME_HEARTBEAT, b"\x01\x02"),
                      r"up -> closing: invalid HEARTBEAT: "),
    "garbage-after-hello": (HELLO + b"\x00" * 64, r"up -> closing: invalid frame: bad magic"),
    "bad-probe": (HELLO + frame(FRAME_PROBE, b"\x01"),
                  r"up -> closing: invalid PROBE: 1 bytes of payload \(it has none\)"),
    # empty PROBEs are dropped: the link goes on to the frame after them
    "probes-then-bad-heartbeat": (HELLO + frame(FRAME_PROBE) * 3 + frame(FRAME_HEARTBEAT, b"\x01"),
                                  r"up -> closing: invalid HEARTBEAT: "),
    # zeta sorts after gamma, so gamma dials zeta: zeta dialing in is refused.
    "wrong-direction": (frame(FRAME_HELLO, hello_payload(CLUSTER, "zeta")),
                        r'hello -> closing: site "zeta" dialed, but "gamma" dials it '
                        r'\(the lower name dials\)', "zeta"),
}


@pytest.mark.parametrize("case", sorted(BAD_PEERS))
def test_fake_peer_misbehaving(serving_pair, case):
    c, gamma, beta = serving_pair
    data, reason, *cert_site = BAD_PEERS[case]
    at = gamma.log_offset()

    s = c.tls_client("gamma", c.certs[cert_site[0] if cert_site else "alpha"])
    local = "%s:%d" % s.getsockname()[:2]
    s.sendall(data)
    if case == "truncated":
        s.shutdown(socket.SHUT_WR)   # EOF in the middle of the frame
    frames = read_frames(s)
    s.close()

    line = gamma.wait_log(re.escape(local) + r".*: " + reason, since=at)
    assert re.search(r"warning: relay (connection from|site \"alpha\" at) ", line), line
    if "closing" in reason:
        # The peer was told why before the connection closed.
        said = goodbye_reason(frames)
        assert said is not None and said in line, (said, line)
    # The endpoint is alive and its real link is untouched.
    assert gamma.alive()
    assert relay_up(gamma, "beta")
    send_and_check(beta, gamma, 10, 2000, seed=len(case))


def test_many_unidentified_connections_are_capped(serving_pair):
    c, gamma, beta = serving_pair
    socks = []
    try:
        for _ in range(70):
            socks.append(socket.create_connection((c.addr["gamma"], c.port), timeout=10))
        gamma.wait_log(r"refusing connection from .*: 64 connections are not identified yet")
        assert relay_up(gamma, "beta")
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: gamma.status()["pending_connections"] == 0, timeout=10,
               what="pending connections to go")
    send_and_check(beta, gamma, 10, 1000)


# ---------------------------------------------------------------------------
# Across network namespaces: the tunnel address shows up after the daemon

def test_listener_waits_for_its_tunnel_address(netns_sites):
    """Sites in two namespaces on a bridge (as over a tunnel). beta's tunnel
    address is not there when it starts: it keeps retrying to listen, says so
    once, and serves as soon as the address appears."""
    s0, s1 = netns_sites(2)
    base = harness.scratch_dir("relay-ns")
    try:
        c = Cluster(base, ["alpha", "beta"], addrs={"alpha": "10.199.0.1", "beta": "10.199.0.2"},
                    prefix=24)
        s0.run(["ip", "addr", "add", "10.199.0.1/24", "dev", s0.wan_if])
        beta = c.endpoint("beta", netns=s1.ns)
        alpha = c.endpoint("alpha", netns=s0.ns)

        beta.wait_log(r"relay: could not listen on 10\.199\.0\.2:\d+: Cannot assign requested "
                      r"address \(retrying\)")
        st = beta.status()
        assert st["listening"] is False and "Cannot assign" in st["listen_error"]
        alpha.wait_log(r'relay site "beta" at 10\.199\.0\.2:\d+: \w+ -> closed: ')

        s1.run(["ip", "addr", "add", "10.199.0.2/24", "dev", s1.wan_if])
        beta.wait_log(r"relay: listening on 10\.199\.0\.2:\d+")
        alpha.wait_event("connected beta ", timeout=45)
        beta.wait_event("connected alpha ")
        # Logged once, not once per retry.
        assert len(re.findall("could not listen on", beta.log_text())) == 1
        send_and_check(alpha, beta, 200, 8192)
        assert beta.peer_status("alpha")["remote"].startswith("10.199.0.1:")
    finally:
        for ep in c.endpoints:
            ep.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_fake_peer_mutated_streams(serving_pair):
    """A fixed-seed batch of mutated frame streams (bytes flipped, cut short,
    lengths changed): every connection ends with a logged reason, none takes
    the endpoint or its real link down."""
    import random
    c, gamma, beta = serving_pair
    rng = random.Random(4242)
    good = HELLO + frame(FRAME_HEARTBEAT, heartbeat_payload()) + frame(FRAME_BATCH, b"b" * 300)
    at = gamma.log_offset()
    for _ in range(40):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(1, len(data)):]
        s = c.tls_client("gamma", c.certs["alpha"])
        s.sendall(bytes(data))
        s.shutdown(socket.SHUT_WR)
        read_frames(s, timeout=5)
        s.close()
    assert gamma.alive()
    closes = re.findall(r"-> clos(?:ed|ing): ", gamma.log_text(at))
    assert len(closes) >= 40
    wait_until(lambda: gamma.status()["pending_connections"] == 0, timeout=10,
               what="no connection left pending")
    assert relay_up(gamma, "beta")
    send_and_check(beta, gamma, 10, 1000)
