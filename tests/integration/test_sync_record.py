"""What an initial sync keeps on the target, across versions and after a
stream is dropped (DESIGN.md, "Initial sync"):

- An older version recorded loaded tables in one replication origin per table
  ("strait_<stream>:sync:<schema>.<table>", its progress the snapshot LSN)
  and the finished sync in "strait_<stream>:sync". A sink starting on such a
  target moves them into strait.sync_table / strait.sync_stream, drops the
  origins, and copies only what they did not record.
- straitctl forget-stream removes a dropped stream's rows and origins, refuses
  a stream still in the config, and its deletes carry a strait origin, so a
  FOR ALL TABLES publication on the target does not send them on as a
  change of the site's own.
"""

import time

import harness
from harness import wait_until
from test_initial_sync import (copy_schema, loads, strait_origins, sync_start, sync_status,
                               sync_tables, wait_equal)


def seed(pg):
    for name in ("a", "b", "c"):
        pg.sql(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        pg.sql(f"INSERT INTO {name} SELECT g, '{name}' || g FROM generate_series(1, 500) g")


def pair(tmp_path, pg_factory, straitd_factory, start):
    src, dst = harness.on_each(pg_factory, ("onprem", "cloud"))
    seed(src)
    copy_schema(src, dst)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem", start=start)
    cloud = straitd_factory(cluster.path("cloud"), site="cloud", start=start)
    return src, dst, onprem, cloud, cluster


def test_older_per_table_origins_are_migrated(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = pair(tmp_path, pg_factory, straitd_factory, start=False)
    # As an older version left the target: a and b loaded (their rows there,
    # one origin each with the snapshot LSN), c not yet, the sync not done.
    for name in ("a", "b"):
        rows = src.sql(f"SELECT id, v FROM {name}")
        with dst.connect() as conn:
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)", rows)
    # ... and the stream's publication and slot, from before those snapshots
    src.sql("CREATE PUBLICATION strait_app FOR ALL TABLES")
    src.sql("SELECT pg_create_logical_replication_slot('strait_app', 'pgoutput')")
    lsn = src.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    for name in ("a", "b"):
        origin = f"strait_app:sync:public.{name}"
        dst.sql("SELECT pg_replication_origin_create(%s)", (origin,))
        dst.sql("SELECT pg_replication_origin_advance(%s, %s)", (origin, lsn))
    assert strait_origins(dst) == ["strait_app:sync:public.a", "strait_app:sync:public.b"]

    onprem.start()
    cloud.start()
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 60, interval=0.2,
               what="the initial sync")
    # only c was copied; a and b were kept with the LSN their origins held
    assert [t for t, _ in loads(cloud)] == ["public.c"], loads(cloud)
    assert "moving 2 tables recorded by replication origins" in cloud.log_text()
    assert not [o for o in strait_origins(dst) if ":sync" in o], strait_origins(dst)
    assert sync_start(dst) == lsn
    src.sql("UPDATE a SET v = v || '+' WHERE id % 7 = 0")
    src.sql("INSERT INTO b SELECT g, 'new' FROM generate_series(501, 600) g")
    src.sql("DELETE FROM c WHERE id % 5 = 0")
    wait_equal(src, dst, ("a", "b", "c"), timeout=60)
    wait_until(lambda: sync_tables(dst) == {}, 30, what="the table records to be folded")

    # a restart finds the record, not the origins: nothing is copied again
    cloud.stop()
    cloud.start()
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 30, interval=0.2,
               what="the sink to read its record")
    src.sql("INSERT INTO c VALUES (1000, 'after the restart')")
    wait_equal(src, dst, ("a", "b", "c"), timeout=60)
    assert len(loads(cloud)) == 1, loads(cloud)


def pgoutput_messages(pg, slot):
    """The pgoutput messages a logical slot holds (peeked, not consumed)."""
    rows = pg.sql("SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
                  "'proto_version', '1', 'publication_names', 'everything')", (slot,))
    return [bytes(r[0]) for r in rows]


