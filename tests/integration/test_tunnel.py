"""WireGuard tunnels brought up by straitd between network namespace sites, with
the real wireguard-go (this kernel has no WireGuard module, so backend auto
falls back to userspace).

Every site gets its own interface name: the UAPI sockets under
/var/run/wireguard/ are shared by all namespaces. Tests poll conditions with
deadlines (harness.wait_until), never bare sleeps.
"""

import itertools
import os
import re
import signal
import stat
import subprocess
import time

import pytest

import harness
import tlsutil
from harness import make_keypair, wait_until, write_config, write_private_key

PORT = 51820
_counter = itertools.count()

# Runs inside a site: accepts `count` TCP connections on (addr, port), reads
# each to the end and prints "<peer address> <bytes> <sha256>" per connection.
SERVER = r"""
import hashlib, socket, sys
addr, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(8)
s.settimeout(60)
for _ in range(count):
    c, peer = s.accept()
    c.settimeout(60)
    h = hashlib.sha256()
    n = 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d)
        n += len(d)
    c.close()
    print(peer[0], n, h.hexdigest(), flush=True)
"""

# Runs inside a site: for each destination address, connects to (addr, port),
# retrying until a deadline while the tunnel comes up, sends nbytes of random
# data and prints "<destination> <bytes> <sha256>".
CLIENT = r"""
import hashlib, os, socket, sys, time
port, nbytes, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
for addr in sys.argv[4:]:
    while True:
        try:
            c = socket.create_connection((addr, port), timeout=2)
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    c.settimeout(60)
    h = hashlib.sha256()
    left = nbytes
    while left:
        chunk = os.urandom(min(left, 1 << 16))
        c.sendall(chunk)
        h.update(chunk)
        left -= len(chunk)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
    print(addr, nbytes, h.hexdigest(), flush=True)
"""

# Runs inside a site: a tiny DNS server on 127.0.0.1:53 that answers A queries
# for the names given as name=address arguments (AAAA: no data; else NXDOMAIN).
DNS_SERVER = r"""
import socket, struct, sys
names = dict(a.split("=") for a in sys.argv[1:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode())
        i += 1 + q[i]
    qname, question = ".".join(labels).lower(), q[12:i + 5]
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    answers = b""
    rcode = 0
    if qname in names and qtype == 1:
        answers = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) +
                   socket.inet_aton(names[qname]))
    elif qname not in names:
        rcode = 3
    hdr = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
    s.sendto(hdr + question + answers, peer)
"""


def iface_name(index):
    """Unique per test run and site, at most 15 characters."""
    name = f"stw{os.getpid() % 100000}x{next(_counter)}"
    return name[:15]


def tunnel_addr(i, prefix):
    return f"10.77.0.{i + 1}/{prefix}"


def host_addr(i):
    return f"10.77.0.{i + 1}"


class Cluster:
    """n namespace sites with a key pair each; configs written per host."""

    def __init__(self, tmp_path, sites, prefix=24, backend="userspace", keepalive="25s"):
        self.tmp = tmp_path
        self.sites = sites
        self.names = [f"site{i}" for i in range(len(sites))]
        self.keys = [make_keypair() for _ in sites]
        self.ifaces = [iface_name(i) for i in range(len(sites))]
        self.prefix = prefix
        self.backend = backend
        self.keepalive = keepalive
        self.daemons = {}
        self.metrics = {}
        self.ca = tlsutil.make_ca(str(tmp_path / "ca"), "tunnel-test")

    def site_entry(self, i, public_key=None):
        return {"name": self.names[i], "role": "primary" if i == 0 else "replica",
                "endpoint": f"{self.sites[i].wan_ip}:{PORT}",
                "tunnel_address": tunnel_addr(i, self.prefix),
                "public_key": public_key or self.keys[i][1],
                "database": "host=/tmp dbname=app user=strait"}

    def write(self, i, members, backend=None, wrong_keys=None, tag="strait", tunnel=None):
        """Host i's config listing the sites in members (indexes)."""
        wrong_keys = wrong_keys or {}
        entries = [self.site_entry(k, wrong_keys.get(k)) for k in members]
        cluster = harness.site_config(str(self.tmp), "tunnel-test", entries)
        host_dir = self.tmp / self.names[i]
        host_dir.mkdir(exist_ok=True)
        cfg = harness.host_config(cluster, str(host_dir))
        # A reload may not move the metrics listener: keep the first one.
        cfg["metrics"] = self.metrics.setdefault(i, cfg["metrics"])
        cfg["tunnel"] = {"backend": backend or self.backend, "interface": self.ifaces[i],
                         "listen_port": PORT, "persistent_keepalive": self.keepalive}
        cfg["tunnel"].update(tunnel or {})
        if not os.path.exists(cfg["private_key_file"]):
            write_private_key(cfg["private_key_file"], self.keys[i][0])
            cert = tlsutil.make_site_cert(self.ca, str(self.tmp / "ca"), self.names[i])
            tlsutil.install_site_tls(self.ca, cert, str(host_dir))
        path = str(host_dir / f"{tag}.yaml")
        write_config(path, cfg)
        return path

    def start(self, factory, i, members=None, args=(), **kw):
        members = list(range(len(self.sites))) if members is None else members
        path = self.write(i, members, **kw)
        d = factory(path, site=self.names[i], netns=self.sites[i].ns, args=args, start=False)
        self.daemons[i] = d
        return start_daemon(d)


