"""Failover among three sites: aws the primary of one stream to azure and
onprem, namespace sites joined by real WireGuard tunnels, every server on
PostgreSQL's defaults except wal_level. The primary is cut off while one
replica is behind the other; whichever replica takes over, it first holds
what the other applied (the replicas keep the batches they applied), the
other follows it, and both end equal with no copy. What only the cut-off
primary committed is in its rejoin report and nowhere else. Two failovers
typed at once leave one primary, which the other site follows."""

import re
import threading
import time

import psycopg
import pytest

import harness
from harness import wait_until
from test_fan_out import NAMES, sources, three_sites
from test_switchover_sites import copy_rounds, ledger_ids, ledger_schema

pytestmark = pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")


def link_up(d, peer):
    peers = {p["site"]: p for p in d.status()["relay"]["peers"]}
    return peers[peer]["state"] == "up"


def role(d):
    return d.status()["role"]


class Writer:
    """Commits ledger ids at one site, one transaction each, until stopped;
    committed holds the ids whose commit returned."""

    def __init__(self, pg):
        self.pg, self.committed, self.stop = pg, [], threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                with self.pg.connect() as conn:
                    while not self.stop.is_set():
                        i += 1
                        conn.execute("INSERT INTO ledger VALUES (%s, 'aws')", (i,))
                        self.committed.append(i)
            except psycopg.Error:
                time.sleep(0.05)

    def wait_more(self, n, what):
        base = len(self.committed)
        wait_until(lambda: len(self.committed) >= base + n, 60, what=what)

    def halt(self):
        self.stop.set()
        self.thread.join()


def count(pg):
    return pg.sql("SELECT count(*) FROM ledger")[0][0]


BULK = (50000001, 50200000)     # one large transaction (about 60 MB of changes)


def cut_in_turn(tmp_path, netns_sites, pg_factory, straitd_factory, env=None, alone=False,
                bulk=False):
    """Streams to both replicas, then azure is cut off while aws commits the
    writer's transactions (bulk: and one large transaction; onprem goes
    ahead by them), then aws is cut off (alone: onprem too) while it still
    commits. Returns (pgs, daemons, namespaces, writer) with the writer stopped."""
    pgs, d, ns = three_sites(tmp_path, netns_sites, pg_factory, straitd_factory,
                             schema=ledger_schema, env=env)
    wait_until(lambda: set(sources(d["aws"])) == {"azure", "onprem"} and
               all(r["streaming"] for r in sources(d["aws"]).values()), 120, interval=0.5,
               what="the stream to both replicas")
    w = Writer(pgs["aws"])
    try:
        w.wait_more(200, "ledger writes")
        ns["azure"].set_wan(False)
        wait_until(lambda: not sources(d["aws"])["azure"]["link_up"], 60, interval=0.2,
                   what="the primary to see azure gone")
        if bulk:
            pgs["aws"].sql("INSERT INTO ledger SELECT g, 'bulk ' || repeat('x', 200) "
                           "FROM generate_series(%s, %s) g", BULK)
        w.wait_more(300, "writes while azure is away")
        ahead = 200 + (BULK[1] - BULK[0] if bulk else 0)
        wait_until(lambda: count(pgs["onprem"]) > count(pgs["azure"]) + ahead,
                   120, interval=0.5, what="onprem ahead of azure")
        ns["aws"].set_wan(False)
        if alone:
            ns["onprem"].set_wan(False)
        else:
            wait_until(lambda: not link_up(d["onprem"], "aws"), 60, interval=0.2,
                       what="onprem to see aws gone")
        w.wait_more(100, "writes only aws has")
    finally:
        w.halt()
    return pgs, d, ns, w


def replicas_apart(tmp_path, netns_sites, pg_factory, straitd_factory, env=None, bulk=False):
    """cut_in_turn(), then azure is back: azure and onprem reach each other, not aws."""
    pgs, d, ns, w = cut_in_turn(tmp_path, netns_sites, pg_factory, straitd_factory, env=env,
                                bulk=bulk)
    ns["azure"].set_wan(True)
    wait_until(lambda: link_up(d["azure"], "onprem") and link_up(d["onprem"], "azure"), 60,
               interval=0.2, what="azure and onprem to reach each other")
    return pgs, d, ns, w


