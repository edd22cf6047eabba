"""The lost-transactions file (replicator/lostxacts.c) against real PostgreSQL,
through tests/tools/lostxacts_driver.

Two servers get the same tables and the same "before" transactions; the
source has a publication and a pgoutput slot created before them. The
source's LSN is recorded (what "the new primary applied"), more transactions
follow on the source only, with awkward values, key changes, unchanged TOAST,
a REPLICA IDENTITY FULL table with duplicate rows, a truncate. The driver
peeks the slot after the LSN and writes the SQL file; applied to the second
server, it must reproduce the source's tables exactly, and hold none of the
"before" transactions. The slot must not move.
"""

import os
import random
import re
import signal
import string
import struct
import subprocess

import pytest

import harness

DRIVER = os.path.join(harness.BUILD, "tools", "lostxacts_driver")

SLOT = "strait_lost"
PUB = "Lost Pub"          # needs quoting inside publication_names

SCHEMA = [
    "CREATE TABLE items (id int PRIMARY KEY, name text, qty numeric, tags text[], doc jsonb, "
    "note text, made timestamptz)",
    'CREATE SCHEMA "My Schema"',
    'CREATE TABLE "My Schema"."Odd ""Table""" (k1 text, k2 int, "Value" text, PRIMARY KEY (k1, k2))',
    "CREATE TABLE events (a int, b text, payload json)",
    "ALTER TABLE events REPLICA IDENTITY FULL",
    "CREATE TABLE ids (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)",
    "CREATE TABLE scratch (id int PRIMARY KEY, v text)",
    # uncompressible big values go out of line (TOAST)
    "ALTER TABLE items ALTER COLUMN note SET STORAGE EXTERNAL",
]

TABLES = ["items", '"My Schema"."Odd ""Table"""', "events", "ids", "scratch"]


def big_text(n, seed):
    rnd = random.Random(seed)
    return "".join(rnd.choice(string.ascii_letters + "'\\\n\"é€") for _ in range(n))


BIG = big_text(200_000, 1)

# before the LSN: on both servers
BEFORE = [
    ("INSERT INTO items VALUES (1, 'pre-marker-one', 1, '{a}', '{\"k\": 1}', NULL, '2024-01-01 00:00:00+00'), "
     "(2, 'pre-marker-two', 2, NULL, NULL, 'short', NULL), (3, 'big', 3, NULL, NULL, %s, NULL)", (BIG,)),
    ("INSERT INTO \"My Schema\".\"Odd \"\"Table\"\"\" VALUES ('a''b', 1, 'x'), ('c', 2, 'y')", None),
    ("INSERT INTO events VALUES (1, 'dup', '{\"x\": [1, 2]}'), (1, 'dup', '{\"x\": [1, 2]}'), "
     "(2, NULL, NULL), (3, 'three', '{}')", None),
    ("INSERT INTO ids (v) VALUES ('pre-marker-ids')", None),
    ("INSERT INTO scratch VALUES (1, 'pre-marker-scratch'), (2, 'gone after truncate')", None),
]

AWKWARD = "it's \"quoted\" \\ back\\slash \\n not a newline\nreal newline\ttab héllo € 🎉 ''"

# after the LSN: on the source only; each entry is one transaction
AFTER = [
    [("INSERT INTO items VALUES (10, %s, 1.50, %s, %s, NULL, '2026-12-03 13:51:15.123456+00')",
      (AWKWARD, ["a,b", 'c"d', "e'f", None], '{"s": "it\'s", "n": null}'))],
    [("UPDATE items SET name = 'renamed', tags = NULL WHERE id = 1", None),
     ("DELETE FROM items WHERE id = 2", None)],
    # only qty changes: the big note is sent as unchanged TOAST
    [("UPDATE items SET qty = 33 WHERE id = 3", None)],
    # key change, then delete by key, in a table with awkward names
    [("UPDATE \"My Schema\".\"Odd \"\"Table\"\"\" SET k2 = 10, \"Value\" = NULL "
      "WHERE k1 = 'a''b' AND k2 = 1", None),
     ("DELETE FROM \"My Schema\".\"Odd \"\"Table\"\"\" WHERE k1 = 'c'", None),
     ("INSERT INTO \"My Schema\".\"Odd \"\"Table\"\"\" VALUES (E'new\\nline', 3, '')", None)],
    # REPLICA IDENTITY FULL: one of two identical rows, NULLs, json
    [("DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE a = 1 LIMIT 1)", None),
     ("UPDATE events SET b = 'was null' WHERE a = 2", None),
     ("UPDATE events SET payload = '{\"y\": \"new\"}' WHERE a = 3", None),
     ("INSERT INTO events VALUES (4, NULL, NULL)", None)],
    [("INSERT INTO ids (v) VALUES ('generated'), (NULL)", None)],
    [("TRUNCATE scratch", None),
     ("INSERT INTO scratch VALUES (5, 'after truncate')", None)],
    [("INSERT INTO items VALUES (11, 'big insert', NULL, NULL, NULL, %s, NULL)", (big_text(50_000, 2),))],
]


