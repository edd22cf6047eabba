#!/usr/bin/python3
"""Capture real pgoutput messages from a throwaway PostgreSQL 15 into
tests/unit/data/pgoutput/*.bin, the test data of tests/unit/test_pgoutput.c
and the seed corpus of tests/fuzz/fuzz_pgoutput.c.

Each scenario runs its SQL, then takes the slot's changes with
pg_logical_slot_get_binary_changes() (the same bytes a walsender puts in
XLogData) and writes them as a sequence of records: a 4-byte big-endian
length, then one pgoutput message. Every scenario file is self-contained:
each call decodes in a fresh backend, so Relation messages are sent again.

Run as root (initdb refuses root, so the server runs as the unprivileged
user strait-test, created when missing):

    /usr/bin/python3 tests/unit/data/make_pgoutput_samples.py

LSNs, xids, OIDs and timestamps differ on every run; the tests assert only
what stays the same. Not part of `make test`: the output is committed.
"""

import os
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile

PGBIN = "/usr/lib/postgresql/15/bin"
USER = "strait-test"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pgoutput")
CORPUS = os.path.join(HERE, "..", "..", "fuzz", "corpus", "pgoutput")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def as_user(cmd, **kw):
    return run(["runuser", "-u", USER, "--"] + cmd, **kw)


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", USER])


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="strait-pgoutput-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, USER)
        self.data = os.path.join(self.dir, "data")
        self.started = False

    def start(self):
        as_user([PGBIN + "/initdb", "-D", self.data, "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--locale=C"],
                stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("wal_level = logical\n"
                    "listen_addresses = ''\n"
                    "unix_socket_directories = '%s'\n"
                    "port = 54329\n"
                    "fsync = off\n"
                    "max_replication_slots = 4\n"
                    "logical_decoding_work_mem = 64kB\n" % self.dir)
        as_user([PGBIN + "/pg_ctl", "-D", self.data, "-w", "-l",
                 os.path.join(self.dir, "log"), "start"],
                stdout=subprocess.DEVNULL)
        self.started = True

    def stop(self):
        if self.started:
            as_user([PGBIN + "/pg_ctl", "-D", self.data, "-w", "-m", "fast",
                     "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, text):
        r = as_user([PGBIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                     "-h", self.dir, "-p", "54329", "-U", "postgres",
                     "-d", "postgres", "-f", "-"],
                    input=text.encode(), stdout=subprocess.PIPE)
        return r.stdout.decode()

    def changes(self, slot, opts, peek=False):
        fn = "peek" if peek else "get"
        args = ", ".join("'%s', '%s'" % kv for kv in opts)
        out = self.sql("SELECT encode(data, 'hex') FROM "
                       "pg_logical_slot_%s_binary_changes('%s', NULL, NULL, %s);"
                       % (fn, slot, args))
        return [bytes.fromhex(line) for line in out.split("\n") if line]


def write(name, msgs, where=None):
    path = os.path.join(where or OUT, name)
    with open(path, "wb") as f:
        for m in msgs:
            f.write(struct.pack(">I", len(m)))
            f.write(m)
    print("%-24s %4d messages %7d bytes  %s" % (
        name, len(msgs), os.path.getsize(path),
        "".join(chr(m[0]) for m in msgs)[:60]))


SETUP = r"""
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2),
                    tags text[], created timestamptz, note text);
CREATE TABLE docs (id int PRIMARY KEY, n int, body text);
ALTER TABLE docs ALTER body SET STORAGE EXTERNAL;
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE uidx (a int NOT NULL, b text, c int NOT NULL);
CREATE UNIQUE INDEX uidx_ac ON uidx (a, c);
ALTER TABLE uidx REPLICA IDENTITY USING INDEX uidx_ac;
CREATE TABLE tr_plain (id int);
CREATE TABLE tr_parent (id serial PRIMARY KEY);
CREATE TABLE tr_child (id serial, parent int REFERENCES tr_parent);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (x int, y text);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE SCHEMA "Weird Schema";
CREATE TABLE "Weird Schema"."Mixed Case" ("Col A" mood, p pair, d posint,
                                          j jsonb, b bytea, n numeric);
CREATE TABLE bin (i int4, t text, b bytea, f float8);
CREATE TABLE big (i int, t text);
CREATE TABLE originated (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR ALL TABLES;
SELECT 'slot' FROM pg_create_logical_replication_slot('s', 'pgoutput');
"""

V2 = [("proto_version", "2"), ("publication_names", "pub"), ("messages", "true")]
V1 = [("proto_version", "1"), ("publication_names", "pub"), ("messages", "true")]

SCENARIOS = [
    # name, sql, options
    ("basic", r"""
INSERT INTO items VALUES
  (1, 'apple', 1.50, '{red,green}', '2024-01-02 03:04:05+00', NULL),
  (2, 'pear', 0.99, '{}', '2024-02-03 04:05:06+00', 'it''s "quoted"');
UPDATE items SET price = 2.00 WHERE id = 1;
UPDATE items SET id = 10 WHERE id = 2;
DELETE FROM items WHERE id = 10;
""", V2),
    ("toast", r"""
INSERT INTO docs SELECT 1, 0, string_agg(md5(g::text), '') FROM generate_series(1, 300) g;
UPDATE docs SET n = n + 1 WHERE id = 1;
UPDATE docs SET body = 'short' WHERE id = 1;
""", V2),
    ("identity", r"""
INSERT INTO nokey VALUES (1, 'one'), (2, NULL);
UPDATE nokey SET b = 'uno' WHERE a = 1;
DELETE FROM nokey WHERE a = 2;
INSERT INTO uidx VALUES (1, 'x', 7);
UPDATE uidx SET b = 'y' WHERE a = 1;
UPDATE uidx SET a = 2 WHERE a = 1;
DELETE FROM uidx WHERE a = 2;
""", V2),
    ("truncate", r"""
INSERT INTO tr_plain VALUES (1);
INSERT INTO tr_parent DEFAULT VALUES;
INSERT INTO tr_child (parent) SELECT id FROM tr_parent;
TRUNCATE tr_plain;
TRUNCATE tr_parent RESTART IDENTITY CASCADE;
""", V2),
    ("message", r"""
BEGIN;
SELECT 'm' FROM pg_logical_emit_message(true, 'strait', 'hello');
INSERT INTO tr_plain VALUES (2);
COMMIT;
SELECT 'm' FROM pg_logical_emit_message(false, 'strait.nt', '\x00ff01'::bytea);
-- A non-transactional message is decoded only once its WAL is flushed.
CHECKPOINT;
""", V2),
    ("types", r"""
INSERT INTO "Weird Schema"."Mixed Case" VALUES
  ('happy', ROW(1, 'a b'), 42, '{"k": [1, 2, null]}', '\xdeadbeef', 'NaN');
""", V2),
    ("binary", r"""
INSERT INTO bin VALUES (258, 'text', '\x0001', 1.5), (NULL, NULL, NULL, NULL);
""", V2 + [("binary", "true")]),
    ("origin", r"""
SELECT 'o' FROM pg_replication_origin_create('strait_peer');
SELECT 'o' FROM pg_replication_origin_session_setup('strait_peer');
BEGIN;
SELECT 'o' FROM pg_replication_origin_xact_setup('0/1234ABCD', '2024-05-06 07:08:09+00');
INSERT INTO originated VALUES (1);
COMMIT;
SELECT 'o' FROM pg_replication_origin_session_reset();
""", V2),
    ("stream", r"""
BEGIN;
INSERT INTO big SELECT g, 'r' || g FROM generate_series(1, 100) g;
SAVEPOINT sp;
INSERT INTO big SELECT g, 's' || g FROM generate_series(101, 600) g;
ROLLBACK TO SAVEPOINT sp;
INSERT INTO big VALUES (0, 'last');
COMMIT;
BEGIN;
INSERT INTO big SELECT g, 'a' || g FROM generate_series(1, 500) g;
ROLLBACK;
-- Aborts are not flushed at once; decoding stops at the flushed end.
CHECKPOINT;
""", V2 + [("streaming", "on")]),
]


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (the server runs as %s through runuser)" % USER)
    ensure_user()
    os.makedirs(OUT, exist_ok=True)
    srv = Server()
    try:
        srv.start()
        srv.sql(SETUP)
        for name, sql, opts in SCENARIOS:
            srv.sql(sql)
            if name == "basic":
                # The same changes in protocol 1 (peek keeps them for the get).
                write("v1_basic.bin", srv.changes("s", V1, peek=True))
            msgs = srv.changes("s", opts)
            write(name + ".bin", msgs)
            if name == "stream":
                # The whole stream is large; the fuzzer gets its two ends.
                os.makedirs(CORPUS, exist_ok=True)
                write("sample_stream_head.bin", msgs[:24], CORPUS)
                write("sample_stream_tail.bin", msgs[-24:], CORPUS)
    finally:
        srv.stop()
    # Small files seed the fuzzer as they are.
    os.makedirs(CORPUS, exist_ok=True)
    for f in sorted(os.listdir(OUT)):
        if f.endswith(".bin") and os.path.getsize(os.path.join(OUT, f)) <= 8192:
            shutil.copy(os.path.join(OUT, f), os.path.join(CORPUS, "sample_" + f))


if __name__ == "__main__":
    main()
