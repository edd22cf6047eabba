"""Switchover among three sites: aws the primary of one stream to azure and
onprem, namespace sites joined by real WireGuard tunnels. The old primary
drains every replica before the target is promoted; the new primary tells
the other replica where its slot starts, so both replicas take its stream
from there with no copy."""

import json
import threading
import time

import psycopg
import pytest

import harness
from harness import wait_until
from test_fan_out import NAMES, sources, three_sites

pytestmark = pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")


def ledger_schema(pg, primary):
    pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, site text NOT NULL)")


def ledger_ids(pg):
    return [r[0] for r in pg.sql("SELECT id FROM ledger ORDER BY id")]


def copy_rounds(d):
    """Initial-sync rounds the site served as a source, from its log."""
    return d.log_text().count("asks for an initial sync round")


def test_switchover_to_each_replica_in_turn(tmp_path, netns_sites, pg_factory, straitd_factory):
    """A ledger writer follows the primary through switchovers to azure, to
    onprem and back to aws: every committed id is on every site exactly once,
    the replicas of each switchover follow the new primary, and nothing is
    copied after the first sync. The first switchover is typed at the
    primary, the next two at a replica (they run at the primary), and
    status --cluster at a replica shows every site."""
    pgs, d, _ = three_sites(tmp_path, netns_sites, pg_factory, straitd_factory,
                            schema=ledger_schema)

    def streaming(site, peers):
        s = sources(d[site])
        return set(s) == set(peers) and all(r["streaming"] for r in s.values())
    wait_until(lambda: streaming("aws", ("azure", "onprem")), 120, interval=0.5,
               what="the stream to both replicas")
    first_rounds = copy_rounds(d["aws"])
    committed, stop, current = [], threading.Event(), {"site": "aws"}

    def writer():
        i = 0
        while not stop.is_set():
            site = current["site"]
            try:
                with pgs[site].connect() as conn:
                    while not stop.is_set() and current["site"] == site:
                        i += 1
                        conn.execute("INSERT INTO ledger VALUES (%s, %s)", (i, site))
                        committed.append(i)
            except psycopg.Error:
                time.sleep(0.05)       # fenced: read-only, or the session was ended

    t = threading.Thread(target=writer)
    t.start()
    try:
        # (target, the site where the command is typed)
        for target, at in (("azure", "aws"), ("onprem", "aws"), ("aws", "azure")):
            before = len(committed)
            wait_until(lambda: len(committed) > before + 200, 30, what="ledger writes")
            old = current["site"]
            t0 = time.monotonic()
            res = d[at].ctl("switchover", "--to", target, timeout=200)
            print(f"switchover {old} -> {target} (typed at {at}): "
                  f"{time.monotonic() - t0:.2f} s\n{res.stdout}")
            out = res.stdout
            if at != old:
                assert out.startswith(f"site {old} (the primary) answers:\n"), out
            others = [n for n in NAMES if n != old]
            for site in others:
                assert f"drained: site {site} applied everything up to" in out, out
            third = next(n for n in others if n != target)
            assert f"told site {third} where the streams start: it follows site {target}" in out
            assert "switchover done in" in out, out
            current["site"] = target
            wait_until(lambda: d[target].status()["role"] == "primary", 30, what="the new primary")
            wait_until(lambda: streaming(target, others_of(target)), 60, interval=0.5,
                       what=f"{target}'s stream to both replicas")
            assert f"takes the streams from site {target}" in d[third].log_text()
    finally:
        stop.set()
        t.join()
    epoch = d["aws"].status()["epoch"]
    assert epoch == 4
    for n in NAMES:
        st = d[n].status()
        assert st["epoch"] == epoch
        assert st["role"] == ("primary" if n == "aws" else "replica")
    want = sorted(committed)
    for n in NAMES:
        wait_until(lambda: ledger_ids(pgs[n]) == want, 60, interval=0.5,
                   what=f"every committed id at {n}")
    # the replicas of the last primaries took the streams where they started: no copy
    assert copy_rounds(d["aws"]) == first_rounds
    assert copy_rounds(d["azure"]) == 0 and copy_rounds(d["onprem"]) == 0
    # the whole cluster from a replica's host
    table = d["onprem"].ctl("status", "--cluster").stdout
    print(table)
    lines = table.splitlines()
    assert lines[0] == "cluster acme-dr, as seen from site onprem"
    rows = {l.split()[0]: l.split() for l in lines[3:] if l and not l.startswith(" ")}
    assert rows["aws"][1:3] == ["primary", "4"] and rows["azure"][1:3] == ["replica", "4"]
    assert rows["onprem"][1:3] == ["replica", "4"]
    assert "-> azure" in table and "-> onprem" in table and "<- aws" in table
    doc = json.loads(d["azure"].ctl("status", "--cluster", "--json").stdout)
    assert [s["site"] for s in doc["sites"]] == list(NAMES)
    assert all(s["reachable"] and s["status"]["epoch"] == 4 for s in doc["sites"])
    # each primary's slot only, at the primary
    assert pgs["aws"].sql("SELECT count(*) FROM pg_replication_slots")[0][0] == 1
    for n in ("azure", "onprem"):
        assert pgs[n].sql("SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def others_of(site):
    return tuple(n for n in NAMES if n != site)
