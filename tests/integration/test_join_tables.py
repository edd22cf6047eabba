"""Tables that join a stream after its initial sync (DESIGN.md, "Tables that
join later"): a table that comes into the publication with rows already in
it is copied by itself — those rows included — while the other tables
stream on, its changes during the copy are held and applied after it, and
it is recorded as one of the stream's tables; a restart of the sink while a
table joins copies it again, nothing twice.
"""

import threading
import time

import harness
from harness import wait_until
from test_initial_sync import copy_schema, stream_status, sync_status, wait_equal


def members(dst):
    return sorted(f"{s}.{t}" for s, t in dst.sql(
        "SELECT schema_name, table_name FROM strait.sync_member "
        "WHERE stream = 'app' AND left_lsn IS NULL"))


def joining(dst):
    return dst.sql("SELECT schema_name, table_name FROM strait.sync_join WHERE stream = 'app'")


def join_status(straitd):
    return stream_status(straitd, "sink")


def start_pair(tmp_path, pg_factory, straitd_factory, tables=None, extra=()):
    src, dst = harness.on_each(pg_factory, ("onprem", "cloud"))
    for name in ("a", "b") + tuple(extra):
        src.sql(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        src.sql(f"INSERT INTO {name} SELECT g, '{name}' || g FROM generate_series(1, 2000) g")
    copy_schema(src, dst)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True}
    if tables:
        stream["tables"] = tables
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream])
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 60, interval=0.2,
               what="the initial sync")
    wait_until(lambda: members(dst) == ["public.a", "public.b"], 30, what="the stream's members")
    return src, dst, onprem, cloud


class Writer:
    """Changes to a and to the joining table in a loop, until stopped."""

    def __init__(self, src, table):
        self.src, self.table, self.n = src, table, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with self.src.connect() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self.stop.is_set() and self.n < 20000:
                    self.n += 1
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, 'live')", (1000000 + self.n,))
                    cur.execute(f"UPDATE {self.table} SET v = v || '+' WHERE id = %s",
                                (self.n % 5000 + 1,))
                    cur.execute("UPDATE a SET v = v || '.' WHERE id = %s", (self.n % 2000 + 1,))
                    time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def test_table_added_with_rows_joins_while_others_stream(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud = start_pair(tmp_path, pg_factory, straitd_factory)
    # a new table under FOR ALL TABLES, with rows before the stream sees any change of it
    src.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    dst.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    src.sql("INSERT INTO t SELECT g, 't' || g FROM generate_series(1, 50000) g")
    with Writer(src, "t") as w:
        wait_until(lambda: w.n > 200, 30, what="changes during the join")
        # a keeps streaming while t is copied: it moves on the target meanwhile
        before = dst.sql("SELECT sum(length(v)) FROM a")[0][0]
        wait_until(lambda: dst.sql("SELECT sum(length(v)) FROM a")[0][0] > before, 30,
                   what="table a to stream during the join")
        wait_until(lambda: "public.t" in members(dst), 120, interval=0.5, what="t to join")
    wait_equal(src, dst, ("a", "b", "t"), timeout=120)
    assert joining(dst) == []
    st = join_status(cloud)
    assert st["tables_joined"] == 1, st
    assert st["joining"] == [], st
    log = cloud.log_text()
    assert "public.t joined the stream" in log
    # later changes of t stream as any member's
    src.sql("DELETE FROM t WHERE id % 3 = 0")
    wait_equal(src, dst, ("t",), timeout=60)


def test_sink_restart_while_a_table_joins_copies_it_again(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud = start_pair(tmp_path, pg_factory, straitd_factory)
    src.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    dst.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    src.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g")
    with Writer(src, "t") as w:
        wait_until(lambda: joining(dst) != [], 60, interval=0.2, what="t to start joining")
        cloud.kill()
        wait_until(lambda: w.n > 100, 30, what="changes while the sink is down")
        cloud.start()
        wait_until(lambda: "public.t" in members(dst), 180, interval=0.5, what="t to join")
    wait_equal(src, dst, ("a", "b", "t"), timeout=120)
    assert joining(dst) == []
    assert "a table left joining is copied again" in cloud.log_text()


def test_quiet_table_added_to_the_publication_is_copied(tmp_path, pg_factory, straitd_factory):
    """A table with rows and no change since it joined the publication: the
    source's list brings it, not a change."""
    src, dst, onprem, cloud = start_pair(tmp_path, pg_factory, straitd_factory,
                                         tables=["public.a", "public.b"], extra=("q",))
    assert dst.sql("SELECT count(*) FROM q")[0][0] == 0
    src.sql("ALTER PUBLICATION strait_app ADD TABLE q")
    wait_until(lambda: "public.q" in members(dst), 60, interval=0.5, what="q to join")
    wait_equal(src, dst, ("a", "b", "q"), timeout=60)
    assert "the publication lists public.q, which the stream does not have" in cloud.log_text()


def test_table_removed_stops_and_comes_back_copied(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud = start_pair(tmp_path, pg_factory, straitd_factory,
                                         tables=["public.a", "public.b"])
    src.sql("ALTER PUBLICATION strait_app DROP TABLE b")
    src.sql("UPDATE b SET v = 'changed while out' WHERE id <= 100")
    # the stream moves past the removal: b leaves, its changes are not applied
    src.sql("UPDATE a SET v = 'moved' WHERE id = 1")
    wait_until(lambda: members(dst) == ["public.a"], 60, interval=0.5, what="b to leave")
    wait_until(lambda: dst.sql("SELECT v FROM a WHERE id = 1")[0][0] == "moved", 30,
               what="a to stream")
    assert dst.sql("SELECT count(*) FROM b WHERE v = 'changed while out'")[0][0] == 0
    removed = stream_status(onprem, "source")["publication"]["removed"]
    assert removed == ["public.b"], removed
    assert join_status(cloud)["tables_left"] == 1
    # back in the publication: copied again, with what changed while it was out
    src.sql("ALTER PUBLICATION strait_app ADD TABLE b")
    wait_until(lambda: "public.b" in members(dst), 60, interval=0.5, what="b to join again")
    wait_equal(src, dst, ("a", "b"), timeout=60)
    src.sql("DELETE FROM b WHERE id > 1900")
    wait_equal(src, dst, ("b",), timeout=60)


def test_record_from_before_members_takes_the_publication_list(tmp_path, pg_factory,
                                                              straitd_factory):
    """A target whose record predates strait.sync_member: the first list the
    source sends becomes the stream's members (nothing copied for it), and
    tables that join after that are copied."""
    src, dst, onprem, cloud = start_pair(tmp_path, pg_factory, straitd_factory)
    cloud.stop()
    dst.sql("DELETE FROM strait.sync_member")
    dst.sql("UPDATE strait.sync_stream SET members = false")
    cloud.start()
    wait_until(lambda: members(dst) == ["public.a", "public.b"], 60, interval=0.5,
               what="the publication's tables to be taken as members")
    assert "are taken as its members" in cloud.log_text()
    src.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    dst.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    src.sql("INSERT INTO t SELECT g, 't' FROM generate_series(1, 1000) g")
    wait_until(lambda: "public.t" in members(dst), 60, interval=0.5, what="t to join")
    wait_equal(src, dst, ("a", "b", "t"), timeout=60)