@pytest.mark.parametrize("target", ["azure", "onprem"])
def test_failover_brings_the_replicas_level(target, tmp_path, netns_sites, pg_factory,
                                            straitd_factory):
    """Failover to the replica behind (azure) or ahead (onprem): both end with
    exactly what onprem had applied, no copy; the new primary's writes reach
    the other; aws, back, steps down and its rejoin report holds exactly the
    transactions no replica had. The replica behind also lacks a large
    transaction, which it takes from the other in its catch-up."""
    bulk = target == "azure"
    pgs, d, ns, w = replicas_apart(tmp_path, netns_sites, pg_factory, straitd_factory, bulk=bulk)
    other = "onprem" if target == "azure" else "azure"
    most = ledger_ids(pgs["onprem"])
    assert len(most) > len(ledger_ids(pgs["azure"])) + 200
    assert not bulk or (BULK[1] in most and BULK[1] not in ledger_ids(pgs["azure"]))
    t0 = time.monotonic()
    res = d[target].ctl("failover", "--to", target, timeout=200)
    print(f"failover to {target}: {time.monotonic() - t0:.2f} s\n{res.stdout}")
    out = res.stdout
    assert "failover done in" in out, out
    if target == "azure":
        assert "stream app: took from site onprem what it applied beyond this site" in out, out
    else:
        assert "stream app: site azure holds nothing this site lacks" in out, out
    assert f"told site {other} where the streams start: it follows site {target}" in out, out
    wait_until(lambda: role(d[other]) == "replica" and d[other].status()["primary"] == target,
               60, interval=0.2, what=f"{other} to follow {target}")
    log = d[other].log_text()
    assert f"takes the streams from site {target}" in log
    if other == "azure":
        assert "stream app: took from site onprem what this site lacked" in log
    # level: what onprem applied, at both, exactly once
    assert ledger_ids(pgs[target]) == most
    wait_until(lambda: ledger_ids(pgs[other]) == most, 60, interval=0.5, what=f"{other} level")
    # the new primary's writes reach the other replica
    pgs[target].sql("INSERT INTO ledger SELECT g, %s FROM generate_series(1000001, 1000100) g",
                    (target,))
    wait_until(lambda: len(ledger_ids(pgs[other])) == len(most) + 100, 60, interval=0.5,
               what=f"{target}'s writes at {other}")
    # nothing was copied again
    assert copy_rounds(d[target]) == 0

    # the old primary: back, fenced, and its rejoin keeps what no replica had
    ns["aws"].set_wan(True)
    wait_until(lambda: role(d["aws"]) == "fenced", 60, interval=0.2, what="aws to step down")
    wait_until(lambda: "(the primary) applied" in d["aws"].log_text(), 60, interval=0.2,
               what="the primary's FENCE")
    res = d["aws"].ctl("rejoin", "aws", timeout=200)
    print(res.stdout)
    m = re.search(r"(\d+) transactions \((\d+) statements\) committed here never "
                  r"reached site (\w+): written to (\S+)", res.stdout)
    assert m and m.group(3) == target, res.stdout
    with open(m.group(4)) as f:
        lost = {int(x) for x in re.findall(r"VALUES \('(\d+)'", f.read())}
    assert lost == set(w.committed) - set(most), sorted(lost ^ (set(w.committed) - set(most)))[:20]
    assert lost and not lost & set(ledger_ids(pgs[target]))
    wait_until(lambda: ledger_ids(pgs["aws"]) == ledger_ids(pgs[target]), 120, interval=0.5,
               what="aws re-seeded from the new primary")
    assert not lost & set(ledger_ids(pgs[other]))


