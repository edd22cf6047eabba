"""Slot watching (replicator/slotwatch.c) and disk warnings (gateway/stream/diskwarn.c)
against a real PostgreSQL server.

tests/tools/slotwatch_driver polls one slot and prints one JSON line per poll:
the sample's figures and the warnings judged from them. The server runs with
max_slot_wal_keep_size = 64MB, so a logical slot that nobody reads goes from
no warning to a warning (>= 50 %: 32 MiB), to critical (>= 80 %: 51.2 MiB),
to unreserved and, after a checkpoint, lost. WAL is written with
pg_logical_emit_message() in 1 MiB records, so the amounts are known.
"""

import json
import os
import select
import signal
import subprocess
import time

import pytest

import harness

DRIVER = os.path.join(harness.BUILD, "tools", "slotwatch_driver")
MiB = 1024 * 1024
KEEP = 64 * MiB


@pytest.fixture(scope="module", autouse=True)
def driver_built():
    if not os.access(DRIVER, os.X_OK):
        pytest.exit(f"{DRIVER} is missing: run make tools first", returncode=2)


@pytest.fixture(scope="module")
def pg():
    """One server for the module (conftest's pg_factory is per test; initdb is slow)."""
    server = harness.PgServer("slotwatch", listen_addresses="127.0.0.1",
                              settings={"max_slot_wal_keep_size": "'64MB'"})
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def slots(pg):
    """Slots a test makes are dropped after it, so the next one starts fresh."""
    made = []
    yield made
    if pg.pid is None:
        pg.start()
    for name in made:
        pg.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
               "WHERE slot_name = %s", (name,))


def make_slot(pg, slots, name):
    pg.sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
    slots.append(name)


def emit_wal(pg, mib):
    """Writes about mib MiB of WAL (non-transactional logical messages of 1 MiB)."""
    pg.sql("SELECT count(pg_logical_emit_message(false, 'strait-test', repeat('x', 1048576))) "
           "FROM generate_series(1, %s)", (mib,))


def poll(dsn, slot, *args, samples=1):
    """Runs the driver for some samples; returns the parsed lines."""
    res = harness.run([DRIVER, "--interval", "100", "--samples", str(samples),
                       "--max-failures", "3", *args, dsn, slot], check=False, timeout=60)
    assert res.returncode == 0, f"driver exited {res.returncode}: {res.stdout}{res.stderr}"
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == samples, res.stdout
    return lines


def sample(dsn, slot, *args):
    return poll(dsn, slot, *args)[0]


def retained(pg, slot):
    return int(pg.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                      "FROM pg_replication_slots WHERE slot_name = %s", (slot,))[0][0])


def checked_sample(pg, slot):
    """A sample whose retained_bytes lies between what PostgreSQL says before and after it."""
    before = retained(pg, slot)
    s = sample(pg.dsn(), slot)
    after = retained(pg, slot)
    assert before <= s["retained_bytes"] <= after, (before, s, after)
    return s


def mib(n):
    """n bytes (1 MiB .. 1 GiB) as diskwarn writes them: "40.2 MiB", "41 MiB"."""
    text = f"{n / MiB:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + " MiB"


def kinds(s):
    return {w["kind"]: w for w in s["warnings"]}