@pytest.fixture(scope="module", autouse=True)
def driver_built():
    if not os.access(DRIVER, os.X_OK):
        pytest.exit(f"{DRIVER} is missing: run make tools first", returncode=2)


def run_driver(*args):
    res = subprocess.run([DRIVER, *args], capture_output=True, text=True, timeout=120)
    stats = {}
    for line in res.stderr.splitlines():
        if line.startswith("stats "):
            stats = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return res, stats


def run_tx(pg, statements):
    with pg.connect() as conn:
        with conn.transaction():
            for sql, params in statements:
                conn.execute(sql, params)


def psql_file(pg, path):
    return subprocess.run(["psql", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-X",
                           "-q", "-v", "ON_ERROR_STOP=1", "-f", path, "postgres"],
                          capture_output=True, text=True, timeout=120)


def slot_state(pg):
    return pg.sql("SELECT confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots "
                  "WHERE slot_name = %s", (SLOT,))[0]


def without_generated(text):
    return re.sub(r"^-- generated .*$", "", text, flags=re.M)


@pytest.fixture
def servers(pg_factory):
    src = pg_factory("lx-src")
    dst = pg_factory("lx-dst")
    for pg in (src, dst):
        for sql in SCHEMA:
            pg.sql(sql)
    src.sql(f'CREATE PUBLICATION "{PUB}" FOR ALL TABLES')
    src.sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
    for pg in (src, dst):
        for sql, params in BEFORE:
            run_tx(pg, [(sql, params)])
    lsn = src.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    return src, dst, lsn


def test_lost_transactions_reproduce_the_source(servers, tmp_path):
    src, dst, lsn = servers
    for tx in AFTER:
        run_tx(src, tx)
    # a rolled-back transaction never reaches the slot
    with src.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO items VALUES (99, 'rolled back')")
    before_slot = slot_state(src)

    out = str(tmp_path / "lost.sql")
    res, stats = run_driver("--conninfo", src.dsn(), "--slot", SLOT, "--publication", PUB,
                            "--after", lsn, "--stream", "lost", "--out", out)
    assert res.returncode == 0, res.stderr
    text = open(out, encoding="utf-8").read()
    assert stats["kept"] == len(AFTER), (stats, text)
    assert stats["before"] == len(BEFORE), stats
    assert stats["unrendered"] == 0 and stats["incomplete"] == 0, stats
    assert stats["statements"] >= sum(len(tx) for tx in AFTER)

    # header and blocks
    assert f"-- transactions whose commit ends after LSN {lsn} " in text
    assert f'-- read from slot "{SLOT}" with pg_logical_slot_peek_binary_changes' in text
    assert "NOTHING IN THIS FILE HAS BEEN APPLIED" in text
    assert "SET client_encoding = 'UTF8';" in text
    assert text.count("\nBEGIN;\n") == len(AFTER) and text.count("\nCOMMIT;\n") == len(AFTER)
    assert re.search(r"^-- transaction \d+, commit LSN [0-9A-F]+/[0-9A-F]+ \(ends [0-9A-F]+/[0-9A-F]+\), "
                     r"committed \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", text, re.M)
    # nothing from before the LSN, nor the rolled-back one
    assert "pre-marker" not in text and "rolled back" not in text
    # the unchanged big value is not repeated by the UPDATE of qty
    assert re.search(r"^UPDATE \"public\"\.\"items\" SET \"id\" = '3', \"name\" = 'big', \"qty\" = '33', "
                     r"\"tags\" = NULL, \"doc\" = NULL, \"made\" = NULL WHERE \"id\" = '3';$", text, re.M), text[:5000]
    assert "TRUNCATE \"public\".\"scratch\";" in text
    assert "WHERE ctid = (SELECT ctid FROM \"public\".\"events\" WHERE" in text

    # the slot did not move
    assert slot_state(src) == before_slot

    # applied to the server holding the "before" state, it gives the source's tables
    applied = psql_file(dst, out)
    assert applied.returncode == 0, applied.stderr
    for table in TABLES:
        assert harness.table_dump(dst, table) == harness.table_dump(src, table), table


