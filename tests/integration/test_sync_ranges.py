"""A table above sync_split_above is copied in block ranges, several at a
time, all in one snapshot, each range loaded and recorded on its own
(DESIGN.md, "Initial sync"):

- In ranges: a table of a few hundred thousand rows with a tiny threshold
  arrives equal, the source's status shows its ranges done of its ranges
  while it runs, and the sink's log shows one load per range.
- Resumed (make big): the sink's straitd is killed (-9) in the middle of a
  ten-million-row table's copy, after some ranges are recorded on the
  target. The source holds the copy's snapshot for the sink; after the
  restart it goes on in that snapshot with only the ranges the target lacks:
  it reads (and sends) again much less than the whole table, and the target
  ends equal to the source, writes made meanwhile included.
"""

import re
import threading
import time

import pytest

import harness
from harness import wait_until
from test_initial_sync import start_pair, sync_status, wait_equal


def seed_wide(rows):
    def seed(pg):
        pg.sql("CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, note text NOT NULL)")
        pg.sql(f"INSERT INTO big SELECT g, g % 1000, 'row number ' || g "
               f"FROM generate_series(1, {rows}) g")
        pg.sql("CREATE TABLE small (id int PRIMARY KEY, note text)")
        pg.sql("INSERT INTO small SELECT g, 'small ' || g FROM generate_series(1, 1000) g")
        pg.sql("VACUUM ANALYZE")
    return seed


def split_big(status):
    """The source's entry for public.big in split_tables, or None."""
    for t in status.get("split_tables", []):
        if t["table"] == "public.big":
            return t
    return None


def range_loads(d):
    """[(range, ranges)] of each range load of public.big the sink's log shows begun."""
    return [(int(a), int(b)) for a, b in
            re.findall(r"initial sync: loading public\.big range (\d+) of (\d+)", d.log_text())]


def recorded_ranges(pg):
    rows = pg.sql("SELECT count(*) FROM strait.sync_range WHERE stream = 'app' "
                  "AND table_name = 'big'")
    return rows[0][0]


def copy_text_bytes(pg):
    """The size of big's COPY text (no value needs escaping)."""
    return pg.sql("SELECT sum(octet_length(id::text) + octet_length(v::text) + "
                  "octet_length(note) + 3) FROM big")[0][0]


def aggregate(pg):
    return pg.sql("SELECT count(*), sum(id), sum(v), sum(hashtext(note)::bigint) FROM big")[0]


class Writer:
    """Updates (a row's new version lands in another block, so in another
    range) and inserts into big while the copy runs."""

    def __init__(self, pg, rows):
        self.pg, self.rows = pg, rows
        self.stop = threading.Event()
        self.count = 0
        self.error = None
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        import random
        rnd = random.Random(11)
        try:
            with self.pg.connect() as conn:
                while not self.stop.is_set():
                    with conn.transaction():
                        conn.execute("UPDATE big SET v = v + 1 WHERE id = %s",
                                     (rnd.randint(1, self.rows),))
                        conn.execute("INSERT INTO big VALUES (%s, 7, 'new')",
                                     (self.rows + self.count + 1,))
                    self.count += 1
                    time.sleep(0.01)
        except Exception as exc:  # reported by finish()
            self.error = exc

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error
        return self.count


