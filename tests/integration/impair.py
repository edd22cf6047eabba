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
import subprocess

import harness

RELAY_IP = harness.WAN_PREFIX + "254"
RELAY_BASE_PORT = 40000
WG_PORT = 51820
TOOL = os.path.join(harness.BUILD, "tools", "udp_impair")


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
            maps += ["--map", f"{RELAY_IP}:{port}={site.wan_ip}:{WG_PORT}"]
        # the bridge gets an address, so the relay is reachable from every site
        harness.run(["ip", "netns", "exec", self.hub, "ip", "addr", "replace",
                     f"{RELAY_IP}/24", "dev", "br0"])
        cmd = [TOOL] + maps + ["--delay", str(delay_ms), "--jitter", str(jitter_ms),
                               "--loss", str(loss_pct), "--reorder", str(reorder_pct),
                               "--seed", str(seed)]
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.hub] + cmd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise harness.HarnessError(f"udp_impair did not start: {line!r} {err}")
        self.stats = None

    def endpoint(self, site):
        """The relay's address that stands for site (a harness.Site)."""
        return self.endpoints[site.ns]

    def stop(self):
        """Stops the relay; its statistics as a dict (also kept in .stats)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                out, err = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
            lines = [l for l in out.splitlines() if l.startswith("{")]
            if not lines:
                raise harness.HarnessError(f"udp_impair printed no statistics: {err}")
            self.stats = json.loads(lines[-1])
        return self.stats


def route_through(site_dicts, relay, net_sites):
    """tunnel_sites() dicts with each site's endpoint replaced by the relay's."""
    out = []
    for s, ns in zip(site_dicts, net_sites):
        out.append(dict(s, endpoint=relay.endpoint(ns)))
    return out
