"""Other PostgreSQL major versions on either end (the builds of
tests/postgres-versions.txt, fetched by make deps), each major once as the
source and once as the target: the replication commands each source
version takes (13 and 14 know only the keyword form of
CREATE_REPLICATION_SLOT; 13 speaks pgoutput protocol 1), an initial sync
and streaming of common types, then a switchover under writes (how long the
application could not write is measured and kept in
build/versions-switchover.tsv) and streaming back. Also: a value only the
source's version accepts pauses the stream naming its column; generated
columns an 18 source publishes; an 18 target out of replication origins."""
import os
import threading
import time

import psycopg
import pytest

import harness
from harness import wait_until
from test_failover import health, role
from test_noloss import sink_status, source_status

TYPES_TABLE = """CREATE TABLE kinds (
    id int PRIMARY KEY, big bigint, num numeric(20, 6), txt text, raw bytea,
    at timestamptz, day date, flag boolean, doc jsonb, uid uuid, tags text[],
    span interval, ip inet)"""

ROW = ("INSERT INTO kinds SELECT g, g::bigint * 1000000007, g / 7.0, 'row ' || g || E' \\\\ \\t ''x''', "
       "decode(md5(g::text), 'hex'), '2026-01-02 03:04:05.678+00'::timestamptz + g * interval '1 h', "
       "'2026-01-02'::date + g, g % 2 = 0, jsonb_build_object('g', g, 'a', jsonb_build_array(g, 'x')), "
       "md5(g::text)::uuid, ARRAY['a' || g, NULL, 'c'], g * interval '1 min', "
       "('10.0.' || (g % 250) || '.1')::inet FROM generate_series({lo}, {hi}) g")


def rows(lo, hi):
    return ROW.replace("{lo}", str(lo)).replace("{hi}", str(hi))


def schema(pg):
    pg.sql(TYPES_TABLE)
    pg.sql("CREATE TABLE plain (id int PRIMARY KEY, v text)")


def start(tmp_path, pg_factory, straitd_factory, src_v, dst_v, schema_fn, initial_sync=True,
          dst_settings=None):
    src = pg_factory("onprem", version=src_v)
    dst = pg_factory("cloud", version=dst_v, settings=dst_settings)
    schema_fn(src, dst)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": initial_sync}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    return src, dst, onprem, cloud


def diagnose(src_v, dst_v, onprem, cloud, what):
    pytest.fail(f"PostgreSQL {src_v} -> {dst_v}: {what}\nsource: "
                f"{source_status(onprem)}\nsink: {sink_status(cloud)}\n"
                f"source log:\n{onprem.log_text()[-3000:]}\nsink log:\n{cloud.log_text()[-3000:]}")


class Writer:
    """An application writing one row after another to whichever site says it
    is the primary (GET /primary): the write pause of a switchover is the
    time from its last commit on the old primary to its first on the new."""

    def __init__(self, sites):
        self.sites = sites                  # [(PgServer, Straitd)]
        self.commits = []                   # (monotonic time, site index, id)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def primary(self):
        for i, (_pg, d) in enumerate(self.sites):
            try:
                if health(d, "/primary") == 200:
                    return i
            except OSError:
                pass
        return None

    def run(self):
        n, conn, at = 0, None, 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    at = self.primary()
                    if at is None:
                        time.sleep(0.01)
                        continue
                    conn = self.sites[at][0].connect()
                n += 1
                conn.execute("INSERT INTO plain VALUES (%s, 'writer')", (100000 + n,))
                self.commits.append((time.monotonic(), at, 100000 + n))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def pause(self):
        """Seconds between the last commit on the first site and the first on the second."""
        last_old = max(t for t, at, _ in self.commits if at == 0)
        first_new = min(t for t, at, _ in self.commits if at == 1)
        return first_new - last_old


def record_pause(src_v, dst_v, pause, took):
    build = os.environ.get("STRAIT_PLAIN_BUILD") or os.environ.get("STRAIT_BUILD", ".")
    with open(os.path.join(build, "versions-switchover.tsv"), "a") as f:
        f.write(f"{src_v}\t{dst_v}\t{pause:.3f}\t{took:.3f}\n")