def test_peek_is_repeatable_and_merges_batches(servers, tmp_path):
    src, dst, lsn = servers
    for tx in AFTER[:4]:
        run_tx(src, tx)
    first = str(tmp_path / "first.sql")
    res, stats1 = run_driver("--conninfo", src.dsn(), "--slot", SLOT, "--publication", PUB,
                             "--after", lsn, "--out", first)
    assert res.returncode == 0, res.stderr
    assert stats1["kept"] == 4

    # the spool's records (here: the slot's contents in protocol 2, as batch
    # bodies), overlapping the slot, merge without duplicates
    rows = src.sql("SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
                   "'proto_version', '2', 'publication_names', %s, 'messages', 'true')",
                   (SLOT, f'"{PUB}"'))
    batch = tmp_path / "spool.bin"
    with open(batch, "wb") as f:
        for (data,) in rows:
            data = bytes(data)
            f.write(struct.pack(">I", len(data)) + data)
    for tx in AFTER[4:]:
        run_tx(src, tx)
    second = str(tmp_path / "second.sql")
    res, stats2 = run_driver("--conninfo", src.dsn(), "--slot", SLOT, "--publication", PUB,
                             "--after", lsn, "--batch", str(batch), "--out", second)
    assert res.returncode == 0, res.stderr
    assert stats2["kept"] == len(AFTER)
    assert stats2["duplicates"] == 4, stats2
    text1 = open(first, encoding="utf-8").read()
    text2 = open(second, encoding="utf-8").read()
    # the first file's transactions are a prefix of the second's, once each
    blocks1 = text1.split("\n-- transaction ")[1:]
    blocks2 = text2.split("\n-- transaction ")[1:]
    assert blocks2[:4] == blocks1
    assert len(blocks2) == len(AFTER)

    # the batch file alone renders the same four transactions
    only = str(tmp_path / "only.sql")
    res, stats3 = run_driver("--after", lsn, "--batch", str(batch), "--out", only)
    assert res.returncode == 0, res.stderr
    assert stats3["kept"] == 4
    assert open(only, encoding="utf-8").read().split("\n-- transaction ")[1:] == blocks1

    # the same peek twice gives the same file
    again = str(tmp_path / "again.sql")
    res, _ = run_driver("--conninfo", src.dsn(), "--slot", SLOT, "--publication", PUB,
                        "--after", lsn, "--out", again)
    assert res.returncode == 0
    assert without_generated(open(again, encoding="utf-8").read()) == \
        without_generated(open(second, encoding="utf-8").read()).replace(
            f"-- fed from the batch file {batch}\n", "")


def test_after_lsn_at_the_end_gives_an_empty_file(servers, tmp_path):
    src, _, _ = servers
    run_tx(src, AFTER[0])
    end = src.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    out = str(tmp_path / "none.sql")
    res, stats = run_driver("--conninfo", src.dsn(), "--slot", SLOT, "--publication", PUB,
                            "--after", end, "--out", out)
    assert res.returncode == 0, res.stderr
    assert stats["kept"] == 0 and stats["before"] == len(BEFORE) + 1, stats
    text = open(out, encoding="utf-8").read()
    assert "-- no lost transactions" in text and "BEGIN;" not in text


def test_slot_in_use_and_missing_slot(servers, tmp_path):
    src, _, lsn = servers
    res, _ = run_driver("--conninfo", src.dsn(), "--slot", "no_such_slot", "--publication", PUB,
                        "--after", lsn, "--out", str(tmp_path / "x.sql"))
    assert res.returncode == 1
    assert 'replication slot "no_such_slot" does not exist' in res.stderr

    recv = subprocess.Popen(["pg_recvlogical", "-d", src.dsn(), "--slot", SLOT, "--start",
                             "-o", "proto_version=1", "-o", f"publication_names=\"{PUB}\"",
                             "-f", "/dev/null", "--no-loop"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pid = harness.wait_until(lambda: src.sql(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (SLOT,))[0][0],
            timeout=30, what="pg_recvlogical to hold the slot")
        res, _ = run_driver("--conninfo", src.dsn(), "--slot", SLOT, "--publication", PUB,
                            "--after", lsn, "--out", str(tmp_path / "y.sql"))
        assert res.returncode == 1
        assert f'replication slot "{SLOT}" is in use by process {pid}' in res.stderr, res.stderr
    finally:
        harness.kill_pid(recv.pid, signal.SIGTERM)
        recv.wait(timeout=10)
