"""Roles that cannot split: two sites that both claim primary at one epoch
end with exactly one primary (the name that sorts first); frames that carry
data from a site at a lower epoch are refused; a site that steps down while
its database is down fences it once it is back. Two sites on this host's
loopback, real PostgreSQL servers."""

import os
import time

import psycopg
import pytest

import harness
from harness import wait_until
from test_failover import health, ledger_schema, role
from test_initial_sync import FRAME_SYNC, FakeSource, sync_payload


def write_role(cluster, site, role_name, epoch, primary=None):
    """The site's role state file, as straitd writes it, before it starts."""
    state = cluster.host(site)[1]["state_dir"]
    os.makedirs(state, mode=0o700, exist_ok=True)
    text = ("# strait site role and cluster epoch: written by straitd, do not edit while it runs\n"
            f"format=1\ncluster=acme-dr\nsite={site}\nrole={role_name}\nepoch={epoch}\n")
    if primary:
        text += f"primary={primary}\n"
    with open(os.path.join(state, "role"), "w") as f:
        f.write(text)


def ledger_pair(tmp_path, pg_factory):
    """onprem and cloud with the ledger table, a stream between them; nothing started."""
    src, dst = pg_factory("onprem"), pg_factory("cloud")
    for pg in (src, dst):
        ledger_schema(pg)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    return src, dst, harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])


def read_only(pg):
    return pg.sql("SHOW default_transaction_read_only")[0][0] == "on"


def test_two_primaries_at_one_epoch_leave_one(tmp_path, pg_factory, straitd_factory):
    """Both sites start as primary at epoch 3 (two failovers at once leave
    that): once they hear each other, cloud (its name sorts first) stays
    primary and onprem steps down to fenced and fences its database."""
    src, dst, cluster = ledger_pair(tmp_path, pg_factory)
    for site in ("onprem", "cloud"):
        write_role(cluster, site, "primary", 3, site)
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_until(lambda: role(onprem) == "fenced", 30, what="onprem to step down")
    assert role(cloud) == "primary"
    st = onprem.status()
    assert st["epoch"] == 3 and st["primary"] == "cloud"
    wait_until(lambda: onprem.status()["database_fenced"], 30, what="onprem's database fenced")
    assert read_only(src) and not read_only(dst)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.sql("INSERT INTO ledger VALUES (1, 'onprem')")
    assert health(cloud, "/primary") == 200 and health(onprem, "/primary") == 503
    assert "its name sorts before \"onprem\", so it stays primary" in onprem.log_text()
    # a restart keeps it so
    onprem.stop()
    onprem.start()
    assert role(onprem) == "fenced" and role(cloud) == "primary"


def test_frames_from_a_lower_epoch_are_refused(tmp_path, pg_factory, straitd_factory):
    """A site at epoch 3 takes no copy data from a peer still at epoch 1."""
    dst = pg_factory("beta")
    dst.sql("CREATE TABLE t (id int PRIMARY KEY, note text)")
    stream = {"name": "app", "from": "alpha", "to": "beta", "publication": "strait_app",
              "initial_sync": True, "compression": {"codec": "none"}}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([None, dst], ("alpha", "beta")),
                              [stream])
    write_role(cluster, "beta", "replica", 3, "alpha")
    beta = straitd_factory(cluster.path("beta"), site="beta")
    fake = FakeSource(cluster, "127.0.0.2", cluster.cluster_cfg["relay"]["port"])
    try:
        fake.wait_resume(0)
        fake.out.put(fake.frame(FRAME_SYNC, sync_payload("app", "public", "t", 0x1000000, 0, 0,
                                                         b"1\tx\n"), epoch=1))
        wait_until(lambda: "refused SYNC from site \"alpha\" at epoch 1, lower than this "
                           "site's 3" in beta.log_text(), 20, what="the refusal in the log")
        time.sleep(1)
        assert dst.sql("SELECT count(*) FROM t")[0][0] == 0
        assert beta.alive() and role(beta) == "replica"
    finally:
        fake.close()


def test_step_down_fences_once_the_database_is_back(tmp_path, pg_factory, straitd_factory):
    """onprem, primary at epoch 1, hears cloud at epoch 2 while its own
    database is down: it steps down at once and fences the database as soon
    as it can, retrying until then."""
    src, dst, cluster = ledger_pair(tmp_path, pg_factory)
    write_role(cluster, "cloud", "primary", 2, "cloud")
    src.stop()
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_until(lambda: role(onprem) == "fenced", 30, what="onprem to step down")
    assert health(onprem, "/primary") == 503
    wait_until(lambda: "could not fence this site's database" in onprem.log_text(), 60,
               what="a failed fence attempt")
    assert onprem.status()["database_fenced"] is False
    src.start()
    wait_until(lambda: onprem.status()["database_fenced"], 60, what="the fence to hold")
    assert read_only(src)
    assert role(cloud) == "primary"
