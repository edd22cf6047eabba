"""Cascading (streams[].via): aws the primary, azure a replica fed direct,
onprem a replica fed through azure's straitd, three namespace sites joined
by real WireGuard tunnels, servers on PostgreSQL's defaults except
wal_level. The primary's site sends the stream once; azure relays what it
fsynced and keeps what onprem has not committed."""

import threading
import time

import pytest

import harness
from harness import wait_until
from test_fan_out import equal, sources, three_sites
from test_replication import tpcb_balanced

pytestmark = pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")


def sent_to(d, peer):
    peers = {p["site"]: p for p in d.status()["relay"]["peers"]}
    return peers[peer]["bytes_sent"]


def sink(d):
    return next(r for r in d.status()["replication"] if r["role"] == "sink")


def test_a_relayed_replica_costs_the_primary_one_copy(tmp_path, netns_sites, pg_factory,
                                                      straitd_factory):
    """Under pgbench load the primary's site sends about one copy (to azure);
    onprem gets every transaction through azure, also while it was cut off
    (azure held what it lacked), and ends equal."""
    pgs, d, ns = three_sites(tmp_path, netns_sites, pg_factory, straitd_factory,
                             via={"onprem": "azure"}, retain="1s")
    aws, azure, onprem = pgs["aws"], pgs["azure"], pgs["onprem"]
    wait_until(lambda: equal(aws, azure) and equal(aws, onprem), 180, interval=0.5,
               what="both replicas copied")
    assert sink(d["onprem"])["relay"] == "azure"
    assert sources(d["aws"])["onprem"]["relayed_by"] == "azure"
    assert "-> onprem" in d["aws"].ctl("status").stdout

    before = {p: sent_to(d["aws"], p) for p in ("azure", "onprem")}
    aws.pgbench("-c", "2", "-T", "8", "-n")
    wait_until(lambda: equal(aws, azure) and equal(aws, onprem), 120, interval=0.5,
               what="both replicas level after the load")
    cost = {p: sent_to(d["aws"], p) - before[p] for p in ("azure", "onprem")}
    relayed = sent_to(d["azure"], "onprem")
    print(f"bytes the primary sent during the load: {cost}; azure relayed to onprem "
          f"{relayed} bytes in all")
    # heartbeats and acknowledgements only go to onprem from the primary
    assert cost["onprem"] < cost["azure"] / 20, cost
    assert relayed > cost["azure"] / 2
    assert tpcb_balanced(onprem)

    # onprem away: azure keeps what it lacks, and it catches up through azure
    ns["onprem"].set_wan(False)
    load = threading.Thread(target=aws.pgbench, args=("-c", "2", "-T", "5", "-n"))
    load.start()
    load.join()
    wait_until(lambda: equal(aws, azure), 60, interval=0.5, what="azure level")
    time.sleep(11)          # past a trim of azure's retained batches (1s old, every 10 s)
    assert not equal(aws, onprem)
    held = sink(d["azure"])["retained"]
    assert held["bytes"] > 0
    ns["onprem"].set_wan(True)
    wait_until(lambda: equal(aws, onprem), 120, interval=0.5, what="onprem to catch up")
    assert tpcb_balanced(onprem)
    assert "gap" not in d["onprem"].log_text()