def test_forget_stream(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, cluster = pair(tmp_path, pg_factory, straitd_factory, start=True)
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 60, interval=0.2,
               what="the initial sync")
    wait_equal(src, dst, ("a", "b", "c"), timeout=60)
    assert sync_start(dst) is not None
    members = "SELECT count(*) FROM strait.sync_member WHERE stream = 'app'"
    assert dst.sql(members)[0][0] == 3

    # still in the config: refused, nothing touched
    res = cloud.ctl("forget-stream", "app", check=False)
    assert res.returncode != 0 and "in the config" in res.stdout + res.stderr
    assert sync_start(dst) is not None and "strait_app" in strait_origins(dst)

    # The target also publishes everything (as a site that streams back
    # would): a slot there sees what forget-stream writes.
    dst.sql("CREATE PUBLICATION everything FOR ALL TABLES")
    dst.sql("SELECT pg_create_logical_replication_slot('watch', 'pgoutput')")

    # the stream is dropped from the config of both sites
    for name, d in (("onprem", onprem), ("cloud", cloud)):
        d.stop()
        cfg = cluster.host(name)[1]
        cfg["streams"] = []
        cluster.update(name, cfg)
        d.start()
    res = cloud.ctl("forget-stream", "app", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 replication origins dropped" in res.stdout or "origins dropped" in res.stdout, res.stdout
    assert sync_start(dst) is None
    assert dst.sql("SELECT count(*) FROM strait.sync_table WHERE stream = 'app'")[0][0] == 0
    assert dst.sql(members)[0][0] == 0
    assert dst.sql("SELECT count(*) FROM strait.sync_join WHERE stream = 'app'")[0][0] == 0
    # the stream's origins are gone; forget-stream's own stays (see syncstate.h)
    assert strait_origins(dst) == ["strait_:forget"], strait_origins(dst)

    # its delete went out marked with a strait origin: a reverse stream
    # passes the transaction on empty
    msgs = pgoutput_messages(dst, "watch")
    deletes = [m for m in msgs if m[:1] == b"D"]
    assert deletes, msgs
    origins = [m for m in msgs if m[:1] == b"O"]
    assert origins and all(b"strait_:forget" in m for m in origins), origins
    assert len(origins) == len([m for m in msgs if m[:1] == b"B"]), msgs
    dst.sql("SELECT pg_drop_replication_slot('watch')")

    # forgetting again finds nothing, and says so without failing
    res = cloud.ctl("forget-stream", "app", check=False)
    assert res.returncode == 0 and "0 replication origins dropped" in res.stdout, res.stdout


def source_publication(d):
    return next(r for r in d.status()["replication"] if r["role"] == "source")["publication"]


def test_tables_removed_and_added_after_the_sync(tmp_path, pg_factory, straitd_factory):
    """A tables: list edited and reloaded sets the publication; a table taken
    out stops being applied and status says so; one added later is noticed
    and streams from its addition on (DESIGN.md, "Tables that join later")."""
    src, dst = harness.on_each(pg_factory, ("onprem", "cloud"))
    seed(src)
    src.sql("CREATE TABLE d (id int PRIMARY KEY, v text)")
    src.sql("INSERT INTO d SELECT g, 'd' || g FROM generate_series(1, 10) g")
    copy_schema(src, dst)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True, "tables": ["a", "b", "public.c"]}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 60, interval=0.2,
               what="the initial sync")
    wait_equal(src, dst, ("a", "b", "c"), timeout=60)
    pub = source_publication(onprem)
    assert pub["tables"] == 3 and pub["added"] == [] and pub["removed"] == [], pub

    # b leaves the list: the reload sets the publication, status names it
    cfg = cluster.host("onprem")[1]
    cfg["streams"][0]["tables"] = ["a", "public.c"]
    cluster.update("onprem", cfg)
    onprem.reload()
    wait_until(lambda: source_publication(onprem)["removed"] == ["public.b"], 20,
               what="status to show b removed")
    assert sorted(r[0] for r in src.sql("SELECT tablename FROM pg_publication_tables "
                                        "WHERE pubname = 'strait_app'")) == ["a", "c"]
    assert "table public.b is no longer in publication" in onprem.log_text()
    # b's changes are not applied any more; a's go on
    src.sql("UPDATE b SET v = 'after' WHERE id = 1")
    src.sql("INSERT INTO a VALUES (1001, 'after b left')")
    wait_equal(src, dst, ("a", "c"), timeout=30)
    time.sleep(1)
    assert dst.sql("SELECT v FROM b WHERE id = 1")[0][0] == "b1"

    # d joins by hand: noticed within a poll, its changes stream from then on
    src.sql("ALTER PUBLICATION strait_app ADD TABLE d")
    wait_until(lambda: source_publication(onprem)["added"] == ["public.d"], 20,
               what="status to show d added")
    assert "table public.d was added to publication" in onprem.log_text()
    src.sql("INSERT INTO d VALUES (11, 'new')")
    wait_until(lambda: dst.sql("SELECT count(*) FROM d WHERE id = 11")[0][0] == 1, 30,
               what="d's new row")
