"""failover --dry-run, end to end: the readiness report of the site that would
take over, with a real PostgreSQL at each of two sites on this host's
loopback (see test_failover.pair).

The verdict answers "would a failover to this site go through if the
primary were lost now": go for a caught-up replica (even while the primary
is reachable, when the report says a switchover is the way now), no-go for a
replica whose stream the schedule holds back beyond the lag gate, go for a
replica whose primary is unreachable with its last known lag within the
gate. A dry run changes nothing."""

import datetime
import json
import re

import harness
from harness import wait_until
from test_failover import health, ledger_schema, pair, role, sink_of
from test_replication import wait_equal, wait_streaming
from test_spool import set_clock


def dry_run(d, *extra):
    return d.ctl("failover", "--to", d.site, "--dry-run", *extra, check=False)


def dry_json(d):
    res = dry_run(d, "--json")
    assert res.returncode in (0, 1), res
    doc = json.loads(res.stdout)        # on stdout whatever the verdict
    assert doc["go"] == (res.returncode == 0), res
    return doc


def check_line(out, name):
    """The report's line for one check: (status, detail)."""
    m = re.search(r"^  (ok|no-go|info|warn) +%s +(.*)$" % re.escape(name), out, re.M)
    assert m, f"no {name} line in:\n{out}"
    return m.group(1), m.group(2)


def nothing_done(dst, cloud):
    assert role(cloud) == "replica" and cloud.status()["epoch"] == 1
    assert dst.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]


def test_dry_run_go_for_a_caught_up_replica(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory,
                                            failover={"sequence_margin": 1000})
    for i in range(1, 21):
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem')", (i,))
    src.sql("INSERT INTO counter (v) SELECT g FROM generate_series(1, 5) g")
    wait_equal(src, dst, ("ledger", "counter"))
    wait_until(lambda: dst.sql("SELECT last_value FROM counter_id_seq")[0][0] == 5, 30,
               what="the sequence value to cross")
    wait_until(lambda: "last known lag 0 bytes" in dry_run(cloud).stdout, 30,
               what="cloud to know it is caught up")

    res = dry_run(cloud)
    print(res.stdout)
    assert res.returncode == 0, res
    out = res.stdout
    assert out.startswith("failover to site cloud from site onprem at epoch 1: dry run")
    assert check_line(out, "role") == ("ok", "site cloud is a replica at epoch 1; the "
                                             "promotion would take epoch 2")
    status, lag = check_line(out, "lag")
    assert status == "ok" and "lag within the limits: last known lag 0 bytes" in lag
    assert re.search(r"last applied commit \d{4}-\d\d-\d\dT", lag), lag
    status, streams = check_line(out, "streams")
    assert status == "ok" and "1 stream(s) from site onprem (app: streaming)" in streams
    status, db = check_line(out, "database")
    assert status == "ok" and "the promotion can write to it" in db and "not fenced" in db
    assert check_line(out, "sequences") == (
        "info", "1 of 1 sequence(s) here hold a value received from site onprem; the "
                "promotion raises each by 1000 (failover.sequence_margin)")
    status, fencing = check_line(out, "fencing")
    assert "site onprem is reachable now" in fencing and "would hear epoch 2" in fencing
    assert "default_transaction_read_only = on" in fencing
    status, hc = check_line(out, "health")
    listen = cluster.host("cloud")[1]["metrics"]["listen"]
    assert status == "info" and f"metrics.listen {listen}: /primary would answer 200 here, " \
                                "and 503 on site onprem" in hc
    assert check_line(out, "loss")[1].startswith("expected loss 0 bytes")
    assert check_line(out, "duration") == (
        "warn", "no switchover or failover measured on this cluster yet")
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("go: a failover to site cloud would go through if site onprem "
                              "were lost now"), verdict
    assert "a failover now is refused: switchover is the lossless choice" in verdict
    # and a real failover is refused now, as it always was
    real = cloud.ctl("failover", "--to", "cloud", check=False)
    assert real.returncode == 1 and "run switchover on it" in real.stderr

    doc = dry_json(cloud)
    assert doc["go"] is True and doc["failover_now"] is False
    assert doc["old_primary_reachable"] is True and doc["old_primary"] == "onprem"
    assert [c["check"] for c in doc["checks"]] == [
        "role", "lag", "streams", "database", "sequences", "fencing", "health", "loss",
        "duration"]
    assert all(c["ok"] for c in doc["checks"] if c["gate"])
    assert doc["expected_loss"]["bytes"] == 0
    assert doc["expected_loss"]["last_applied_commit"].startswith("20")
    assert doc["expected_duration_s"] is None
    assert "--json goes with --dry-run" in cloud.ctl("failover", "--to", "cloud", "--json",
                                                     check=False).stderr
    nothing_done(dst, cloud)
    assert health(cloud, "/primary") == 503

    # a switchover is measured at both ends; the new replica's dry run uses it
    res = onprem.ctl("switchover", "--to", "cloud")
    took = float(re.search(r"switchover done in ([\d.]+) s", res.stdout).group(1))
    wait_until(lambda: sink_of(onprem) and sink_of(onprem)[0]["apply_ready"], 30,
               what="onprem's apply")
    wait_until(lambda: dry_run(onprem).returncode == 0, 30, what="onprem to hear cloud")
    out = dry_run(onprem).stdout
    print(out)
    status, dur = check_line(out, "duration")
    assert status == "info" and "the last switchover (the whole hand-over) measured" in dur
    # both are printed to 0.01 s and read a moment apart: equal up to that
    assert abs(float(re.search(r"expected duration ([\d.]+) s", dur).group(1)) - took) < 0.05
    # the old primary stays fenced after a switchover: its promotion would unfence it
    assert "fenced now (default_transaction_read_only on): the promotion unfences it" in \
        check_line(out, "database")[1]
    with open(cluster.host("cloud")[1]["state_dir"] + "/role-durations") as f:
        assert re.search(r"^promotion=[\d.]+ \d+$", f.read(), re.M)
    # the new primary: not a replica, the role check alone says no
    res = dry_run(cloud)
    assert res.returncode == 1 and "site cloud is the primary already" in res.stderr
    assert dry_json(cloud)["checks"][0]["check"] == "role"


