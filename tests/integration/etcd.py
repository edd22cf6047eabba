"""Real etcd members for the integration tests: a cluster of one or more
`etcd` processes (Debian's etcd-server), each on its own address and ports,
on this host's loopback or inside a test's network namespaces.

    cluster = etcd.EtcdCluster(tmp_path, members=[("e1", None, "127.0.0.1"),
                                                  ("e2", None, "127.0.0.1"),
                                                  ("e3", None, "127.0.0.1")])
    try:
        cluster.start()                    # all members, until healthy (bounded)
        cluster.client_urls                # ["http://127.0.0.1:P1", ...], in order
        cluster.stop_member("e2")          # an outage: SIGTERM (kill=True: SIGKILL)
        cluster.start_member("e2")         # back, same data dir, until healthy
    finally:
        cluster.cleanup()                  # every member killed, its files gone

With namespace sites (harness.SiteNetwork, netns_sites fixture), each member
runs inside its site and listens on the site's WAN address, so the members
reach each other, and the site's straitd reaches them, over the bridge:

    sites = netns_sites(3)
    cluster = etcd.EtcdCluster(tmp_path, [(f"e{i}", s.ns, s.wan_ip)
                                          for i, s in enumerate(sites)])

Every member is started by the test and stopped by its pid, never by
name. Health is etcd's own GET /health ({"health":"true"} once the member
has a leader), asked from inside the member's namespace (with curl there,
since the test's own namespace has no route to a site's address). Every wait
is bounded and fails with the member's log tail.

Raft timing defaults to a heartbeat of 100 ms and an election timeout of
1000 ms, so a lost leader is replaced in about a second; a test may pass
others. A member without quorum answers reads and writes only after etcd's
own request timeout (5 s + 2 x the election timeout), with 503 or 500.
"""

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import harness

