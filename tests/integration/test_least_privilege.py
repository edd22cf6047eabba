"""strait with the README's roles without superuser ("Database roles without
superuser"), on both ends: initial sync, streaming, a switchover and a
verify, the grants applied exactly as the README lists them.

onprem's role may ALTER SYSTEM the one parameter fencing sets (the README's
grant); cloud's may not, as on a managed service, and owns its database
instead, so its fence falls back to ALTER DATABASE."""

import json

import psycopg
import pytest

import harness
from harness import wait_until
from test_failover import role, sink_of, source_of
from test_replication import wait_streaming

DB = "app"
TABLES = ("ledger", "counter")

# the README's lists; both ends get both (a switchover makes the target a source)
GRANTS = [
    "CREATE ROLE strait LOGIN REPLICATION",
    "GRANT pg_read_all_stats TO strait",
    f"GRANT CREATE ON DATABASE {DB} TO strait",
    "GRANT SET ON PARAMETER session_replication_role TO strait",
    "GRANT pg_signal_backend TO strait",
]
# functions are per database: granted while connected to it
DB_GRANTS = [
    "GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_drop(text), "
    "pg_replication_origin_session_setup(text), pg_replication_origin_session_reset(), "
    "pg_replication_origin_session_progress(boolean), pg_replication_origin_progress(text, boolean), "
    "pg_replication_origin_xact_setup(pg_lsn, timestamptz), pg_replication_origin_advance(text, pg_lsn) "
    "TO strait",
]
FENCE_BY_ALTER_SYSTEM = [      # in database app too (pg_reload_conf is a function)
    "GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO strait",
    "GRANT EXECUTE ON FUNCTION pg_reload_conf() TO strait",
]
FENCE_BY_DATABASE = [f"ALTER DATABASE {DB} OWNER TO strait"]
TABLE_GRANTS = [
    "ALTER TABLE public.ledger OWNER TO strait",
    "ALTER TABLE public.counter OWNER TO strait",     # its sequence follows
]


def setup_roles(pg, fence_grants):
    pg.createdb(DB)
    pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, site text NOT NULL)", dbname=DB)
    pg.sql("CREATE TABLE counter (id serial PRIMARY KEY, v int)", dbname=DB)
    for sql in GRANTS:
        pg.sql(sql)
    for sql in DB_GRANTS + fence_grants + TABLE_GRANTS:
        pg.sql(sql, dbname=DB)
    assert pg.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'strait'") == [(False,)]


def equal(src, dst):
    return harness.tables_equal(src, dst, TABLES, dbname=DB)