def test_two_failovers_at_once_leave_one_primary(tmp_path, netns_sites, pg_factory,
                                                 straitd_factory):
    """failover typed at azure and at onprem at the same moment, each site
    stalled for 2 s once its claim is out (so both claims cross): azure, whose
    name sorts first, becomes primary; onprem gives its failover up and
    follows it; both end equal."""
    stall = {"STRAIT_FAULTS": "failover.claims_sent=stall:2"}
    pgs, d, ns, w = replicas_apart(tmp_path, netns_sites, pg_factory, straitd_factory,
                                   env={"azure": stall, "onprem": stall})
    most = ledger_ids(pgs["onprem"])
    results, start = {}, threading.Barrier(2)

    def run(site):
        start.wait()
        results[site] = d[site].ctl("failover", "--to", site, check=False, timeout=200)

    threads = [threading.Thread(target=run, args=(s,)) for s in ("azure", "onprem")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for site, res in results.items():
        print(f"{site}: exit {res.returncode}\n{res.stdout}{res.stderr}")
    assert results["azure"].returncode == 0 and results["onprem"].returncode == 1, results
    winner, loser = "azure", "onprem"
    refusal = results[loser].stderr
    assert "goes first" in refusal, refusal
    wait_until(lambda: role(d[loser]) == "replica" and d[loser].status()["primary"] == winner,
               60, interval=0.2, what=f"{loser} to follow {winner}")
    assert role(d[winner]) == "primary"
    assert d[winner].status()["epoch"] == d[loser].status()["epoch"] == 2
    assert ledger_ids(pgs[winner]) == most
    wait_until(lambda: ledger_ids(pgs[loser]) == most, 60, interval=0.5, what=f"{loser} level")
    pgs[winner].sql("INSERT INTO ledger VALUES (2000001, 'winner')")
    wait_until(lambda: 2000001 in ledger_ids(pgs[loser]), 60, interval=0.5,
               what="the winner's write at the other")
    assert copy_rounds(d[winner]) == 0
    for site in ("azure", "onprem"):
        assert "fault point failover.claims_sent: stall" in d[site].log_text()


@pytest.mark.parametrize("late", ["behind", "ahead"])
def test_a_replica_away_at_the_failover_follows_later_or_is_fenced(late, tmp_path, netns_sites,
                                                                    pg_factory, straitd_factory):
    """Every site cut off (azure first, so onprem is ahead), then one replica
    fails over alone; the other comes back later and asks the new primary
    where its streams start. Behind: it takes what it lacks and follows.
    Ahead: it cannot follow without losing what only it applied: it is
    fenced, and its rejoin report (from its retained batches) holds exactly
    those transactions before it is re-seeded."""
    target, away = ("onprem", "azure") if late == "behind" else ("azure", "onprem")
    pgs, d, ns, w = cut_in_turn(tmp_path, netns_sites, pg_factory, straitd_factory, alone=True)
    held = {n: ledger_ids(pgs[n]) for n in ("azure", "onprem")}
    ns[target].set_wan(True)
    wait_until(lambda: not link_up(d[target], away) and not link_up(d[target], "aws"), 60,
               interval=0.2, what=f"{target} alone")
    res = d[target].ctl("failover", "--to", target, timeout=200)
    print(res.stdout)
    assert f"site {away}, another replica, is not reachable" in res.stdout
    assert "failover done in" in res.stdout
    pgs[target].sql("INSERT INTO ledger VALUES (3000001, 'new primary')")

    ns[away].set_wan(True)
    if late == "behind":
        wait_until(lambda: role(d[away]) == "replica" and d[away].status()["primary"] == target,
                   60, interval=0.2, what=f"{away} to follow {target}")
        log = d[away].log_text()
        assert f"is primary at epoch 2, not site \"aws\": asking it where its streams start" in log
        assert f"stream app: took from site {target} what this site lacked" in log
        wait_until(lambda: ledger_ids(pgs[away]) == ledger_ids(pgs[target]), 60, interval=0.5,
                   what=f"{away} level with {target}")
        assert 3000001 in ledger_ids(pgs[away])
        assert copy_rounds(d[target]) == 0
        return
    wait_until(lambda: role(d[away]) == "fenced", 60, interval=0.2, what=f"{away} fenced")
    assert d[away].status()["primary"] == target
    log = d[away].log_text()
    assert f"site {away} cannot follow site {target} without losing what only it applied" in log
    wait_until(lambda: d[away].status()["database_fenced"], 30, what=f"{away}'s database fenced")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pgs[away].sql("INSERT INTO ledger VALUES (-1, 'no')")
    wait_until(lambda: "(the primary) applied" in d[away].log_text(), 60, interval=0.2,
               what="the primary's FENCE")
    res = d[away].ctl("rejoin", away, timeout=200)
    print(res.stdout)
    assert "no slot here" in res.stdout and "records from its retain" in res.stdout, res.stdout
    m = re.search(r"(\d+) transactions \((\d+) statements\) committed here never "
                  r"reached site (\w+): written to (\S+)", res.stdout)
    assert m and m.group(3) == target, res.stdout
    with open(m.group(4)) as f:
        lost = {int(x) for x in re.findall(r"VALUES \('(\d+)'", f.read())}
    assert lost == set(held[away]) - set(held[target]), \
        sorted(lost ^ (set(held[away]) - set(held[target])))[:20]
    wait_until(lambda: ledger_ids(pgs[away]) == ledger_ids(pgs[target]), 120, interval=0.5,
               what=f"{away} re-seeded from {target}")
    assert not lost & set(ledger_ids(pgs[target]))
