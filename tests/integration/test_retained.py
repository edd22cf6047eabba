"""A replica's retained batches (three sites on this host's loopback, real
PostgreSQL servers on their defaults except wal_level): they follow what
the replica applied, the replica never acknowledges past what they hold on
disk, and a tail they lost (a crash between the apply's commit and their
fsync) is taken again from the source, the apply skipping what it has."""

import glob
import os

from harness import wait_until
from test_fan_out import loopback_three, lsn_int


def sink(d):
    return next(r for r in d.status()["replication"] if r["role"] == "sink")


def ids(pg):
    return [r[0] for r in pg.sql("SELECT id FROM ledger ORDER BY id")]


def test_a_lost_tail_of_the_retained_batches_is_taken_again(tmp_path, pg_factory,
                                                           straitd_factory):
    pgs, d, cluster = loopback_three(pg_factory, straitd_factory, tmp_path,
                                     "CREATE TABLE ledger (id bigint PRIMARY KEY)")
    # onprem away: the primary's spool keeps everything azure acknowledges
    d["onprem"].kill()
    for i in range(1, 401):
        pgs["aws"].sql("INSERT INTO ledger VALUES (%s)", (i,))
    wait_until(lambda: ids(pgs["azure"])[-1:] == [400], 30, what="azure applied")
    s = sink(d["azure"])
    applied = lsn_int(s["committed_lsn"])
    wait_until(lambda: lsn_int(sink(d["azure"])["retained"]["end_lsn"]) >= applied, 10,
               what="the retained batches to hold it")
    # what the primary saw acknowledged never passes what azure holds on disk
    assert lsn_int(sink(d["azure"])["acked_lsn"]) <= lsn_int(sink(d["azure"])["retained"]["end_lsn"])
    floor = sink(d["azure"])["retained"]["floor_lsn"]
    d["azure"].stop()
    before = len(d["azure"].log_text())
    # as a crash before their fsync would leave them: the last segment cut in the middle
    state = cluster.host("azure")[1]["state_dir"]
    seg = sorted(glob.glob(os.path.join(state, "retain", "app", "*.seg")))[-1]
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.truncate(size // 2)
    d["azure"].start()
    wait_until(lambda: sink(d["azure"])["apply_ready"] and "retained" in sink(d["azure"]), 30,
               what="azure back")
    assert "recovery cut" in d["azure"].log_text()[before:]
    wait_until(lambda: lsn_int(sink(d["azure"])["retained"]["end_lsn"]) >= applied, 30,
               interval=0.2, what="the lost tail taken again from the primary")
    # made good, not started over: the floor is where it was
    log = d["azure"].log_text()[before:]
    assert "emptied" not in log and "they start over" not in log, log
    assert sink(d["azure"])["retained"]["floor_lsn"] == floor
    # the apply skipped what it had: nothing twice, nothing missing
    assert ids(pgs["azure"]) == list(range(1, 401))
    pgs["aws"].sql("INSERT INTO ledger VALUES (401)")
    wait_until(lambda: ids(pgs["azure"])[-1:] == [401], 30, what="azure goes on")