def test_full_scenario_without_superuser(tmp_path, pg_factory, straitd_factory):
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    setup_roles(src, FENCE_BY_ALTER_SYSTEM)
    setup_roles(dst, FENCE_BY_DATABASE)
    dst.sql("CREATE SEQUENCE audit_seq", dbname=DB)    # not strait's: skipped and named
    src.sql("INSERT INTO ledger SELECT g, 'before' FROM generate_series(1, 500) g", dbname=DB)
    src.sql("INSERT INTO counter (v) SELECT g FROM generate_series(1, 50) g", dbname=DB)

    sites = harness.loopback_sites([src, dst])
    for s, pg in zip(sites, (src, dst)):
        s["database"] = pg.dsn(dbname=DB, user="strait")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True, "tables": ["public.ledger", "public.counter"]}
    cluster = harness.Cluster(tmp_path, sites, [stream], extra={"failover": {"sequence_margin": 100}})
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")

    # initial sync, then streaming
    try:
        wait_streaming(onprem, timeout=30)
    except TimeoutError:
        print(onprem.log_text()[-6000:], cloud.log_text()[-6000:])
        raise
    wait_until(lambda: sink_of(cloud) and sink_of(cloud)[0]["apply_ready"], 30, what="cloud's apply")
    wait_until(lambda: equal(src, dst), 60, interval=0.5, what="the initial sync")
    for i in range(501, 601):
        src.sql("INSERT INTO ledger VALUES (%s, 'streamed')", (i,), dbname=DB)
    src.sql("UPDATE counter SET v = v + 1 WHERE id <= 10", dbname=DB)
    wait_until(lambda: equal(src, dst), 60, interval=0.5, what="the streamed changes")

    # verify, from the primary
    res = onprem.ctl("verify", "--json", check=False, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["streams"][0]["ok"], doc

    # sequence values cross every few seconds, apart from the data: the counter's has
    wait_until(lambda: dst.sql("SELECT last_value FROM counter_id_seq", dbname=DB)[0][0] >= 50,
               30, interval=0.5, what="the counter's sequence value at cloud")
    # a planned switchover: onprem fences with ALTER SYSTEM, cloud unfences with ALTER DATABASE
    res = onprem.ctl("switchover", "--to", "cloud", check=False, timeout=120)
    print(res.stdout, res.stderr)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "switchover done in" in res.stdout
    assert "ALTER SYSTEM SET default_transaction_read_only = on: done" in res.stdout
    assert role(cloud) == "primary" and role(onprem) == "replica"
    cloud_log = cloud.log_text()
    assert "falling back to ALTER DATABASE" in cloud_log, cloud_log[-3000:]
    assert ("sequences not raised (this role lacks SELECT or UPDATE on them): public.audit_seq"
            in cloud_log), cloud_log[-3000:]
    assert dst.sql("SELECT last_value FROM counter_id_seq", dbname=DB)[0][0] >= 150
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.sql("INSERT INTO ledger VALUES (-1, 'fenced')", dbname=DB)

    # the reverse stream, as the same roles
    wait_until(lambda: source_of(cloud) and source_of(cloud)[0]["streaming"], 30,
               what="the reverse stream")
    dst.sql("INSERT INTO ledger VALUES (-2, 'cloud')", dbname=DB)
    dst.sql("INSERT INTO counter (v) VALUES (1000)", dbname=DB)
    wait_until(lambda: equal(dst, src), 60, interval=0.5, what="cloud's writes at onprem")
    res = cloud.ctl("verify", "--json", check=False, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_superuser_only_step_fails_clearly(tmp_path, pg_factory, straitd_factory):
    """No table list: strait would publish FOR ALL TABLES, which only a superuser may."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    setup_roles(src, FENCE_BY_ALTER_SYSTEM)
    setup_roles(dst, FENCE_BY_DATABASE)
    sites = harness.loopback_sites([src, dst])
    for s, pg in zip(sites, (src, dst)):
        s["database"] = pg.dsn(dbname=DB, user="strait")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app"}
    cluster = harness.Cluster(tmp_path, sites, [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    straitd_factory(cluster.path("cloud"), site="cloud")
    want = ("must be superuser to create FOR ALL TABLES publication (a publication FOR ALL "
            "TABLES needs superuser: list the tables in streams[].tables")
    try:
        wait_until(lambda: want in onprem.log_text(), 20, what="the refusal in the log")
    except TimeoutError:
        print(onprem.log_text()[-5000:])
        raise
    st = [r for r in onprem.status()["replication"] if r["role"] == "source"][0]
    print(st)
    assert want in json.dumps(st), st
    assert not st["streaming"]


def test_target_role_that_may_not_set_session_replication_role(tmp_path, pg_factory,
                                                               straitd_factory):
    """A target role without SET on session_replication_role (a managed
    service that does not grant it, or PostgreSQL before 15): the stream
    applies anyway, with the target's triggers running, and says so."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    setup_roles(src, FENCE_BY_ALTER_SYSTEM)
    setup_roles(dst, FENCE_BY_DATABASE)
    dst.sql("REVOKE SET ON PARAMETER session_replication_role FROM strait")
    # a trigger of the target's own: it runs on applied rows now
    dst.sql("CREATE TABLE seen (id bigint)", dbname=DB)
    dst.sql("ALTER TABLE seen OWNER TO strait", dbname=DB)
    dst.sql("CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN INSERT INTO public.seen VALUES (NEW.id); RETURN NEW; END$$", dbname=DB)
    dst.sql("CREATE TRIGGER note AFTER INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION note()",
            dbname=DB)
    sites = harness.loopback_sites([src, dst])
    for s, pg in zip(sites, (src, dst)):
        s["database"] = pg.dsn(dbname=DB, user="strait")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False, "tables": ["public.ledger", "public.counter"]}
    cluster = harness.Cluster(tmp_path, sites, [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem, timeout=30)
    wait_until(lambda: sink_of(cloud) and sink_of(cloud)[0]["apply_ready"], 30, what="cloud's apply")
    src.sql("INSERT INTO ledger SELECT g, 'streamed' FROM generate_series(1, 20) g", dbname=DB)
    wait_until(lambda: equal(src, dst), 60, interval=0.5, what="the streamed rows")
    assert dst.sql("SELECT count(*) FROM seen", dbname=DB)[0][0] == 20
    assert "may not set session_replication_role" in cloud.log_text()
    assert sink_of(cloud)[0]["apply"]["triggers_fire"] is True
