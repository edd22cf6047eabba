"""One stream to several sites (to: a list): three namespace sites on one
bridge joined by real WireGuard tunnels, aws the primary and azure and onprem
its replicas. The primary's slot is read once and spooled once; each
destination has its own sender, position and lag, and nothing leaves the
spool or the slot before every destination has committed it."""

import json
import os
import threading
import time

import pytest

import harness
from harness import table_dump, wait_until
from test_replication import tpcb_balanced
from test_spool import harness_metrics as metrics

pytestmark = pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
NAMES = ("aws", "azure", "onprem")


def sources(d):
    """The source side's entries of status, by destination."""
    return {r["peer"]: r for r in d.status()["replication"] if r["role"] == "source"}


def equal(src, dst):
    return all(table_dump(src, t) == table_dump(dst, t) for t in PGBENCH_TABLES)


def slot_confirmed(pg, slot="strait_app"):
    rows = pg.sql("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                  "WHERE slot_name = %s", (slot,))
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def loopback_three(pg_factory, straitd_factory, tmp_path, table_sql, to=("azure", "onprem"),
                   **stream_keys):
    """aws, azure and onprem on this host's loopback, table_sql run at each,
    one stream from aws to `to`; waits until aws streams to every
    destination. Returns (pgs, daemons, cluster), the first two by name."""
    pgs = dict(zip(NAMES, harness.on_each(pg_factory, NAMES)))
    for pg in pgs.values():
        pg.sql(table_sql)
    stream = dict({"name": "app", "from": "aws", "to": list(to) if len(to) > 1 else to[0],
                   "publication": "strait_app", "initial_sync": False}, **stream_keys)
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([pgs[n] for n in NAMES], NAMES),
                              [stream])
    d = {n: straitd_factory(cluster.path(n), site=n) for n in NAMES}
    wait_until(lambda: set(sources(d["aws"])) == set(to) and
               all(r["streaming"] for r in sources(d["aws"]).values()), 60, interval=0.2,
               what="the stream to every destination")
    return pgs, d, cluster


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.split()[-1])
    return None


def pgbench_schema(pg, primary):
    """pgbench's tables, filled at the primary only."""
    if primary:
        pg.pgbench("-i", "-s", "2", "-q")
    else:
        pg.pgbench("-i", "-I", "dtp", "-s", "2", "-q")


def three_sites(tmp_path, netns_sites, pg_factory, straitd_factory, schema=pgbench_schema,
                env=None, **stream_keys):
    """Three namespace sites joined by WireGuard, aws the primary; schema(pg,
    primary) makes each database's tables; one stream from aws to azure and
    onprem; env: extra environment by site. Returns (pgs, daemons, sites),
    each by name."""
    ns = netns_sites(3)
    pgs = dict(zip(NAMES, harness.on_each(pg_factory, NAMES)))
    for name in NAMES:
        schema(pgs[name], name == "aws")
    sites = harness.tunnel_sites([pgs[n] for n in NAMES], ns, names=NAMES)
    stream = dict({"name": "app", "from": "aws", "to": ["azure", "onprem"],
                   "publication": "strait_app"}, **stream_keys)
    cluster = harness.Cluster(tmp_path, sites, [stream], backend="userspace")
    daemons = {n: straitd_factory(cluster.path(n), site=n, netns=ns[i].ns,
                                  env=dict(os.environ, **env[n]) if env and n in env else None)
               for i, n in enumerate(NAMES)}
    return pgs, daemons, dict(zip(NAMES, ns))


