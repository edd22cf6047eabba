"""A site whose state directory is lost (its role file gone, its database
left as it was) starts fenced and asks its peers who is primary, never
taking the config's role on trust: two sites on this host's loopback, real
PostgreSQL servers on their defaults except wal_level."""

import shutil

import psycopg
import pytest

from harness import wait_until
from test_failover import ledger_ids, pair, role, sink_of


def lose_state(d, cluster, site):
    """Stops site's straitd and removes its whole state directory."""
    d.stop()
    shutil.rmtree(cluster.host(site)[1]["state_dir"])


def test_a_replica_and_then_the_primary_lose_their_state(tmp_path, pg_factory, straitd_factory):
    """Nothing changed while they were away (epoch 1): the replica comes back
    a replica of the primary, the primary comes back primary once its peer
    named it, and the stream goes on with no copy."""
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory)
    src.sql("INSERT INTO ledger SELECT g, 'onprem' FROM generate_series(1, 50) g")
    wait_until(lambda: ledger_ids(dst) == set(range(1, 51)), 30, what="the first rows")

    lose_state(cloud, cluster, "cloud")
    src.sql("INSERT INTO ledger SELECT g, 'onprem' FROM generate_series(51, 60) g")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    assert "state directory lost" in cloud.log_text()
    wait_until(lambda: role(cloud) == "replica", 30, interval=0.5, what="cloud a replica again")
    assert cloud.status()["primary"] == "onprem" and cloud.status()["epoch"] == 1
    assert "site onprem is primary at epoch 1, as configured" in cloud.log_text()
    wait_until(lambda: ledger_ids(dst) == set(range(1, 61)), 30, what="cloud to go on")

    lose_state(onprem, cluster, "onprem")
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    # fenced first: it takes no writes until its peer names it primary
    assert role(onprem) in ("fenced", "primary")
    wait_until(lambda: role(onprem) == "primary", 30, interval=0.5, what="onprem primary again")
    assert "every peer names this site primary at epoch 1" in onprem.log_text()
    wait_until(lambda: src.sql("SHOW default_transaction_read_only")[0][0] == "off", 30,
               what="onprem's database writable")
    src.sql("INSERT INTO ledger SELECT g, 'onprem' FROM generate_series(61, 70) g")
    wait_until(lambda: ledger_ids(dst) == set(range(1, 71)), 30, what="the stream again")
    assert "takes writes again" in onprem.log_text()


def test_the_old_primary_that_lost_its_state_stays_fenced(tmp_path, pg_factory, straitd_factory):
    """After a failover to cloud, onprem (the config's primary) comes back
    without its state directory: it starts fenced, learns that cloud is
    primary at epoch 2, and its database takes no write; a rejoin makes it
    cloud's replica."""
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory,
                                            initial_sync=True)
    src.sql("INSERT INTO ledger SELECT g, 'onprem' FROM generate_series(1, 50) g")
    wait_until(lambda: ledger_ids(dst) == set(range(1, 51)), 30, what="the first rows")
    onprem.kill()
    shutil.rmtree(cluster.host("onprem")[1]["state_dir"])
    wait_until(lambda: "not reachable" in cloud.ctl("failover", "--to", "cloud", "--dry-run",
                                                    check=False).stdout, 30,
               what="onprem to be seen down")
    cloud.ctl("failover", "--to", "cloud")
    dst.sql("INSERT INTO ledger VALUES (1000, 'cloud')")

    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    assert role(onprem) != "primary"
    wait_until(lambda: onprem.status()["primary"] == "cloud", 30, interval=0.5,
               what="onprem to learn the primary")
    st = onprem.status()
    assert st["role"] == "fenced" and st["epoch"] == 2
    wait_until(lambda: onprem.status()["database_fenced"], 30, what="onprem's database fenced")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.sql("INSERT INTO ledger VALUES (2000, 'onprem')")
    assert "run rejoin on this site to make it a replica of site \"cloud\"" in onprem.log_text()
    wait_until(lambda: "(the primary) applied" in onprem.log_text(), 30, what="cloud's FENCE")
    res = onprem.ctl("rejoin", "onprem")
    assert "rejoin done in" in res.stdout, res.stdout
    wait_until(lambda: ledger_ids(src) == ledger_ids(dst), 60, interval=0.5,
               what="onprem re-seeded")
    assert 1000 in ledger_ids(src)
    dst.sql("INSERT INTO ledger VALUES (1001, 'cloud')")
    wait_until(lambda: 1001 in ledger_ids(src), 30, what="the stream from cloud")
    assert role(onprem) == "replica" and role(cloud) == "primary"
    assert sink_of(onprem)