def switchover_under_writes(src, dst, onprem, cloud, src_v, dst_v):
    writer = Writer([(src, onprem), (dst, cloud)])
    writer.thread.start()
    try:
        wait_until(lambda: len(writer.commits) > 50, 30, what="the writer's first commits")
        t0 = time.monotonic()
        res = onprem.ctl("switchover", "--to", "cloud")
        took = time.monotonic() - t0
        wait_until(lambda: any(at == 1 for _, at, _ in writer.commits), 30,
                   what="a commit on the new primary")
        time.sleep(0.2)
    finally:
        writer.stop.set()
        writer.thread.join()
    assert "switchover done in" in res.stdout, res.stdout
    assert role(cloud) == "primary" and role(onprem) == "replica"
    pause = writer.pause()
    record_pause(src_v, dst_v, pause, took)
    print(f"PostgreSQL {src_v} -> {dst_v}: switchover {took:.2f} s, write pause {pause:.2f} s")
    return writer


@pytest.mark.parametrize("versions", [(13, 18), (14, 17), (16, 15), (17, 14), (18, 16), (15, 13)],
                         ids=lambda v: f"{v[0]}-to-{v[1]}")
def test_sync_and_stream_across_versions(tmp_path, pg_factory, straitd_factory, versions):
    """A source of one major version and a target of another: the rows the
    source had are copied, then inserts, updates and deletes of every column
    type stream; both tables end equal. Then a switchover under writes: no
    committed write is lost, and the new primary's writes stream back."""
    src_v, dst_v = versions

    def schemas(*pgs):
        for pg in pgs:
            schema(pg)
        pgs[0].sql(rows(1, 200))
        pgs[0].sql("INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 50) g")

    src, dst, onprem, cloud = start(tmp_path, pg_factory, straitd_factory, src_v, dst_v, schemas)
    tables = ["kinds", "plain"]
    try:
        wait_until(lambda: harness.tables_equal(src, dst, tables), 120, interval=0.5,
                   what="the initial sync")
        src.sql(rows(201, 400))
        src.sql("UPDATE kinds SET txt = txt || ' updated', doc = doc || '{\"u\": true}', "
                "tags = tags || 'd'::text WHERE id % 3 = 0")
        src.sql("DELETE FROM kinds WHERE id % 5 = 0")
        src.sql("UPDATE plain SET v = NULL WHERE id > 40")
        wait_until(lambda: harness.tables_equal(src, dst, tables), 120, interval=0.5,
                   what="the streamed changes")
    except TimeoutError:
        diagnose(src_v, dst_v, onprem, cloud, "did not converge")
    versions_seen = [pg.sql("SHOW server_version_num")[0][0] for pg in (src, dst)]
    assert [int(v) // 10000 for v in versions_seen] == [src_v, dst_v]
    # each end's version and what it lacks is in the status
    assert source_status(onprem)["source_server"]["version_num"] == int(versions_seen[0])
    assert sink_status(cloud)["apply"]["target_server"]["version_num"] == int(versions_seen[1])
    assert "source server is PostgreSQL" in onprem.log_text()

    writer = switchover_under_writes(src, dst, onprem, cloud, src_v, dst_v)
    dst.sql(rows(401, 450))                 # the new primary's own writes, of every type
    try:
        wait_until(lambda: harness.tables_equal(dst, src, tables), 60, interval=0.5,
                   what="the stream back")
    except TimeoutError:
        diagnose(dst_v, src_v, cloud, onprem, "did not stream back")
    committed = {i for _, _, i in writer.commits}
    assert committed <= {r[0] for r in src.sql("SELECT id FROM plain")}


# A value only the source's version has, into the column the target has for
# it: (source, target, source type, target type, a value that loads, one that
# does not, a word of the refused value that the error shows).
REFUSED = {
    "infinite-interval": (17, 16, "interval", "interval", "'1 day'", "'infinity'", "infinity"),
    # 13 has no multiranges; a range column there cannot take one
    "multirange": (14, 13, "int4multirange", "int4range", "NULL", "'{[1,3), [7,9)}'", "[7,9)"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_value_the_target_refuses_pauses_naming_the_column(tmp_path, pg_factory,
                                                              straitd_factory, case):
    """17's infinite interval does not load on 16, nor 14's multirange into a
    13 range: the stream pauses with the table and the column named in the
    log and the status; once the operator makes the target's column text, it
    goes on by itself."""
    src_v, dst_v, src_type, dst_type, good, bad, shown = REFUSED[case]

    def schemas(src, dst):
        for pg, typ in ((src, src_type), (dst, dst_type)):
            pg.sql(f"CREATE TABLE spans (id int PRIMARY KEY, span {typ}, note text)")

    src, dst, onprem, cloud = start(tmp_path, pg_factory, straitd_factory, src_v, dst_v, schemas,
                                    initial_sync=False)
    wait_until(lambda: source_status(onprem)["streaming"], 60, what="the stream")
    src.sql(f"INSERT INTO spans VALUES (1, {good}, 'loads')")
    wait_until(lambda: dst.sql("SELECT count(*) FROM spans") == [(1,)], 30, what="row 1")
    src.sql(f"INSERT INTO spans VALUES (2, {bad}, 'only {src_v} has it')")
    try:
        wait_until(lambda: "column" in (sink_status(cloud)["apply"]["last_error"] or ""), 30,
                   what="the stream to pause")
    except TimeoutError:
        diagnose(src_v, dst_v, onprem, cloud, "did not pause")
    err = sink_status(cloud)["apply"]["last_error"]
    assert 'could not apply INSERT to target table "public.spans" (key (id)=(2)' in err, err
    assert 'the target does not accept the value of column "span"' in err, err
    assert shown in err, err
    assert 'the target does not accept the value of column "span"' in cloud.log_text()
    src.sql(f"INSERT INTO spans VALUES (3, {good}, 'after')")
    time.sleep(1)
    assert dst.sql("SELECT id FROM spans ORDER BY id") == [(1,)]
    dst.sql("ALTER TABLE spans ALTER COLUMN span TYPE text")
    wait_until(lambda: dst.sql("SELECT count(*) FROM spans") == [(3,)], 30,
               what="the stream to go on")
    assert dst.sql("SELECT span FROM spans ORDER BY id") == src.sql(
        "SELECT span::text FROM spans ORDER BY id")


def test_generated_columns_an_18_source_publishes(tmp_path, pg_factory, straitd_factory):
    """An 18 publication with publish_generated_columns = stored sends the
    source's generated values; a 16 target computes its own generated
    columns (never written) and takes them into a plain column."""
    def schemas(src, dst):
        src.sql("CREATE TABLE items (id int PRIMARY KEY, price int, qty int, "
                "total int GENERATED ALWAYS AS (price * qty) STORED, "
                "doubled int GENERATED ALWAYS AS (price * 2) STORED)")
        src.sql("CREATE PUBLICATION strait_app FOR ALL TABLES WITH (publish_generated_columns = stored)")
        dst.sql("CREATE TABLE items (id int PRIMARY KEY, price int, qty int, "
                "total int GENERATED ALWAYS AS (price * qty) STORED, doubled int)")

    src, dst, onprem, cloud = start(tmp_path, pg_factory, straitd_factory, 18, 16, schemas,
                                    initial_sync=False)
    wait_until(lambda: source_status(onprem)["streaming"], 60, what="the stream")
    src.sql("INSERT INTO items (id, price, qty) SELECT g, g, 3 FROM generate_series(1, 20) g")
    src.sql("UPDATE items SET qty = 5 WHERE id <= 10")
    src.sql("DELETE FROM items WHERE id = 20")
    try:
        wait_until(lambda: harness.tables_equal(src, dst, ["items"]), 30, interval=0.5,
                   what="the items")
    except TimeoutError:
        diagnose(18, 16, onprem, cloud, "generated columns did not converge")
    assert dst.sql("SELECT total, doubled FROM items WHERE id = 7") == [(35, 14)]


def test_an_18_target_out_of_replication_origins(tmp_path, pg_factory, straitd_factory):
    """An 18 target whose max_active_replication_origins are all taken (an
    origin keeps its slot once used, until it is dropped): the stream pauses
    naming that setting, and goes on once one is free."""
    def schemas(src, dst):
        for pg in (src, dst):
            pg.sql("CREATE TABLE plain (id int PRIMARY KEY, v text)")
        with dst.connect() as conn:
            conn.execute("SELECT pg_replication_origin_create('other')")
            conn.execute("SELECT pg_replication_origin_session_setup('other')")

    src, dst, onprem, cloud = start(tmp_path, pg_factory, straitd_factory, 16, 18, schemas,
                                    initial_sync=False,
                                    dst_settings={"max_active_replication_origins": 1})
    wait_until(lambda: "max_active_replication_origins" in
               (sink_status(cloud)["apply"]["last_error"] or ""), 30,
               what="the apply to name the setting")
    err = sink_status(cloud)["apply"]["last_error"]
    assert "has no free replication origin; raise max_active_replication_origins" in err, err
    assert "(PostgreSQL 18." in err, err
    assert cloud.log_text().count("has no free replication origin") >= 1
    dst.sql("SELECT pg_replication_origin_drop('other')")
    src.sql("INSERT INTO plain VALUES (1, 'after')")
    wait_until(lambda: dst.sql("SELECT count(*) FROM plain") == [(1,)], 30,
               what="the stream to go on")