def test_fan_out_under_load_and_a_replica_cut_off(tmp_path, netns_sites, pg_factory,
                                                  straitd_factory):
    """Both replicas are copied and then follow a pgbench load; while azure is
    cut off, onprem keeps applying, the slot stays at what azure committed
    (durability remote), the spool keeps azure's batches, and status and
    metrics show the lag per destination; azure then catches up from the
    spool and both replicas equal the primary."""
    pgs, d, ns = three_sites(tmp_path, netns_sites, pg_factory, straitd_factory,
                             durability="remote")
    aws, azure, onprem = pgs["aws"], pgs["azure"], pgs["onprem"]

    def both_streaming():
        s = sources(d["aws"])
        return set(s) == {"azure", "onprem"} and all(r["streaming"] for r in s.values())
    wait_until(both_streaming, 120, interval=0.5, what="the stream to both replicas")
    wait_until(lambda: equal(aws, azure) and equal(aws, onprem), 120, interval=0.5,
               what="both replicas copied")
    # one slot, one spool on the primary
    assert aws.sql("SELECT count(*) FROM pg_replication_slots")[0][0] == 1

    load = threading.Thread(target=aws.pgbench, args=("-c", "2", "-T", "20", "-n"))
    load.start()
    try:
        time.sleep(3)
        ns["azure"].set_wan(False)
        wait_until(lambda: not sources(d["aws"])["azure"]["link_up"], 60, interval=0.2,
                   what="the primary to see azure gone")
        cut_at = sources(d["aws"])["azure"]["acked_lsn"]
        # onprem goes on while azure is away
        before = lsn_int(sources(d["aws"])["onprem"]["acked_lsn"])
        wait_until(lambda: lsn_int(sources(d["aws"])["onprem"]["acked_lsn"]) > before + 100000,
                   60, interval=0.2, what="onprem to go on applying")
        # the slot holds at what azure committed; the spool keeps what it lacks
        assert slot_confirmed(aws) <= lsn_int(cut_at)
        s = sources(d["aws"])
        assert s["azure"]["spool"]["records"] > 0
        assert s["azure"]["spool"]["floor_lsn"] == s["onprem"]["spool"]["floor_lsn"]
        assert lsn_int(s["azure"]["spool"]["floor_lsn"]) <= lsn_int(cut_at)
        lag = json.loads(d["aws"].ctl("lag", "--json").stdout)["lag"]
        by_peer = {r["peer"]: r for r in lag}
        assert by_peer["azure"]["lag_bytes"] > 0
        text = metrics(d["aws"])
        assert metric(text, "strait_stream_lag_bytes", stream="app", to="azure") > 0
        assert metric(text, "strait_spool_bytes", stream="app") > 0
        table = d["aws"].ctl("status").stdout
        assert "-> azure" in table and "-> onprem" in table, table
    finally:
        load.join()
    # onprem is level with the primary while azure is still cut off
    wait_until(lambda: equal(aws, onprem), 60, interval=0.5, what="onprem equal")
    assert slot_confirmed(aws) <= lsn_int(cut_at)
    assert not equal(aws, azure)

    ns["azure"].set_wan(True)
    wait_until(lambda: equal(aws, azure), 120, interval=0.5, what="azure to catch up")
    assert tpcb_balanced(azure) and tpcb_balanced(onprem)
    # everything committed everywhere: the slot and the spool move on
    wait_until(lambda: slot_confirmed(aws) > lsn_int(cut_at), 30, interval=0.2,
               what="the slot to move on")
    wait_until(lambda: sources(d["aws"])["azure"]["spool"]["records"] <= 2, 30, interval=0.2,
               what="the spool to be released")
    text = metrics(d["aws"])
    for to in ("azure", "onprem"):
        assert metric(text, "strait_stream_lag_bytes", stream="app", to=to) is not None
    assert metric(metrics(d["azure"]), "strait_stream_lag_bytes", stream="app", to="azure") is not None


def test_fan_out_source_killed_while_a_replica_is_away(tmp_path, pg_factory, straitd_factory):
    """kill -9 of the primary's straitd while azure's straitd is down and a
    writer commits throughout: onprem goes on after the restart, the spool
    keeps what azure lacks across it, and azure, back last, gets every
    committed id exactly once (three sites on this host's loopback)."""
    import psycopg
    pgs, d, _ = loopback_three(pg_factory, straitd_factory, tmp_path,
                            "CREATE TABLE ledger (id bigint PRIMARY KEY, at text NOT NULL)")
    committed, stop = [], threading.Event()

    def writer():
        i = 0
        with pgs["aws"].connect() as conn:
            while not stop.is_set():
                i += 1
                try:
                    conn.execute("INSERT INTO ledger VALUES (%s, 'aws')", (i,))
                    committed.append(i)
                except psycopg.Error:
                    time.sleep(0.05)

    def ids(pg):
        return [r[0] for r in pg.sql("SELECT id FROM ledger ORDER BY id")]

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(lambda: len(committed) > 300, 30, what="writes")
        d["azure"].kill()
        at_cut = len(committed)
        wait_until(lambda: len(committed) > at_cut + 500, 30, what="writes while azure is away")
        d["aws"].kill()
        time.sleep(1)
        d["aws"].start()
        wait_until(lambda: sources(d["aws"])["onprem"]["streaming"], 60, interval=0.2,
                   what="onprem streaming again")
        before = len(committed)
        wait_until(lambda: len(committed) > before + 500, 30, what="writes after the restart")
        wait_until(lambda: ids(pgs["onprem"])[-1:] and ids(pgs["onprem"])[-1] >= committed[before],
                   60, interval=0.2, what="onprem to apply after the restart")
        s = sources(d["aws"])["azure"]
        assert s["spool"]["records"] > 0 and not s["link_up"]
    finally:
        stop.set()
        t.join()
    d["azure"].start()
    want = sorted(committed)
    for n in ("onprem", "azure"):
        wait_until(lambda: ids(pgs[n])[-1:] == want[-1:], 90, interval=0.5,
                   what=f"{n} to catch up")
        got = ids(pgs[n])
        assert set(want) <= set(got), sorted(set(want) - set(got))[:20]
        assert got == sorted(ids(pgs["aws"]))


