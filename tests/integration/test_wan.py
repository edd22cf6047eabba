"""Replication over a bad WAN: two namespace sites whose WireGuard tunnel
crosses tests/tools/udp_impair (tests/integration/impair.py), 100 ms each
way with +-10 ms of jitter (200 ms round trip) and 2 % loss each way. A
write load on the source must arrive at the target exactly (table_dump
equal, the TPC-B balances intact) within a bounded time. The relay's
statistics go to the test output."""

import time

import pytest

import harness
import impair
from harness import table_dump, wait_until

pytestmark = pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
TRANSACTIONS = 3000


def source_streaming(d):
    rows = [r for r in d.status().get("replication", []) if r["role"] == "source"]
    return rows and rows[0]["streaming"]


def tpcb_balanced(pg):
    rows = pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                  "(SELECT sum(bbalance) FROM pgbench_branches), "
                  "(SELECT sum(tbalance) FROM pgbench_tellers), "
                  "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)")[0]
    return len(set(rows)) == 1


def cloud_link(d):
    return {p["site"]: p for p in d.status()["relay"]["peers"]}["cloud"]


def tunnel_rtt_ms(site, peer_tunnel_ip):
    """The smallest of a few pings through the tunnel, in ms."""
    res = site.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", peer_tunnel_ip], check=False)
    line = next((l for l in res.stdout.splitlines() if "min/avg/max" in l), None)
    return float(line.split("=")[1].split("/")[0]) if line else None


def test_replication_converges_over_a_lossy_slow_wan(tmp_path, netns_sites, pg_factory,
                                                     straitd_factory):
    ns = netns_sites(2)
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        pg.pgbench("-i", "-s", "1", "-q")
    relay = impair.Relay(ns, delay_ms=100, jitter_ms=10, loss_pct=2, seed=20240601)
    try:
        sites = impair.route_through(harness.tunnel_sites([src, dst], ns), relay, ns)
        stream = {"name": "app", "from": "onprem", "to": "cloud",
                  "publication": "strait_app", "initial_sync": False}
        cluster = harness.Cluster(tmp_path, sites, [stream], backend="userspace")
        onprem = straitd_factory(cluster.path("onprem"), site="onprem", netns=ns[0].ns)
        straitd_factory(cluster.path("cloud"), site="cloud", netns=ns[1].ns)
        wait_until(lambda: source_streaming(onprem), 60, interval=0.2,
                   what="the source to stream over the impaired tunnel")
        rtt = tunnel_rtt_ms(ns[0], "10.77.0.2")

        connects = cloud_link(onprem)["connects"]    # the start may take tries here
        start = time.monotonic()
        src.pgbench("-c", "2", "-t", str(TRANSACTIONS // 2), "-n")
        loaded = time.monotonic()
        assert src.sql("SELECT count(*) FROM pgbench_history")[0][0] == TRANSACTIONS

        def same():
            return all(table_dump(src, t) == table_dump(dst, t) for t in PGBENCH_TABLES)
        wait_until(same, 60, interval=0.5, what="the target to equal the source")
        converged = time.monotonic()
        assert tpcb_balanced(dst)
        # the source saw its link lose packets; lone commits then go as batches
        # with nothing behind them, each followed by probes (lossprobe.h) once
        # TCP sent it, which the sink drops: the link stays up (a peer that
        # refused them would drop it at the first, again and again)
        link = cloud_link(onprem)
        assert link["losing_packets"], link
        probes = link["loss_probes_sent"]
        for i in range(5):
            src.sql("UPDATE pgbench_branches SET filler = %s WHERE bid = 1", (f"lone {i}",))
            wait_until(lambda: dst.sql("SELECT filler FROM pgbench_branches WHERE bid = 1")[0][0]
                       .strip() == f"lone {i}", 30, interval=0.1, what=f"lone commit {i}")
        link = cloud_link(onprem)
        assert link["loss_probes_sent"] >= probes + 3, (probes, link)
        assert link["connects"] - connects <= 1, link
    finally:
        stats = relay.stop()
    print(f"\n{TRANSACTIONS} transactions over 100 ms +-10 ms each way, 2 % loss each way: "
          f"load {loaded - start:.1f} s, converged {converged - loaded:.1f} s after it; "
          f"tunnel RTT min {rtt} ms")
    print(f"relay: {stats['received']} datagrams, {stats['dropped_loss']} dropped (loss), "
          f"{stats['dropped_queue']} dropped (queue), {stats['delayed']} delayed, "
          f"{stats['reordered']} reordered, {stats['bytes']} bytes forwarded")
    print(f"loss probes: {link['loss_probes_sent']} sent by onprem after "
          f"{link['frames_sent']} frames in all")
    # the impairment was real: the path was slow and datagrams were lost
    assert rtt is not None and rtt >= 170, rtt
    assert stats["dropped_loss"] > 0 and stats["delayed"] > 0
    assert 0.01 < stats["dropped_loss"] / stats["received"] < 0.03