def start_daemon(d, timeout=20):
    """Starts d and waits until its control socket answers status."""
    d.start(wait=False)

    def ready():
        if not d.alive():
            raise harness.HarnessError(f"straitd exited:\n{d.log_text()}")
        return d.ctl("status", "--json", check=False).returncode == 0
    try:
        wait_until(ready, timeout, what="straitd's control socket")
    except TimeoutError:
        raise harness.HarnessError(f"straitd did not become ready:\n{d.log_text()}")
    return d


def peers_of(d):
    return {p["site"]: p for p in d.status()["tunnel"]["peers"]}


def wait_peers_up(d, names, timeout=20):
    def up():
        peers = peers_of(d)
        return all(n in peers and peers[n]["state"] == "up" for n in names) and peers
    return wait_until(up, timeout, what=f"handshakes with {sorted(names)}")


def exchange(pairs, nbytes, timeout=30, port=7777):
    """Sends nbytes over TCP for every (src site, src index, dst site, dst index)
    in pairs, all at once (one server and one client process per site).
    Returns {(src index, dst index): (sent sha256, received sha256)}."""
    servers, clients = {}, {}
    inbound, outbound = {}, {}
    for src, si, dst, di in pairs:
        inbound.setdefault(di, [dst, 0])[1] += 1
        outbound.setdefault(si, [src, []])[1].append(host_addr(di))
    try:
        for di, (dst, count) in inbound.items():
            servers[di] = dst.popen(["python3", "-c", SERVER, host_addr(di), str(port),
                                     str(count)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        for si, (src, addrs) in outbound.items():
            clients[si] = src.popen(["python3", "-c", CLIENT, str(port), str(nbytes),
                                     str(timeout)] + addrs, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        sent, received = {}, {}
        for si, proc in clients.items():
            out, err = proc.communicate(timeout=timeout + 120)
            assert proc.returncode == 0, err
            for line in out.splitlines():
                addr, n, digest = line.split()
                sent[(si, int(addr.rsplit(".", 1)[1]) - 1)] = (int(n), digest)
        for di, proc in servers.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            for line in out.splitlines():
                addr, n, digest = line.split()
                received[(int(addr.rsplit(".", 1)[1]) - 1, di)] = (int(n), digest)
    finally:
        for proc in list(servers.values()) + list(clients.values()):
            if proc.poll() is None:
                proc.kill()         # by its pid; Popen reaps it
                proc.wait()
    return {key: (sent.get(key), received.get(key)) for key in sent}


def transfer(src, si, dst, di, nbytes, timeout=30, port=7777):
    """One TCP transfer from site si to site di's tunnel address:
    (sender's (bytes, sha256), receiver's (bytes, sha256))."""
    return exchange([(src, si, dst, di)], nbytes, timeout, port)[(si, di)]


def link_exists(site, iface):
    return site.run(["ip", "link", "show", iface], check=False).returncode == 0


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------

def test_two_sites_carry_50_mib(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(2)
    c = Cluster(tmp_path, sites)
    # One site says "auto": no kernel module here, so it falls back to userspace.
    a = c.start(straitd_factory, 0, backend="auto")
    b = c.start(straitd_factory, 1)
    wait_peers_up(a, ["site1"])
    wait_peers_up(b, ["site0"])

    st = a.status()["tunnel"]
    assert st["backend"] == "userspace" and st["configured_backend"] == "auto"
    assert st["interface"] == c.ifaces[0]
    assert st["listen_port"] == PORT
    assert st["mtu"] == 1420          # veth MTU 1500 on the route to the endpoint, minus 80
    assert st["address"] == "10.77.0.1/24"
    assert st["public_key"] == c.keys[0][1]
    assert c.keys[0][0] not in a.ctl("status", "--json").stdout
    assert c.keys[0][0] not in a.log_text()
    assert a.log_text().count("kernel WireGuard is not available") == 1
    peer = st["peers"][0]
    assert peer["public_key"] == c.keys[1][1]
    assert peer["endpoint"] == f"{sites[1].wan_ip}:{PORT}"
    assert peer["allowed_ips"] == ["10.77.0.2/32"]
    assert peer["persistent_keepalive"] == 25
    assert peer["handshake_age_seconds"] >= 0
    assert abs(peer["last_handshake"] - time.time()) < 60

    # The interface has the address, MTU and is up (read with iproute2).
    out = sites[0].run(["ip", "-o", "addr", "show", "dev", c.ifaces[0]]).stdout
    assert "10.77.0.1/24" in out
    out = sites[0].run(["ip", "-o", "link", "show", "dev", c.ifaces[0]]).stdout
    assert "mtu 1420" in out and ",UP" in out

    sent, received = transfer(sites[0], 0, sites[1], 1, 50 * 1024 * 1024, port=7701)
    assert sent == received
    assert received[0] == 50 * 1024 * 1024
    peer = peers_of(a)["site1"]
    assert peer["tx_bytes"] > 50 * 1024 * 1024

    text = a.ctl("status", "--verbose").stdout
    assert "state: up" in text and "site1" in text
    # the compact table: site1's tunnel handshake, by its age
    row = next(l for l in a.ctl("status").stdout.splitlines() if l.startswith("site1 "))
    assert re.search(r"  \d+(\.\d)? [smhd] ago  ", row), row


def test_three_sites_full_mesh(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(3)
    c = Cluster(tmp_path, sites)
    daemons = [c.start(straitd_factory, i) for i in range(3)]
    for i, d in enumerate(daemons):
        wait_peers_up(d, [c.names[k] for k in range(3) if k != i])
    pairs = [(sites[i], i, sites[k], k) for i, k in itertools.permutations(range(3), 2)]
    result = exchange(pairs, 256 * 1024, port=7710)
    assert len(result) == 6
    for (i, k), (sent, received) in result.items():
        assert sent == received, f"site{i} -> site{k}"


def test_wrong_public_key_gets_no_handshake(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(2)
    c = Cluster(tmp_path, sites)
    wrong = make_keypair()[1]
    # Host 0 was given a wrong key for site1; host 1's file is right.
    a = c.start(straitd_factory, 0, wrong_keys={1: wrong})
    b = c.start(straitd_factory, 1)

    def says_so():
        p = peers_of(a)["site1"]
        return p["state"] == "no handshake yet" and "problem" in p and p
    peer = wait_until(says_so, 40, what="the no-handshake hint")
    assert peer["public_key"] == wrong
    assert peer["last_handshake"] is None and peer["rx_bytes"] == 0
    assert "public_key" in peer["problem"] and "site1" in peer["problem"]
    assert "no handshake yet" in a.ctl("status", "--verbose").stdout
    row = next(l for l in a.ctl("status").stdout.splitlines() if l.startswith("site1 "))
    assert "  never  " in row and "public_key" in row, row
    # The other side hears nothing it can accept either.
    other = peers_of(b)["site0"]
    assert other["last_handshake"] is None and other["state"].startswith("no handshake")


def test_reload_adds_and_removes_without_disturbing_others(tmp_path, netns_sites,
                                                           straitd_factory):
    sites = netns_sites(4)
    c = Cluster(tmp_path, sites)
    a = c.start(straitd_factory, 0, members=[0, 1, 2])
    c.start(straitd_factory, 1, members=[0, 1])
    c.start(straitd_factory, 2, members=[0, 2])
    c.start(straitd_factory, 3, members=[0, 3])
    before = wait_peers_up(a, ["site1", "site2"])
    b_before = before["site1"]
    log_mark = len(a.log_text())

    # site2 leaves, site3 joins; site1 is unchanged.
    c.write(0, [0, 1, 3])
    a.reload()
    def reloaded():
        peers = peers_of(a)
        return set(peers) == {"site1", "site3"} and peers["site3"]["state"] == "up" and peers
    try:
        after = wait_until(reloaded, 20, what="the reload to add site3 and remove site2")
    except TimeoutError:
        raise AssertionError(f"{peers_of(a)}\n{a.log_text()}")
    b_after = after["site1"]
    assert b_after["last_handshake"] == b_before["last_handshake"]
    assert b_after["rx_bytes"] >= b_before["rx_bytes"]
    assert b_after["tx_bytes"] >= b_before["tx_bytes"]
    new_log = a.log_text()[log_mark:]
    assert 'peer for site "site3"' in new_log and "removed peer" in new_log
    assert 'peer for site "site1"' not in new_log
    sent, received = transfer(sites[0], 0, sites[3], 3, 64 * 1024, port=7720)
    assert sent == received
    sent, received = transfer(sites[1], 1, sites[0], 0, 64 * 1024, port=7721)
    assert sent == received


def test_wireguard_go_killed_is_restarted(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(2)
    c = Cluster(tmp_path, sites)
    a = c.start(straitd_factory, 0)
    b = c.start(straitd_factory, 1)
    wait_peers_up(a, ["site1"])
    wait_peers_up(b, ["site0"])
    old_pid = a.status()["tunnel"]["userspace"]["pid"]
    assert old_pid and pid_alive(old_pid)

    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)

    def restarted():
        us = a.status()["tunnel"]["userspace"]
        return us["state"] == "running" and us["pid"] not in (None, old_pid) and us
    us = wait_until(restarted, 10, what="wireguard-go to be restarted")
    assert us["restarts"] == 1
    # Traffic crosses the tunnel again within 10 s of the kill.
    left = 10 - (time.monotonic() - killed_at)
    sent, received = transfer(sites[0], 0, sites[1], 1, 64 * 1024,
                              timeout=max(left, 0.5), port=7730)
    assert sent == received
    assert time.monotonic() - killed_at < 10
    assert "was terminated by signal 9" in a.log_text()
    assert link_exists(sites[0], c.ifaces[0])
    assert "10.77.0.1/24" in sites[0].run(["ip", "-o", "addr", "show", "dev",
                                           c.ifaces[0]]).stdout


def test_shutdown_removes_the_interface(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(1)
    c = Cluster(tmp_path, sites)
    a = c.start(straitd_factory, 0)
    pid = a.status()["tunnel"]["userspace"]["pid"]
    assert link_exists(sites[0], c.ifaces[0])
    assert a.stop() == 0
    assert not pid_alive(pid)
    assert not link_exists(sites[0], c.ifaces[0])
    assert not os.path.exists(f"/var/run/wireguard/{c.ifaces[0]}.sock")


def test_keep_tunnel_leaves_it_up(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(1)
    c = Cluster(tmp_path, sites)
    a = c.start(straitd_factory, 0, args=["--keep-tunnel"])
    pid = a.status()["tunnel"]["userspace"]["pid"]
    try:
        assert a.stop() == 0
        assert pid_alive(pid)
        assert link_exists(sites[0], c.ifaces[0])
        assert "10.77.0.1/24" in sites[0].run(["ip", "-o", "addr", "show", "dev",
                                               c.ifaces[0]]).stdout
        # A new straitd adopts the running interface and leaves it running at exit.
        a2 = c.start(straitd_factory, 0)
        st = a2.status()["tunnel"]
        assert st["userspace"]["state"] == "adopted"
        assert a2.stop() == 0
        assert pid_alive(pid)
    finally:
        harness.kill_pid(pid)
    wait_until(lambda: not link_exists(sites[0], c.ifaces[0]), 10,
               what="the interface to go with its wireguard-go")


def test_private_key_readable_by_others_is_refused(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(2)
    c = Cluster(tmp_path, sites)
    path = c.write(0, [0, 1])
    key_file = str(tmp_path / "site0" / "wireguard.key")
    os.chmod(key_file, 0o644)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o644
    d = straitd_factory(path, site="site0", netns=sites[0].ns, start=False).start(wait=False)
    assert d.wait_exit() != 0
    log = d.log_text()
    assert "group or world access" in log and "chmod 600" in log
    assert not link_exists(sites[0], c.ifaces[0])


def test_endpoint_names_are_resolved_asynchronously(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(2)
    c = Cluster(tmp_path, sites)
    name = "gw-site1.strait.test"
    # "ip netns exec" shows /etc/netns/NS/resolv.conf as /etc/resolv.conf.
    netns_etc = f"/etc/netns/{sites[0].ns}"
    os.makedirs(netns_etc, exist_ok=True)
    dns = None
    try:
        with open(os.path.join(netns_etc, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
        dns = sites[0].popen(["python3", "-c", DNS_SERVER, f"{name}={sites[1].wan_ip}"],
                             stdout=subprocess.PIPE, text=True)
        assert dns.stdout.readline().strip() == "ready"
        orig = c.site_entry

        def named_entry(i, public_key=None):
            entry = orig(i, public_key)
            if i == 1:
                entry["endpoint"] = f"{name}:{PORT}"
            return entry
        c.site_entry = named_entry
        a = c.start(straitd_factory, 0)
        c.start(straitd_factory, 1)
        peer = wait_peers_up(a, ["site1"])["site1"]
        assert peer["configured_endpoint"] == f"{name}:{PORT}"
        assert peer["endpoint"] == f"{sites[1].wan_ip}:{PORT}"
        assert f'endpoint "{name}" of site "site1" resolves to {sites[1].wan_ip}:{PORT}' \
            in a.log_text()
    finally:
        if dns is not None:
            dns.kill()          # by its pid; Popen reaps it
            dns.wait()
        for f in os.listdir(netns_etc):
            os.unlink(os.path.join(netns_etc, f))
        os.rmdir(netns_etc)


def test_kernel_backend_without_module_fails_clearly(tmp_path, netns_sites, straitd_factory):
    if os.path.exists("/sys/module/wireguard"):
        pytest.skip("this kernel has WireGuard: the kernel backend would work")
    sites = netns_sites(2)
    c = Cluster(tmp_path, sites)
    path = c.write(0, [0, 1], backend="kernel")
    d = straitd_factory(path, site="site0", netns=sites[0].ns, start=False).start(wait=False)
    assert d.wait_exit() != 0
    assert 'could not find the "wireguard" generic netlink family' in d.log_text()
    assert not link_exists(sites[0], c.ifaces[0])


def test_mtu_follows_the_path_unless_configured(tmp_path, netns_sites, straitd_factory):
    sites = netns_sites(2)
    sites[0].run(["ip", "link", "set", sites[0].wan_if, "mtu", "1400"])
    c = Cluster(tmp_path, sites)
    a = c.start(straitd_factory, 0)

    def link_mtu():
        out = sites[0].run(["ip", "-o", "link", "show", "dev", c.ifaces[0]]).stdout
        return int(out.split(" mtu ")[1].split()[0])
    # As wg-quick: the MTU of the route to the peer's endpoint (1400) minus 80.
    assert a.status()["tunnel"]["mtu"] == 1320
    assert link_mtu() == 1320
    # The config's mtu overrides it, also on reload.
    c.write(0, [0, 1], tunnel={"mtu": 1380})
    a.reload()
    wait_until(lambda: a.status()["tunnel"]["mtu"] == 1380, 10, what="the MTU to change")
    assert link_mtu() == 1380