def test_failover_dry_run_lists_every_replica(tmp_path, pg_factory, straitd_factory):
    """The primary's straitd is gone and onprem is behind azure (its target
    was down while azure applied more): failover --dry-run at either replica
    lists both positions and names azure the most caught up (three sites on
    this host's loopback)."""
    pgs, d, _ = loopback_three(pg_factory, straitd_factory, tmp_path,
                            "CREATE TABLE ledger (id bigint PRIMARY KEY)")

    def count(n):
        return pgs[n].sql("SELECT count(*) FROM ledger")[0][0]

    pgs["aws"].sql("INSERT INTO ledger SELECT generate_series(1, 100)")
    wait_until(lambda: count("azure") == 100 and count("onprem") == 100, 30, what="both applied")
    pgs["onprem"].stop()
    pgs["aws"].sql("INSERT INTO ledger SELECT generate_series(101, 200)")
    wait_until(lambda: count("azure") == 200, 30, what="azure ahead")
    d["aws"].kill()
    for here in ("azure", "onprem"):
        res = d[here].ctl("failover", "--to", here, "--dry-run", check=False)
        out = res.stdout + res.stderr
        print(out)
        line = next(l for l in out.splitlines() if " replicas " in l)
        assert "azure 0/" in line and "onprem 0/" in line
        if here == "azure":
            assert res.returncode == 0 and "(this site, the most caught up)" in line, out
        else:
            # its database is down: no-go, whatever the replicas
            assert res.returncode == 1, out
            assert "(this site)" in line and "(the most caught up)" in line.split("azure")[1], line
        assert "a failover here first takes from each reachable replica what it applied " \
            "beyond this site" in line, line
    pgs["onprem"].start()


def test_reload_adds_a_destination(tmp_path, pg_factory, straitd_factory):
    """A stream to azure only gets onprem as a second destination by a
    reload of every site's config: onprem is copied and then follows,
    azure keeps streaming (three sites on this host's loopback)."""
    pgs, d, cluster = loopback_three(pg_factory, straitd_factory, tmp_path,
                                     "CREATE TABLE ledger (id bigint PRIMARY KEY)",
                                     to=("azure",), initial_sync=True)

    def count(n):
        return pgs[n].sql("SELECT count(*) FROM ledger")[0][0]

    pgs["aws"].sql("INSERT INTO ledger SELECT generate_series(1, 1000)")
    wait_until(lambda: count("azure") == 1000, 30, what="azure applied")
    assert count("onprem") == 0
    for n in NAMES:
        cfg = cluster.host(n)[1]
        cfg["streams"][0]["to"] = ["azure", "onprem"]
        cluster.update(n, cfg)
        d[n].reload()
    wait_until(lambda: set(sources(d["aws"])) == {"azure", "onprem"}, 30, interval=0.2,
               what="the new destination at the source")
    pgs["aws"].sql("INSERT INTO ledger SELECT generate_series(1001, 1500)")
    for n in ("azure", "onprem"):
        wait_until(lambda: count(n) == 1500, 60, interval=0.2, what=f"{n} equal")
    assert "the streams or their destinations changed" in d["aws"].log_text()
    assert pgs["aws"].sql("SELECT count(*) FROM pg_replication_slots")[0][0] == 1


def test_verify_compares_every_destination(tmp_path, pg_factory, straitd_factory):
    """verify compares each destination of a fan-out stream on its own: a
    row changed behind strait's back at onprem is found there and azure
    still verifies equal, in the report, its JSON and the metrics."""
    pgs, d, _ = loopback_three(pg_factory, straitd_factory, tmp_path,
                            "CREATE TABLE t (id int PRIMARY KEY, v text)")
    pgs["aws"].sql("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g")
    for n in ("azure", "onprem"):
        wait_until(lambda: pgs[n].sql("SELECT count(*) FROM t")[0][0] == 500, 30,
                   what=f"{n} applied")
    doc = json.loads(d["aws"].ctl("verify", "--json").stdout)
    assert [(s["stream"], s["to"], s["equal"]) for s in doc["streams"]] == \
        [("app", "azure", True), ("app", "onprem", True)], doc
    pgs["onprem"].sql("UPDATE t SET v = 'changed' WHERE id = 7")
    res = d["aws"].ctl("verify", "--stream", "app", "--json", check=False)
    assert res.returncode == 1, res
    doc = json.loads(res.stdout)
    by_to = {s["to"]: s for s in doc["streams"]}
    assert by_to["azure"]["equal"] and not by_to["onprem"]["equal"], doc
    assert by_to["onprem"]["differences"] == 1
    text = d["aws"].ctl("verify", check=False).stdout
    assert "stream app (to site azure)" in text and "stream app (to site onprem)" in text, text
    m = metrics(d["aws"])
    assert metric(m, "strait_verify_last_result", stream="app", to="azure") == 1
    assert metric(m, "strait_verify_last_result", stream="app", to="onprem") == 0
    st = d["aws"].status()["verify"]["streams"]
    assert {(s["to"], s["result"]) for s in st} == {("azure", "equal"), ("onprem", "different")}