def test_table_copied_in_ranges(tmp_path, pg_factory, straitd_factory):
    rows = 200000
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory, seed_wide(rows),
        stream_extra={"sync_workers": 3, "sync_split_above": "2MB"}, start=False)
    # The target's table is locked until status has shown the copy under way:
    # the range loads wait on it, whatever the machine's speed.
    lock = dst.connect()          # autocommit: the lock's transaction is explicit
    lock.execute("BEGIN")
    lock.execute("LOCK TABLE big IN SHARE MODE")
    onprem.start()
    cloud.start()

    def ranges_loading():
        loading = sync_status(cloud, "sink").get("loading", [])
        return [e for e in loading if e["table"].endswith("big") and "range" in e]
    under_way = wait_until(ranges_loading, 120, interval=0.2, what="range loads under way")
    source_entry = wait_until(lambda: split_big(sync_status(onprem, "source")), 60,
                              what="the split table in the source's status")
    lock.execute("ROLLBACK")
    lock.close()
    assert all(e["ranges"] == under_way[0]["ranges"] for e in under_way), under_way
    assert sync_status(cloud, "sink")["state"] != "done"
    wait_until(lambda: sync_status(cloud, "sink")["state"] == "done", 180, interval=0.2,
               what="the initial sync")
    wait_equal(src, dst, ["big", "small"])

    final = split_big(sync_status(onprem, "source"))
    ranges = final["ranges"]
    assert ranges > 4 and source_entry["ranges"] == ranges, (source_entry, final)
    assert (final["ranges_done"], ranges) == (ranges, ranges), final
    loads = range_loads(cloud)
    assert sorted(loads) == [(k, ranges) for k in range(ranges)], loads
    assert "initial sync: loading public.small (snapshot" in cloud.log_text()
    # the first range cleared the table: the others waited for it, none truncated
    assert cloud.log_text().count("truncating it") == 0
    src.sql("UPDATE big SET v = -1 WHERE id % 1000 = 0")
    wait_equal(src, dst, ["big", "small"])
    log = onprem.log_text() + cloud.log_text()
    assert "AddressSanitizer" not in log and "runtime error" not in log


@pytest.mark.big
def test_sink_killed_in_the_middle_of_a_split_table_resumes(tmp_path, pg_factory,
                                                            straitd_factory):
    kill_sink_and_resume(tmp_path, pg_factory, straitd_factory, 10_000_000, "160MB")


def test_sink_killed_in_the_middle_of_a_split_table_resumes_1m(tmp_path, pg_factory,
                                                               straitd_factory):
    kill_sink_and_resume(tmp_path, pg_factory, straitd_factory, 1_000_000, "16MB")


def kill_sink_and_resume(tmp_path, pg_factory, straitd_factory, rows, split_above):
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory, seed_wide(rows),
        stream_extra={"sync_workers": 2, "sync_split_above": split_above})
    whole = copy_text_bytes(src)
    writer = Writer(src, rows)
    restarted = None
    try:
        # some ranges committed on the target, the copy still far from done
        def some_ranges():
            entry = split_big(sync_status(onprem, "source"))
            return entry and recorded_ranges(dst) >= entry["ranges"] * 2 // 5
        wait_until(some_ranges, 900, interval=0.2, what="ranges of big recorded")
        entry = split_big(sync_status(onprem, "source"))
        ranges = entry["ranges"]
        first_lsn = sync_status(onprem, "source")["snapshot_lsn"]

        cloud.kill()
        # a load whose COMMIT was on its way still commits: count once its session ended
        wait_until(lambda: dst.sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                   "application_name IN ('strait_sync', 'strait-apply')")[0][0]
                   == 0, 60, interval=0.1, what="the killed sink's target sessions to end")
        begun = len(range_loads(cloud))
        kept = recorded_ranges(dst)
        sent_before = sync_status(onprem, "source")["bytes"]
        assert kept < ranges, (kept, ranges)
        restarted = harness.Straitd(cloud.config_path, site=cloud.site).start()
        wait_until(lambda: sync_status(restarted, "sink")["state"] == "done", 1800, interval=0.5,
                   what="the initial sync after the restart")

        source = sync_status(onprem, "source")
        sent_again = source["bytes"] - sent_before
        # the same snapshot, and only what the target lacked
        assert source["snapshot_lsn"] == first_lsn, source
        assert source["copy_rounds"] == 2, source
        assert "going on in the held snapshot" in onprem.log_text()
        missing = whole * (ranges - kept) / ranges
        assert sent_again < missing + whole * 0.15, (sent_again, missing, whole)
        assert sent_again < whole * 0.75, (sent_again, whole)
        loads = range_loads(restarted)[begun:]     # (the log file goes on)
        assert loads and all(n == ranges for _, n in loads), loads
        assert len(loads) == ranges - kept, (loads, ranges, kept)

        writes = writer.finish()
        assert writes > 0
        wait_until(lambda: aggregate(src) == aggregate(dst), 600, interval=2,
                   what="the target to equal the source")
        assert src.sql("SELECT count(*) FROM small") == dst.sql("SELECT count(*) FROM small")
        log = restarted.log_text() + onprem.log_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log
    finally:
        writer.stop.set()
        writer.thread.join(30)
        if restarted:
            restarted.stop()
