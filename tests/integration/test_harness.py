"""The harness itself: PostgreSQL servers and namespace sites that later tests
build on behave as promised."""

import pytest

import harness
from conftest import requires_root


def test_postgres_servers_are_logical_and_separate(pg_factory):
    a = pg_factory("a")
    b = pg_factory("b")
    assert a.port != b.port
    for pg in (a, b):
        assert pg.sql("SHOW wal_level") == [("logical",)]
        assert pg.sql("SELECT current_user") == [("postgres",)]
    a.sql("CREATE TABLE t (id int primary key)")
    assert b.sql("SELECT to_regclass('t')") == [(None,)]
    a.restart()
    assert a.sql("SELECT count(*) FROM t") == [(0,)]


@requires_root
def test_postgres_runs_unprivileged(pg_factory):
    pg = pg_factory("u")
    with open(f"/proc/{pg.pid}/status") as f:
        uid = next(l for l in f if l.startswith("Uid:")).split()[1]
    assert uid != "0"


def test_pgbench_runs(pg_factory):
    pg = pg_factory("bench")
    pg.pgbench("-i", "-s", "1", "-q")
    pg.pgbench("-t", "10", "-c", "2")
    assert pg.sql("SELECT count(*) FROM pgbench_history") == [(20,)]


def test_sites_reach_each_other_and_only_each_other(netns_sites):
    sites = netns_sites(3)
    for a in sites:
        for b in sites:
            if a is not b:
                a.run(["ping", "-c", "1", "-W", "2", b.wan_ip])
    rx0, _ = sites[1].counters()
    sites[0].run(["ping", "-c", "3", "-i", "0.2", "-W", "2", sites[1].wan_ip])
    rx1, _ = sites[1].counters()
    assert rx1 > rx0
    sites[1].set_wan(False)
    assert sites[0].run(["ping", "-c", "1", "-W", "1", sites[1].wan_ip], check=False).returncode != 0
    sites[1].set_wan(True)
    harness.wait_until(lambda: sites[0].run(["ping", "-c", "1", "-W", "1", sites[1].wan_ip],
                                            check=False).returncode == 0, timeout=10,
                       what="the link to come back")


@requires_root
def test_postgres_inside_a_site(netns_sites, pg_factory):
    site, other = netns_sites(2)
    pg = pg_factory("ns", netns=site.ns, listen_addresses=site.wan_ip)
    res = other.run(["psql", "-h", site.wan_ip, "-p", str(pg.port), "-U", "postgres",
                     "-Atc", "SELECT 1", "postgres"])
    assert res.stdout.strip() == "1"
