"""The harness itself: PostgreSQL servers, namespace sites and the ports
later tests build on behave as promised."""

import concurrent.futures
import copy
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

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


SCHEMA_CASES = """
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok');
CREATE TABLE app.parent (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE,
    m app.mood DEFAULT 'ok', made timestamptz DEFAULT now());
CREATE TABLE child (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id bigint REFERENCES app.parent ON DELETE CASCADE, n int CHECK (n > 0),
    twice int GENERATED ALWAYS AS (n * 2) STORED, note varchar(20));
CREATE INDEX child_note ON child (lower(note));
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE byindex (a int NOT NULL, b int);
CREATE UNIQUE INDEX byindex_a ON byindex (a);
ALTER TABLE byindex REPLICA IDENTITY USING INDEX byindex_a;
"""


@pytest.mark.parametrize("versions", [(15, 15), (18, 13)], ids=["dump", "catalog"])
def test_schema_copies_to_the_target(pg_factory, versions):
    """schemacopy: pg_dump where Debian's client can (a source up to 15 onto
    the same or newer), else DDL from the source's catalog (here 18 onto 13);
    either way the target's schema reads back the same."""
    from schemacopy import catalog_schema, copy_schema
    src = pg_factory("src", version=versions[0])
    dst = pg_factory("dst", version=versions[1])
    harness.run(["psql", "-h", src.sockdir, "-p", str(src.port), "-U", "postgres", "-X", "-q",
                 "-v", "ON_ERROR_STOP=1", "postgres"], input=SCHEMA_CASES)
    copy_schema(src, dst)
    assert catalog_schema(dst) == catalog_schema(src)
    dst.sql("INSERT INTO app.parent (code) VALUES ('a')")
    dst.sql("INSERT INTO child (parent_id, n) VALUES (1, 4)")
    assert dst.sql("SELECT id, twice FROM child") == [(1, 8)]


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


# ---------------------------------------------------------------------------
# Ports: allocate_port() hands out each port once, below the ephemeral range

def _allocate(n):
    return [harness.allocate_port() for _ in range(n)]


def test_allocated_ports_are_distinct_and_below_the_ephemeral_range():
    low, high = harness.port_range()
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    assert high < ephemeral_low
    # Ports the counter hands out next, held by listeners here: skipped.
    try:
        with open(harness.PORT_STATE) as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = high
    held, held_ports = [], set()
    for k in range(1, 6):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", low + (last - low + k) % (high - low + 1)))
            s.listen(1)
            held.append(s)
            held_ports.add(s.getsockname()[1])
        except OSError:
            s.close()
    try:
        # four processes and eight threads at once
        with multiprocessing.get_context("fork").Pool(4) as pool:
            in_procs = pool.map_async(_allocate, [150] * 4)
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                in_threads = list(ex.map(lambda _: harness.allocate_port(), range(400)))
            ports = in_threads + [p for ps in in_procs.get(60) for p in ps]
    finally:
        for s in held:
            s.close()
    assert len(ports) == 1000
    assert len(set(ports)) == len(ports), "a port was handed out twice"
    assert all(low <= p <= high for p in ports)
    assert not held_ports & set(ports), "a port in use was handed out"


PAIRS = 99          # 198 daemons
SERVERS = 4         # and PostgreSQL servers: two hundred and two listeners


def test_two_hundred_servers_and_daemons_start_at_once_on_their_own_ports(
        tmp_path, plain_build, straitd_factory, pg_factory):
    """Every daemon (its relay and metrics ports) and every server (its
    port) started at the same time binds what the allocator gave it."""
    import psycopg
    cluster = harness.Cluster(tmp_path / "c", harness.loopback_sites([None, None]))
    configs = [(cluster.path(n), n) for n in ("onprem", "cloud")]
    for i in range(1, PAIRS):
        relay = harness.allocate_port()
        for name in ("onprem", "cloud"):
            host = tmp_path / f"p{i}" / name
            host.mkdir(parents=True)
            cfg = copy.deepcopy(cluster.host(name)[1])     # its key and TLS files
            cfg["relay"]["port"] = relay
            cfg["state_dir"] = str(host / "state")
            cfg["control"]["socket"] = str(host / "control.sock")
            cfg["metrics"]["listen"] = f"127.0.0.1:{harness.allocate_port()}"
            configs.append((harness.write_config(str(host / "strait.yaml"), cfg), name))
    daemons = [straitd_factory(path, site=name, start=False) for path, name in configs]

    def get(d, path):
        with open(d.config_path) as f:
            listen = yaml.safe_load(f)["metrics"]["listen"]
        try:
            return urllib.request.urlopen(f"http://{listen}{path}", timeout=10).read()
        except urllib.error.HTTPError as err:    # 503 while not working: still its answer
            return err.read()

    def relay_up(d):
        text = get(d, "/metrics").decode()
        return re.search(r'^strait_relay_up\{peer="\w+"\} 1$', text, re.M) is not None

    waiting = list(daemons)

    def every_link_up():
        waiting[:] = [d for d in waiting if not relay_up(d)]
        return not waiting

    with concurrent.futures.ThreadPoolExecutor(SERVERS) as ex:
        try:
            servers = [ex.submit(pg_factory, f"many{i}", listen_addresses="127.0.0.1")
                       for i in range(SERVERS)]
            for d in daemons:
                d.start(wait=False)
            for d in daemons:
                d.wait_ready(timeout=60)
            servers = [f.result(timeout=120) for f in servers]
            ports = [s.port for s in servers] + [cluster.cluster_cfg["relay"]["port"]]
            for path, _ in configs:
                with open(path) as f:
                    cfg = yaml.safe_load(f)
                ports.append(int(cfg["metrics"]["listen"].rsplit(":", 1)[1]))
                if cfg["relay"]["port"] not in ports:     # one per pair
                    ports.append(cfg["relay"]["port"])
            assert len(ports) == SERVERS + PAIRS * 3 and len(set(ports)) == len(ports)
            for s in servers:
                with psycopg.connect(host="127.0.0.1", port=s.port, user="postgres",
                                     dbname="postgres", connect_timeout=10) as conn:
                    assert conn.execute("SHOW port").fetchone() == (str(s.port),)
            for d, (_, name) in zip(daemons, configs):
                assert d.alive()
                assert json.loads(get(d, "/health"))["site"] == name
            # each pair's two daemons find each other on the pair's relay port
            harness.wait_until(every_link_up, timeout=60, interval=0.5,
                               what="every pair's relay link")
            assert [d.alive() for d in daemons] == [True] * len(daemons)
        finally:
            # SIGTERM to all first, then wait: they exit side by side
            for d in daemons:
                if d.alive():
                    d.signal(signal.SIGTERM)
            codes = []
            for d in daemons:
                try:
                    codes.append(d.proc.wait(timeout=30) if d.proc else None)
                except subprocess.TimeoutExpired:
                    d.kill()
                    codes.append("killed")
    assert codes == [0] * len(daemons), [d.log_text()[-2000:] for d, c in zip(daemons, codes)
                                          if c != 0][:2]
