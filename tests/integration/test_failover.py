"""Switchover, failover and stepping down, end to end: two sites on this
host's loopback with a real PostgreSQL each (see test_replication.start_pair).

A site is "cut off" by killing its straitd: its database goes on taking
writes that never cross, and when straitd comes back it hears the new
primary's higher epoch and fences its database before anything else."""

import http.client
import os
import re
import signal
import subprocess
import threading
import time

import psycopg
import pytest
import yaml

import harness
from harness import wait_until
from test_replication import PGBENCH_TABLES, tpcb_balanced, wait_equal, wait_streaming


def health(d, path):
    with open(d.config_path) as f:
        host, port = yaml.safe_load(f)["metrics"]["listen"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def ledger_schema(pg):
    pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, site text NOT NULL)")
    pg.sql("CREATE TABLE counter (id serial PRIMARY KEY, v int)")


def ledger_ids(pg):
    return {r[0] for r in pg.sql("SELECT id FROM ledger")}


def role(d):
    return d.status()["role"]


def sink_of(d):
    return [r for r in d.status()["replication"] if r["role"] == "sink"]


def source_of(d):
    return [r for r in d.status()["replication"] if r["role"] == "source"]


def pair(tmp_path, pg_factory, straitd_factory, failover=None, schema=ledger_schema,
         initial_sync=False, name="app"):
    """Like test_replication.start_pair, with a failover section in the config."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        schema(pg)
    stream = {"name": name, "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": initial_sync}
    extra = {"failover": failover} if failover else None
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream], extra=extra)
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem, timeout=60)
    wait_until(lambda: sink_of(cloud) and sink_of(cloud)[0]["apply_ready"], 30,
               what="cloud's apply")
    return src, dst, onprem, cloud, cluster


def test_failover_is_refused_while_the_primary_is_reachable(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = pair(tmp_path, pg_factory, straitd_factory)
    for args in (("failover", "--to", "cloud"), ("failover", "--to", "cloud", "--force")):
        res = cloud.ctl(*args, check=False)
        assert res.returncode == 1, res
        assert "reachable" in res.stdout + res.stderr
        assert "switchover" in res.stdout + res.stderr
    # the dry run answers readiness (go: exit 0), and says a failover now is refused
    res = cloud.ctl("failover", "--to", "cloud", "--dry-run", check=False)
    assert res.returncode == 0, res
    assert "is reachable now" in res.stdout and "a failover now is refused" in res.stdout
    assert "switchover is the lossless choice" in res.stdout
    # failover runs on the site that takes over; switchover at the primary, where a
    # replica forwards it
    res = onprem.ctl("failover", "--to", "cloud", check=False)
    assert res.returncode == 1 and "run failover on the site that takes over" in res.stderr
    res = cloud.ctl("switchover", "--to", "onprem", check=False)
    assert res.returncode == 1, res
    assert res.stderr == ("site onprem (the primary) answers:\n"
                          "site onprem is the primary already\n"), res.stderr
    res = cloud.ctl("failover", "--to", "nowhere", check=False)
    assert res.returncode == 1 and "no site named nowhere" in res.stderr
    assert cloud.ctl("failover", check=False).returncode == 2
    assert role(cloud) == "replica" and role(onprem) == "primary"
    assert cloud.status()["epoch"] == 1
    # a switchover needs the target's link
    cloud.kill()
    wait_until(lambda: "not reachable" in onprem.ctl("switchover", "--to", "cloud",
                                                     check=False).stderr, 30,
               what="the link to cloud to be seen down")
    assert role(onprem) == "primary"
    src.sql("INSERT INTO ledger VALUES (1, 'still writable')")


def test_failover_with_the_primary_cut_off(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory,
                                            failover={"sequence_margin": 1000})
    for i in range(1, 51):
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem')", (i,))
    src.sql("INSERT INTO counter (v) SELECT g FROM generate_series(1, 20) g")
    wait_equal(src, dst, ("ledger", "counter"))
    wait_until(lambda: dst.sql("SELECT last_value FROM counter_id_seq")[0][0] >= 20, 30,
               what="the sequence value to cross")

    onprem.kill()                          # the primary's site is cut off
    for i in range(51, 61):                # committed there, never crossed
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem-cut-off')", (i,))

    wait_until(lambda: "not reachable" in cloud.ctl("failover", "--to", "cloud", "--dry-run",
                                                    check=False).stdout, 30,
               what="the link to onprem to be seen down")
    dry = cloud.ctl("failover", "--to", "cloud", "--dry-run")
    assert "would go through" in dry.stdout and "not reachable" in dry.stdout
    assert "last known lag 0 bytes" in dry.stdout
    assert role(cloud) == "replica"

    t0 = time.monotonic()
    res = cloud.ctl("failover", "--to", "cloud")
    took = time.monotonic() - t0
    print(f"failover wall time: {took:.2f} s\n{res.stdout}")
    out = res.stdout
    for step in ("unfencing the database of site cloud", "raised every sequence by 1000",
                 "created slot strait_app", "site cloud is primary at epoch 2",
                 "failover done in"):
        assert step in out, out
    st = cloud.status()
    assert st["role"] == "primary" and st["epoch"] == 2
    assert health(cloud, "/primary") == 200
    # how long it took is kept for the next dry run's estimate
    with open(cluster.host("cloud")[1]["state_dir"] + "/role-durations") as f:
        assert re.search(r"^failover=[\d.]+ \d+$", f.read(), re.M)
    # the sequence was raised by the margin
    assert dst.sql("SELECT nextval('counter_id_seq')")[0][0] > 20 + 1000 - 1
    # the stream now runs from cloud: its source waits for onprem
    wait_until(lambda: source_of(cloud), 10, what="cloud's source")
    dst.sql("INSERT INTO ledger VALUES (1000, 'cloud')")

    # onprem comes back: it hears epoch 2, steps down and fences its database
    onprem2 = straitd_factory(cluster.path("onprem"), site="onprem", start=False)
    try:
        onprem2.start()
        wait_until(lambda: role(onprem2) == "fenced", 30, what="onprem to step down")
        wait_until(lambda: "is fenced: its database is read-only" in onprem2.log_text(), 30,
                   what="onprem's database to be fenced")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            src.sql("INSERT INTO ledger VALUES (2000, 'onprem-after')")
        assert onprem2.status()["epoch"] == 2
        assert not [r for r in onprem2.status()["replication"]]   # no stream runs there
        assert health(onprem2, "/primary") == 503
        assert health(onprem2, "/replica") == 503
        # nothing from cloud reached onprem, and onprem's cut-off rows stay only there
        time.sleep(1)
        assert 1000 not in ledger_ids(src)
        assert ledger_ids(dst) == set(range(1, 51)) | {1000}
        assert ledger_ids(src) == set(range(1, 61))
        assert role(cloud) == "primary"
    finally:
        onprem2.stop()


def test_failover_refused_on_lag_then_forced(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = pair(tmp_path, pg_factory, straitd_factory,
                                      failover={"max_lag_bytes": "1kB", "max_lag_seconds": "1s"})
    src.sql("INSERT INTO ledger VALUES (0, 'warm-up')")
    wait_equal(src, dst, ("ledger",))
    # the apply at cloud blocks behind a lock: batches arrive, nothing is applied
    blocker = dst.connect()
    blocker.autocommit = False
    # SHARE blocks the INSERTs and takes no xid (ACCESS EXCLUSIVE would, and a slot
    # cannot be created before a transaction with an xid ends)
    blocker.execute("LOCK TABLE ledger IN SHARE MODE")
    try:
        for i in range(1, 201):
            src.sql("INSERT INTO ledger VALUES (%s, repeat('x', 100))", (i,))
        wait_until(lambda: cloud.status()["lag"][0]["lag_bytes"] > 1000, 30,
                   what="lag at cloud")
        time.sleep(1.5)                      # and older than max_lag_seconds
        onprem.kill()
        wait_until(lambda: "not reachable" in cloud.ctl("failover", "--to", "cloud", "--dry-run",
                                                         check=False).stderr, 30,
                   what="the link to onprem to be seen down")
        dry = cloud.ctl("failover", "--to", "cloud", "--dry-run", check=False)
        assert dry.returncode == 1 and "refused: lag over the limits" in dry.stderr
        res = cloud.ctl("failover", "--to", "cloud", check=False)
        assert res.returncode == 1, res
        assert "would be lost" in res.stderr and "--force" in res.stderr
        m = re.search(r"last known lag (\d+) bytes, ([\d.]+) s", res.stderr)
        assert m and int(m.group(1)) > 1000 and float(m.group(2)) > 1
        assert "last applied commit 20" in res.stderr
        assert role(cloud) == "replica" and cloud.status()["epoch"] == 1
        res = cloud.ctl("failover", "--to", "cloud", "--force")
        assert "lag over the limits, forced" in res.stdout and "failover done" in res.stdout
        assert role(cloud) == "primary" and cloud.status()["epoch"] == 2
    finally:
        blocker.close()


def test_switchover_under_pgbench_loses_nothing(tmp_path, pg_factory, straitd_factory):
    def schema(pg):
        pg.pgbench("-i", "-s", "2", "-q")
        ledger_schema(pg)

    src, dst, onprem, cloud, _ = pair(tmp_path, pg_factory, straitd_factory, schema=schema)
    committed, stop = [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with src.connect() as conn:
                    while not stop.is_set():
                        conn.execute("INSERT INTO ledger VALUES (%s, 'onprem')", (i,))
                        committed.append(i)
                        i += 1
            except psycopg.Error:
                time.sleep(0.05)       # fenced: read-only, or the session was ended

    bench = subprocess.Popen(["pgbench", "-h", src.sockdir, "-p", str(src.port), "-U", "postgres",
                              "-c", "2", "-T", "30", "postgres"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(lambda: len(committed) > 200, 30, what="ledger writes")
        t0 = time.monotonic()
        res = onprem.ctl("switchover", "--to", "cloud")
        took = time.monotonic() - t0
        print(f"switchover wall time: {took:.2f} s\n{res.stdout}")
    finally:
        stop.set()
        t.join()
        bench.kill()
        bench.wait()
    out = res.stdout
    for step in ("fencing the database of site onprem", "drained: site cloud applied",
                 "asked site cloud to become primary at epoch 2",
                 "created slot strait_app", "origin strait_app set to",
                 "site onprem is a replica of site cloud at epoch 2", "switchover done in"):
        assert step in out, out
    # no committed transaction lost
    missing = set(committed) - ledger_ids(dst)
    assert not missing, sorted(missing)[:20]
    assert ledger_ids(dst) == ledger_ids(src)
    for t in PGBENCH_TABLES:
        assert harness.table_dump(src, t) == harness.table_dump(dst, t), t
    assert tpcb_balanced(src), src.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                                       "(SELECT sum(bbalance) FROM pgbench_branches), "
                                       "(SELECT sum(tbalance) FROM pgbench_tellers), "
                                       "(SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
                                       "(SELECT count(*) FROM pgbench_history)")
    assert role(cloud) == "primary" and role(onprem) == "replica"
    assert cloud.status()["epoch"] == 2 and onprem.status()["epoch"] == 2
    assert health(cloud, "/primary") == 200 and health(onprem, "/primary") == 503
    # the old primary stays read-only for applications
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.sql("INSERT INTO ledger VALUES (-1, 'onprem-after')")
    # the old slot is gone at onprem, the new one at cloud
    assert src.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    # the reverse stream runs: cloud's writes reach onprem, without a copy
    wait_until(lambda: source_of(cloud) and source_of(cloud)[0]["streaming"], 30,
               what="the reverse stream")
    dst.sql("INSERT INTO ledger VALUES (-2, 'cloud')")
    dst.pgbench("-n", "-c", "2", "-T", "3")   # -n: keep the history
    wait_equal(dst, src, PGBENCH_TABLES + ("ledger",))
    assert tpcb_balanced(src), [pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                                       "(SELECT sum(bbalance) FROM pgbench_branches), "
                                       "(SELECT sum(tbalance) FROM pgbench_tellers), "
                                       "(SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
                                       "(SELECT count(*) FROM pgbench_history)") for pg in (src, dst)]
    wait_until(lambda: health(onprem, "/replica") == 200, 20, what="onprem's /replica")

    # and back again: the origin at cloud moves to onprem's new slot, nothing is copied
    res = cloud.ctl("switchover", "--to", "onprem")
    print(res.stdout)
    assert "switchover done in" in res.stdout
    assert role(onprem) == "primary" and role(cloud) == "replica"
    assert onprem.status()["epoch"] == 3 and cloud.status()["epoch"] == 3
    src.sql("INSERT INTO ledger VALUES (-3, 'onprem-again')")
    src.pgbench("-n", "-c", "2", "-T", "2")
    wait_equal(src, dst, PGBENCH_TABLES + ("ledger",))
    assert tpcb_balanced(dst)
    assert dst.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]


def test_rejoin_writes_the_lost_transactions_and_reseeds(tmp_path, pg_factory, straitd_factory):
    # a '-' in the name: its slot is strait_app_dr, the apply's origin strait_app-dr, and
    # what the primary says it applied (the origin) must be read under the latter
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory,
                                            initial_sync=True, name="app-dr")
    for i in range(1, 51):
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem')", (i,))
    wait_equal(src, dst, ("ledger",))
    onprem.kill()
    for i in range(51, 61):                # committed while cut off: lost to cloud
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem-cut-off')", (i,))
    wait_until(lambda: "not reachable" in cloud.ctl("failover", "--to", "cloud", "--dry-run",
                                                    check=False).stdout, 30,
               what="onprem to be seen down")
    cloud.ctl("failover", "--to", "cloud")
    dst.sql("INSERT INTO ledger VALUES (1000, 'cloud')")

    again = straitd_factory(cluster.path("onprem"), site="onprem")
    wait_until(lambda: role(again) == "fenced", 30, what="onprem to step down")
    # a rejoin runs on the fenced site, once the primary told it what it applied
    res = cloud.ctl("rejoin", "onprem", check=False)
    assert res.returncode == 1 and "run rejoin on the fenced site itself" in res.stderr
    wait_until(lambda: "(the primary) applied" in again.log_text(), 30,
               what="the primary's FENCE")
    t0 = time.monotonic()
    res = again.ctl("rejoin", "onprem")
    print(f"rejoin wall time: {time.monotonic() - t0:.2f} s\n{res.stdout}")
    m = re.search(r"(\d+) transactions \((\d+) statements\) committed here never "
                  r"reached site cloud: written to (\S+)", res.stdout)
    assert m, res.stdout
    assert int(m.group(1)) == 10 and int(m.group(2)) == 10
    with open(m.group(3)) as f:
        lost = f.read()
    ids = {int(x) for x in re.findall(r"VALUES \('(\d+)'", lost)}
    assert ids == set(range(51, 61)), lost
    assert "onprem-cut-off" in lost and "BEGIN;" in lost and "COMMIT;" in lost
    assert re.search(r"-- transaction \d+, commit LSN [0-9A-F]+/[0-9A-F]+", lost)
    for step in ("dropped slot strait_app", "the initial sync starts over",
                 "site onprem is a replica of site cloud at epoch 2", "rejoin done in"):
        assert step in res.stdout, res.stdout
    assert role(again) == "replica"
    # re-seeded: onprem converges to cloud; the cut-off rows are only in the file
    wait_until(lambda: ledger_ids(src) == ledger_ids(dst), 60, interval=0.5,
               what="onprem to converge")
    assert ledger_ids(src) == set(range(1, 51)) | {1000}
    dst.sql("INSERT INTO ledger VALUES (1001, 'cloud')")
    wait_until(lambda: 1001 in ledger_ids(src), 30, what="the stream to run")
    wait_until(lambda: health(again, "/replica") == 200, 30, what="onprem's /replica")
    # a second rejoin is refused: the site is not fenced any more
    res = again.ctl("rejoin", "onprem", check=False)
    assert res.returncode == 1 and "not fenced" in res.stderr


def test_rejoin_typed_while_the_step_down_fences_waits_for_it(tmp_path, pg_factory,
                                                              straitd_factory):
    """The site shows fenced the moment it hears the higher epoch, while its
    step-down still fences the database: here a stopped client session holds
    the fence 5 s (pg_terminate_backend's wait). A rejoin typed then waits for
    the step-down and goes through, instead of "another step-down is in
    progress"."""
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory,
                                            initial_sync=True)
    for i in range(1, 21):
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem')", (i,))
    wait_equal(src, dst, ("ledger",))
    onprem.kill()
    src.sql("INSERT INTO ledger VALUES (21, 'onprem-cut-off')")
    wait_until(lambda: "not reachable" in cloud.ctl("failover", "--to", "cloud", "--dry-run",
                                                    check=False).stdout, 30,
               what="onprem to be seen down")
    cloud.ctl("failover", "--to", "cloud")
    slow = src.connect()
    pid = slow.execute("SELECT pg_backend_pid()").fetchone()[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        again = straitd_factory(cluster.path("onprem"), site="onprem")
        wait_until(lambda: role(again) == "fenced" and
                   "(the primary) applied" in again.log_text(), 30, interval=0.1,
                   what="onprem to step down and hear the primary")
        res = again.ctl("rejoin", "onprem", timeout=120)
    finally:
        os.kill(pid, signal.SIGCONT)
        slow.close()
    log = again.log_text()
    assert "rejoin: waiting for the step-down to fence this site's database first" in log, log
    assert log.index("rejoin: waiting for the step-down") < log.index(
        "site onprem is fenced: its database is read-only for applications")
    assert "rejoin done in" in res.stdout, res.stdout
    assert re.search(r"1 transactions \(1 statements\) committed here never reached site cloud",
                     res.stdout), res.stdout
    wait_until(lambda: ledger_ids(src) == ledger_ids(dst), 60, interval=0.5,
               what="onprem to converge")
    assert role(again) == "replica"