def test_dry_run_no_go_while_the_schedule_holds_the_link(tmp_path, pg_factory, straitd_factory):
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=12, minute=0, second=0,
                                                                  microsecond=0)
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        ledger_schema(pg)
    # the link is held from midnight to 06:00 (UTC at onprem), open otherwise
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False,
              "schedule": [{"hours": "00:00-06:00", "rate": 0}, {"rate": "unlimited"}]}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream],
                              extra={"failover": {"max_lag_bytes": "1kB"}})
    onprem = straitd_factory(cluster.path("onprem"), site="onprem",
                             env={"TZ": "UTC", "STRAIT_TEST_CLOCK": str(int(today.timestamp()))})
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem, timeout=60)
    wait_until(lambda: sink_of(cloud) and sink_of(cloud)[0]["apply_ready"], 30,
               what="cloud's apply")
    src.sql("INSERT INTO ledger VALUES (0, 'warm-up')")
    wait_equal(src, dst, ("ledger",))
    wait_until(lambda: dry_run(cloud).returncode == 0, 30, what="go while caught up")

    def sched():
        return json.loads(onprem.ctl("schedule", "--json").stdout)["streams"][0]["schedule"]

    set_clock(onprem, today + datetime.timedelta(hours=13))        # 01:00 tomorrow
    wait_until(lambda: sched()["held"], 10, what="the schedule to hold the link")
    for i in range(1, 201):
        src.sql("INSERT INTO ledger VALUES (%s, repeat('x', 100))", (i,))
    wait_until(lambda: dry_run(cloud).returncode == 1, 30, what="the lag to be known at cloud")
    res = dry_run(cloud)
    print(res.stderr)
    out = res.stderr
    verdict = out.strip().splitlines()[-1]
    assert verdict == "no-go: a failover to site cloud would be refused (lag)", out
    status, lag = check_line(out, "lag")
    assert status == "no-go" and "refused: lag over the limits" in lag
    m = re.search(r"last known lag (\d+) bytes, [\d.]+ s \(limits 1000 bytes", lag)
    assert m and int(m.group(1)) > 1000, lag
    status, loss = check_line(out, "loss")
    assert status == "warn" and f"expected loss {m.group(1)} bytes" in loss
    # the link is up, only held: every other gate passes
    for name in ("role", "streams", "database"):
        assert check_line(out, name)[0] == "ok", name
    assert "site onprem is reachable now" in check_line(out, "fencing")[1]
    doc = dry_json(cloud)
    assert doc["go"] is False
    lag_check = next(c for c in doc["checks"] if c["check"] == "lag")
    assert lag_check["ok"] is False and lag_check["gate"] is True
    assert doc["expected_loss"]["bytes"] > 1000
    assert dst.sql("SELECT count(*) FROM ledger") == [(1,)]    # held, nothing applied
    nothing_done(dst, cloud)

    # the schedule opens the link: caught up again, go again
    set_clock(onprem, today + datetime.timedelta(hours=19))        # 07:00 tomorrow
    wait_equal(src, dst, ("ledger",))
    wait_until(lambda: dry_run(cloud).returncode == 0, 30, what="go once caught up")


def test_dry_run_go_with_the_primary_unreachable(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory)
    for i in range(1, 21):
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem')", (i,))
    wait_equal(src, dst, ("ledger",))
    wait_until(lambda: "last known lag 0 bytes" in dry_run(cloud).stdout, 30,
               what="cloud to know it is caught up")

    onprem.kill()                          # the primary's site is cut off
    for i in range(21, 31):                # committed there, never crossed
        src.sql("INSERT INTO ledger VALUES (%s, 'onprem-cut-off')", (i,))
    wait_until(lambda: "not reachable" in dry_run(cloud).stdout, 30,
               what="the link to onprem to be seen down")
    res = dry_run(cloud)
    print(res.stdout)
    assert res.returncode == 0, res
    out = res.stdout
    assert out.strip().splitlines()[-1] == "go: a failover to site cloud would go through"
    status, fencing = check_line(out, "fencing")
    assert "site onprem is not reachable: it will be fenced when heard again" in fencing
    assert "default_transaction_read_only = on" in fencing
    assert "last known lag 0 bytes" in check_line(out, "lag")[1]
    assert check_line(out, "streams")[0] == "ok"
    assert check_line(out, "sequences")[1].startswith("no sequence value received from site "
                                                      "onprem")
    doc = dry_json(cloud)
    assert doc["go"] is True and doc["failover_now"] is True
    assert doc["old_primary_reachable"] is False
    nothing_done(dst, cloud)

    # restarted meanwhile, cloud has not heard onprem: what it lacks is unknown, no-go
    cloud.stop()
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    res = dry_run(cloud)
    print(res.stderr)
    assert res.returncode == 1, res
    status, streams = check_line(res.stderr, "streams")
    assert status == "no-go" and "site onprem has not been heard since straitd started" in streams
    assert res.stderr.strip().splitlines()[-1] == ("no-go: a failover to site cloud would be "
                                                   "refused (streams)")
    nothing_done(dst, cloud)
