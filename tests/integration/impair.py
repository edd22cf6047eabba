"""A lossy, slow WAN between namespace sites, for tests that need one.

The kernel here has no netem, so tests/tools/udp_impair stands in for it: it
runs in the hub namespace (the bridge's) on an address of its own,
192.0.2.254, and listens on one UDP port per site. Each site's WireGuard
endpoint in the config points at its port on the relay, which forwards to the
site's real endpoint (WAN address, port 51820) after the configured delay, or
drops the datagram; replies come back the same way. WireGuard learns the
relay's addresses as its peers' endpoints when it roams, so every packet
between the sites, in both directions, crosses the relay.

    relay = impair.Relay(net_sites, delay_ms=100, jitter_ms=10, loss_pct=2, seed=1)
    sites = impair.route_through(harness.tunnel_sites(pgs, net_sites), relay, net_sites)
    ...
    stats = relay.stop()        # {"received": ..., "dropped_loss": ..., ...}
"""

import json
import os
import select
import subprocess
import tempfile

import harness

RELAY_IP = harness.WAN_PREFIX + "254"
RELAY_BASE_PORT = 40000
WG_PORT = 51820
TOOL = os.path.join(harness.BUILD, "tools", "udp_impair")


class ImpairProcess:
    """One udp_impair process inside namespace ns: maps is a list of
    (listen, dest) host:port pairs. It is waited for ("ready", at most
    READY_S) and stopped by its pid (SIGTERM: it prints its statistics as
    JSON). Its stderr goes to logfile, or to a temporary file."""

    READY_S = 10

    def __init__(self, ns, maps, delay_ms=0, jitter_ms=0, loss_pct=0, reorder_pct=0, seed=1,
                 logfile=None):
        self.stats = None
        self.stopped = False
        self.err = open(logfile, "a+") if logfile else tempfile.TemporaryFile(mode="w+")
        cmd = ["ip", "netns", "exec", ns, TOOL]
        for listen, dest in maps:
            cmd += ["--map", f"{listen}={dest}"]
        cmd += ["--delay", str(delay_ms), "--jitter", str(jitter_ms), "--loss", str(loss_pct),
                "--reorder", str(reorder_pct), "--seed", str(seed)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], self.READY_S)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self.stop()
            raise harness.HarnessError(f"udp_impair did not start within {self.READY_S}s: "
                                       f"{line!r} {self.log_tail()}")

    @property
    def pid(self):
        return self.proc.pid if self.proc.poll() is None else None

    def log_tail(self, chars=2000):
        self.err.flush()
        self.err.seek(0)
        return self.err.read()[-chars:]

    def stop(self):
        """Stops it (once); its statistics as a dict, None when it printed none."""
        if self.stopped:
            return self.stats
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        if lines:
            self.stats = json.loads(lines[-1])
        return self.stats


class Relay:
    """udp_impair in the hub namespace of net_sites, one port per site:
    RELAY_IP:(RELAY_BASE_PORT + i) forwards to site i's WAN address."""

    def __init__(self, net_sites, delay_ms=0, jitter_ms=0, loss_pct=0, reorder_pct=0, seed=1):
        self.hub = net_sites[0].hub
        self.endpoints = {}
        maps = []
        for i, site in enumerate(net_sites):
            port = RELAY_BASE_PORT + i
            self.endpoints[site.ns] = f"{RELAY_IP}:{port}"
            maps.append((f"{RELAY_IP}:{port}", f"{site.wan_ip}:{WG_PORT}"))
        # the bridge gets an address, so the relay is reachable from every site
        harness.run(["ip", "netns", "exec", self.hub, "ip", "addr", "replace",
                     f"{RELAY_IP}/24", "dev", "br0"])
        self.proc = ImpairProcess(self.hub, maps, delay_ms=delay_ms, jitter_ms=jitter_ms,
                                  loss_pct=loss_pct, reorder_pct=reorder_pct, seed=seed)
        self.stats = None

    def endpoint(self, site):
        """The relay's address that stands for site (a harness.Site)."""
        return self.endpoints[site.ns]

    def stop(self):
        """Stops the relay; its statistics as a dict (also kept in .stats)."""
        self.stats = self.proc.stop()
        if self.stats is None:
            raise harness.HarnessError(f"udp_impair printed no statistics: "
                                       f"{self.proc.log_tail()}")
        return self.stats


def route_through(site_dicts, relay, net_sites):
    """tunnel_sites() dicts with each site's endpoint replaced by the relay's."""
    out = []
    for s, ns in zip(site_dicts, net_sites):
        out.append(dict(s, endpoint=relay.endpoint(ns)))
    return out