ETCD = "etcd"
_seq = itertools.count(1)
# the members are local: no proxy from the environment in the way
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EtcdMember:
    """One member: its name, namespace (or None), address, ports and files."""

    def __init__(self, name, netns, ip, base):
        self.name = name
        self.netns = netns
        self.ip = ip
        self.client_port = harness.allocate_port()
        self.peer_port = harness.allocate_port()
        self.data_dir = os.path.join(base, f"{name}.etcd")
        self.logfile = os.path.join(base, f"{name}.log")
        self.proc = None

    @property
    def client_url(self):
        return f"http://{self._host()}:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://{self._host()}:{self.peer_port}"

    def _host(self):
        return f"[{self.ip}]" if ":" in self.ip else self.ip

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def in_netns(self, cmd):
        return ["ip", "netns", "exec", self.netns] + cmd if self.netns else cmd

    def log_tail(self, lines=40):
        with contextlib.suppress(OSError):
            with open(self.logfile, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        return ""

    def health(self, timeout=2.0):
        """etcd's /health answer as a dict, or None when the member does not answer."""
        url = self.client_url + "/health"
        try:
            if self.netns:
                res = harness.run(self.in_netns(["curl", "-s", "--noproxy", "*", "-m",
                                                 str(timeout), url]),
                                  check=False, timeout=timeout + 5)
                text = res.stdout if res.returncode == 0 else ""
            else:
                with _DIRECT.open(url, timeout=timeout) as r:
                    text = r.read().decode()
            return json.loads(text) if text else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None

    def healthy(self):
        h = self.health()
        return bool(h) and h.get("health") == "true"


class EtcdCluster:
    """etcd members started and stopped by the test.

    base_dir: a directory of the test's (its tmp_path); the members' data
    directories and logs go in a fresh directory under it, which cleanup()
    removes. members: [(name, netns or None, ip)], in the order of
    client_urls; names are unique. heartbeat_ms and election_ms: raft's
    timing; extra_args: more flags for every member.
    """

    def __init__(self, base_dir, members=(("etcd1", None, "127.0.0.1"),), heartbeat_ms=100,
                 election_ms=1000, extra_args=()):
        members = list(members)
        if not members:
            raise harness.HarnessError("an etcd cluster needs at least one member")
        if len({m[0] for m in members}) != len(members):
            raise harness.HarnessError(f"etcd member names must be unique: {members}")
        if any(m[1] for m in members) and not harness.IS_ROOT:
            raise harness.HarnessError("etcd members in network namespaces need root")
        seq = next(_seq)
        self.token = f"strait-{os.getpid()}-{seq}-{int(time.time() * 1000) % 100000000}"
        self.base = os.path.join(str(base_dir), f"etcd-{seq}")
        os.makedirs(self.base)
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args)
        self.members = {}
        for name, netns, ip in members:
            self.members[name] = EtcdMember(name, netns, ip, self.base)
        self._order = [m[0] for m in members]

    # ------------------------------------------------------------ addresses

    @property
    def client_urls(self):
        """Every member's client URL, in the order the members were given."""
        return [self.members[n].client_url for n in self._order]

    def client_url(self, name):
        return self.members[name].client_url

    def member(self, name):
        return self.members[name]

    def _initial_cluster(self):
        return ",".join(f"{n}={self.members[n].peer_url}" for n in self._order)

    # ---------------------------------------------------------------- start

    def command(self, name):
        m = self.members[name]
        return m.in_netns([
            ETCD, "--name", name, "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self._initial_cluster(),
            "--initial-cluster-state", "new", "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap", "--log-outputs", "stderr",
        ] + self.extra_args)

    def _spawn(self, name):
        m = self.members[name]
        if m.running():
            raise harness.HarnessError(f"etcd member {name} is already running")
        # etcd reads ETCD_* variables as flags: none of the caller's may leak in
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with open(m.logfile, "a") as log:
            # ip netns exec execs etcd in place, so the pid is etcd's own
            m.proc = subprocess.Popen(self.command(name), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env)

    def start(self, timeout=30.0):
        """Starts every member at once (each waits for the others' votes) and
        waits until all are healthy."""
        for name in self._order:
            self._spawn(name)
        self.wait_healthy(self._order, timeout)
        return self

    def start_member(self, name, wait=True, timeout=30.0):
        """Starts a stopped member again on its data directory; with wait,
        until it is healthy (which needs a quorum of members running)."""
        self._spawn(name)
        if wait:
            self.wait_healthy([name], timeout)

    def wait_healthy(self, names=None, timeout=30.0):
        names = list(names or [n for n in self._order if self.members[n].running()])

        def all_healthy():
            for n in names:
                m = self.members[n]
                if not m.running():
                    raise harness.HarnessError(
                        f"etcd member {n} exited {m.proc.returncode}:\n{m.log_tail()}")
                if not m.healthy():
                    return False
            return True
        try:
            harness.wait_until(all_healthy, timeout, interval=0.1,
                               what=f"etcd members {', '.join(names)} to be healthy")
        except TimeoutError as exc:
            tails = "\n".join(f"---- {n}\n{self.members[n].log_tail()}" for n in names)
            raise harness.HarnessError(f"{exc}\n{tails}") from None

    # ----------------------------------------------------------------- stop

    def stop_member(self, name, kill=False, timeout=10.0):
        """Stops a member by its pid: SIGTERM (SIGKILL after timeout), or
        SIGKILL at once with kill=True. Its data directory stays."""
        m = self.members[name]
        if not m.proc:
            return
        if m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                m.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()
        m.proc = None

    def stop(self):
        for name in self._order:
            self.stop_member(name)

    def cleanup(self):
        """Kills every member still running and removes their files."""
        for name in self._order:
            with contextlib.suppress(Exception):
                self.stop_member(name, kill=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tails(self, lines=40):
        """Each member's last log lines, for a failed test's report."""
        return "\n".join(f"---- etcd member {n}\n{self.members[n].log_tail(lines)}"
                         for n in self._order)
