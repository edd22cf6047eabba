"""Initial sync into target tables that have rows and are referenced by
foreign keys: PostgreSQL refuses to TRUNCATE such a table alone, so the load
deletes its rows in the load's transaction instead (the loader's replication
role keeps the keys' triggers quiet) and the copy brings the referenced rows
back before the commit. The round ends once, with source and target equal,
and no round is refused."""

import time

import harness
from harness import wait_until
from schemacopy import copy_schema
from test_initial_sync import stream_status, sync_status

PARENTS = 2000
CHILDREN = 5000


def seed(pg):
    pg.sql("CREATE TABLE parent (id int PRIMARY KEY, v text NOT NULL)")
    pg.sql("CREATE TABLE child (id int PRIMARY KEY, "
           "parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE, v text)")
    # referenced by itself only: TRUNCATE ONLY still works there
    pg.sql("CREATE TABLE node (id int PRIMARY KEY, up int REFERENCES node)")
    pg.sql(f"INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, {PARENTS}) g")
    pg.sql(f"INSERT INTO child SELECT g, 1 + g % {PARENTS}, 'c' || g "
           f"FROM generate_series(1, {CHILDREN}) g")
    pg.sql("INSERT INTO node SELECT g, nullif(g - 1, 0) FROM generate_series(1, 100) g")


def stale(pg):
    """Rows the target has before the sync (an earlier copy, or an
    operator's): some the source has with other values, some it lacks, and a
    target-only table that references parent."""
    pg.sql("INSERT INTO parent SELECT g, 'stale' FROM generate_series(1, 500) g")
    pg.sql("INSERT INTO parent SELECT g, 'gone' FROM generate_series(900001, 900010) g")
    pg.sql("INSERT INTO child VALUES (1, 900001, 'stale'), (2, 7, 'stale'), (999999, 3, 'gone')")
    pg.sql("INSERT INTO node VALUES (1, NULL), (2, 1), (500, 2)")
    pg.sql("CREATE TABLE local_note (id int PRIMARY KEY, parent_id int REFERENCES parent)")
    pg.sql("INSERT INTO local_note VALUES (1, 42)")


def test_recopy_into_referenced_tables(tmp_path, pg_factory, straitd_factory):
    src, dst = harness.on_each(pg_factory, ("onprem", "cloud"))
    seed(src)
    copy_schema(src, dst)
    stale(dst)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    started = time.monotonic()
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    # one round: a refused TRUNCATE would pause it and ask again every 5 s, forever
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 60, interval=0.2,
               what="the initial sync")
    elapsed = time.monotonic() - started
    sink = sync_status(cloud, "sink")
    assert sink["rounds"] == 1 and sink["last_error"] is None, sink
    assert stream_status(cloud, "sink")["last_error"] is None
    log = cloud.log_text()
    assert "cannot truncate a table referenced" not in log
    assert "initial sync paused" not in log
    assert "target table public.parent has rows; deleting them" in log, log
    assert "target table public.child has rows; truncating" in log
    assert "target table public.node has rows; truncating" in log
    assert harness.tables_equal(src, dst, ["parent", "child", "node"])
    # the target-only table keeps its row; the row it references came back
    assert dst.sql("SELECT n.id, p.v FROM local_note n JOIN parent p ON p.id = n.parent_id") == \
        [(1, "p42")]
    # every child row has its parent at the target, as at the source
    assert dst.sql("SELECT count(*) FROM child c LEFT JOIN parent p ON p.id = c.parent_id "
                   "WHERE p.id IS NULL") == [(0,)]
    # streaming goes on from there, deletes cascading at the source included
    src.sql("DELETE FROM parent WHERE id = 3")
    src.sql("INSERT INTO parent VALUES (3, 'again')")
    src.sql("UPDATE child SET v = 'moved' WHERE parent_id = 7")
    wait_until(lambda: harness.tables_equal(src, dst, ["parent", "child", "node"]), 60,
               interval=0.5, what="the target to follow the source")
    print(f"\ninitial sync into referenced tables with stale rows: {elapsed:.1f} s")
