"""Other PostgreSQL major versions on either end (the builds of
tests/postgres-versions.txt, fetched by make deps), each major once as the
source and once as the target: the replication commands each source
version takes (13 and 14 know only the keyword form of
CREATE_REPLICATION_SLOT; 13 speaks pgoutput protocol 1), an initial sync
and streaming of common types."""
import pytest

import harness
from harness import wait_until
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


@pytest.mark.parametrize("versions", [(13, 18), (14, 17), (16, 15), (17, 14), (18, 16), (15, 13)],
                         ids=lambda v: f"{v[0]}-to-{v[1]}")
def test_sync_and_stream_across_versions(tmp_path, pg_factory, straitd_factory, versions):
    """A source of one major version and a target of another: the rows the
    source had are copied, then inserts, updates and deletes of every column
    type stream; both tables end equal."""
    src_v, dst_v = versions
    src = pg_factory("onprem", version=src_v)
    dst = pg_factory("cloud", version=dst_v)
    for pg in (src, dst):
        schema(pg)
    src.sql(rows(1, 200))
    src.sql("INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 50) g")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
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
        pytest.fail(f"PostgreSQL {src_v} -> {dst_v} did not converge\nsource: "
                    f"{source_status(onprem)}\nsink: {sink_status(cloud)}\n"
                    f"source log:\n{onprem.log_text()[-3000:]}\nsink log:\n{cloud.log_text()[-3000:]}")
    versions_seen = [pg.sql("SHOW server_version_num")[0][0] for pg in (src, dst)]
    assert [int(v) // 10000 for v in versions_seen] == [src_v, dst_v]