def disk_room(path):
    """(free, size) as diskwarn measures them: f_bavail, used + f_bavail."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    return free, (st.f_blocks - st.f_bfree) * st.f_frsize + free


@pytest.fixture
def roomy_disk(pg):
    """The tests expect no disk-space warnings of their own: skip on a nearly full disk."""
    free, size = disk_room(pg.datadir)
    if free * 100 < size * 15 or free < 4 * KEEP:
        pytest.skip("the test disk is too full to tell the slot's warnings from the disk's")


# --------------------------------------------------------------------------

def test_fresh_slot_then_warning_then_critical_then_lost(pg, slots, roomy_disk):
    dsn = pg.dsn()
    make_slot(pg, slots, "strait_app")

    fresh = sample(dsn, "strait_app")
    assert fresh["slot_found"] is True
    assert fresh["server_version"] >= 150000
    assert fresh["max_slot_wal_keep_size"] == KEEP
    assert fresh["wal_status"] == "reserved"
    assert fresh["retained_bytes"] < 1 * MiB
    # PostgreSQL keeps whole segments: up to one more (16 MiB) than the limit
    assert KEEP - 2 * MiB <= fresh["safe_wal_size"] <= KEEP + 16 * MiB
    assert "restart_lsn" in fresh and "confirmed_flush_lsn" in fresh
    assert fresh["warnings"] == [] and fresh["worst"] == "ok"

    # the server is local (unix socket) and we are superuser: pg_wal's disk is measured
    assert fresh["server_local"] is True
    assert fresh["wal_disk_known"] is True
    assert fresh["wal_disk_path"] == os.path.join(pg.datadir, "pg_wal")
    free, size = disk_room(pg.datadir)
    assert fresh["wal_disk_size"] == size
    # other engineers share the disk: free space moves, but not by much
    assert abs(fresh["wal_disk_free"] - free) < max(size // 50, 512 * MiB)

    emit_wal(pg, 40)                          # ~39 MiB: 61 % of the limit
    warned = checked_sample(pg, "strait_app")
    assert 32 * MiB <= warned["retained_bytes"] < 51 * MiB
    assert warned["retained_bytes"] > fresh["retained_bytes"]
    assert warned["safe_wal_size"] < fresh["safe_wal_size"]
    assert warned["worst"] == "warning"
    w = kinds(warned)
    assert set(w) == {"slot_keep_size"}, warned["warnings"]
    pct = warned["retained_bytes"] * 100 // KEEP
    assert w["slot_keep_size"]["text"] == (
        f"slot strait_app retains {mib(warned['retained_bytes'])} of WAL, {pct}% of "
        f"max_slot_wal_keep_size (64 MiB): the slot is invalidated at 100%")

    emit_wal(pg, 16)                          # ~55 MiB: 85 %
    critical = checked_sample(pg, "strait_app")
    assert critical["retained_bytes"] >= 52 * MiB
    assert critical["worst"] == "critical"
    assert kinds(critical)["slot_keep_size"]["level"] == "critical"

    emit_wal(pg, 40)                          # ~94 MiB: past the limit by more than a segment
    past = sample(dsn, "strait_app")
    assert past["worst"] == "critical"
    assert past["wal_status"] in ("unreserved", "lost"), past
    assert kinds(past)["slot_keep_size"]["level"] == "critical"

    pg.sql("CHECKPOINT")                      # invalidates the slot
    lost = harness.wait_until(
        lambda: (s := sample(dsn, "strait_app")) and s["wal_status"] == "lost" and s,
        timeout=20, what="the slot to be lost")
    assert "restart_lsn" not in lost and "retained_bytes" not in lost
    w = kinds(lost)["slot_keep_size"]
    assert w["level"] == "critical"
    assert w["text"] == ("slot strait_app is lost (wal_status lost): the server removed WAL it "
                         "needs, so the stream cannot resume from it and needs a new slot and "
                         "initial sync")


def test_missing_slot_and_tcp_localhost(pg, roomy_disk):
    # over TCP to 127.0.0.1: still this host
    dsn = f"host=127.0.0.1 port={pg.port} dbname=postgres user=postgres"
    s = sample(dsn, "strait_nothing")
    assert s["slot_found"] is False
    assert "restart_lsn" not in s and "retained_bytes" not in s and "wal_status" not in s
    assert s["warnings"] == []
    assert s["server_local"] is True
    assert s["wal_disk_known"] is True
    assert s["max_slot_wal_keep_size"] == KEEP


def test_role_without_settings_access_skips_the_disk_quietly(pg, slots, roomy_disk):
    make_slot(pg, slots, "strait_app")
    pg.sql("DROP ROLE IF EXISTS watcher")
    pg.sql("CREATE ROLE watcher LOGIN")
    res = harness.run([DRIVER, "--samples", "2", "--interval", "100", "--max-failures", "1",
                       pg.dsn(user="watcher"), "strait_app"], check=False, timeout=60)
    assert res.returncode == 0, res
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [l["sample"] for l in lines] == [1, 2]
    for s in lines:
        assert s["slot_found"] is True and s["wal_status"] == "reserved"
        assert s["server_local"] is True
        assert s["wal_disk_known"] is False
    # quietly: nothing at warning level or above
    assert "warning" not in res.stderr and "error" not in res.stderr, res.stderr

    # with pg_read_all_settings the data directory is readable
    pg.sql("GRANT pg_read_all_settings TO watcher")
    s = sample(pg.dsn(user="watcher"), "strait_app")
    assert s["wal_disk_known"] is True


def test_spool_disk_warnings(pg, slots, roomy_disk, tmp_path):
    make_slot(pg, slots, "strait_app")
    free, size = disk_room(str(tmp_path))
    # a cap far beyond the disk: the cap would not save it
    s = sample(pg.dsn(), "strait_app", "--spool-dir", str(tmp_path),
               "--spool-bytes", "0", "--spool-max", str(size * 4))
    w = kinds(s)
    assert set(w) == {"spool_cap"}, s["warnings"]
    assert w["spool_cap"]["level"] == "warning"
    assert w["spool_cap"]["text"].startswith(f"the disk of state_dir {tmp_path} has ")
    assert w["spool_cap"]["text"].endswith(": the cap would not save the disk")

    # a small cap fits: nothing to say
    s = sample(pg.dsn(), "strait_app", "--spool-dir", str(tmp_path),
               "--spool-bytes", str(MiB), "--spool-max", str(10 * MiB))
    assert s["warnings"] == []

    res = harness.run([DRIVER, "--spool-dir", "/nonexistent/strait", "--spool-bytes", "0",
                       "--spool-max", "1", pg.dsn(), "strait_app"], check=False, timeout=60)
    assert res.returncode == 1
    line = json.loads(res.stdout.splitlines()[0])
    assert line["spool_error"] == ('could not measure the disk of "/nonexistent/strait": '
                                   'No such file or directory')


def read_lines(proc, want, timeout=30.0):
    """Reads JSON lines from proc until want(lines) is true; returns [(time read, line)]."""
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while not want([l for _, l in lines]):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"driver said only {lines!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"driver exited: {lines!r}")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append((time.monotonic(), json.loads(line)))
    return lines


def test_server_restart_is_retried_and_logged_once_per_change(pg, slots):
    make_slot(pg, slots, "strait_app")
    proc = subprocess.Popen([DRIVER, "--samples", "0", "--interval", "100", pg.dsn(),
                             "strait_app"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = read_lines(proc, lambda ls: len(ls) >= 1)
        assert "sample" in first[0][1]
        pg.stop()
        down = read_lines(proc, lambda ls: sum("error" in l for l in ls) >= 3)
        pg.start()
        up = read_lines(proc, lambda ls: any("sample" in l for l in ls))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    failed_at = [t for t, l in down if "error" in l]
    # polls run every 100 ms, but a lost server is tried at most once a second
    assert failed_at[2] - failed_at[0] >= 1.8, failed_at
    errors = [l["error"] for _, l in down + up if "error" in l]
    changes = [e for i, e in enumerate(errors) if i == 0 or errors[i - 1] != e]
    assert len(changes) < len(errors), errors
    log = err.decode()
    # one warning per change of message, not one per failed poll
    assert log.count("could not read replication slot \"strait_app\"") == len(changes), log
    assert log.count("reading replication slot \"strait_app\" again") == 1, log
    assert "sample" in up[-1][1] and up[-1][1]["slot_found"] is True
