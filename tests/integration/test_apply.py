"""The sink's apply engine (replicator/apply.c) against real PostgreSQL servers.

The module starts a source and a target server; each test gets its own
database on both (slots and origins it made are dropped afterwards). The
source has a publication and a pgoutput slot; the test makes changes, reads them with
pg_logical_slot_get_binary_changes() (one row per pgoutput message, protocol
version 2), writes them as batch records (u32 big-endian length + message)
and runs tests/tools/apply_driver against the target. Tables are compared
with sorted COPY output.
"""

import json
import os
import time
import signal
import struct
import subprocess

import psycopg
import pytest

import harness

DRIVER = os.path.join(harness.BUILD, "tools", "apply_driver")


@pytest.fixture(scope="module", autouse=True)
def driver_built():
    if not os.access(DRIVER, os.X_OK):
        pytest.exit(f"{DRIVER} is missing: run make tools first", returncode=2)


# --------------------------------------------------------------------------
# helpers

class Run:
    """One apply_driver run: exit code, stdout lines, the final status."""

    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err
        self.lines = out.splitlines()
        self.status = None
        for line in self.lines:
            if line.startswith("status "):
                self.status = json.loads(line[len("status "):])

    @property
    def committed(self):
        return [l.split()[1] for l in self.lines if l.startswith("committed ")]

    @property
    def ready(self):
        return [l.split()[1] for l in self.lines if l.startswith("ready ")]

    @property
    def stopped(self):
        return [l[len("stopped "):] for l in self.lines if l.startswith("stopped ")]

    def __repr__(self):
        # the errors first: pytest shortens a long message from its middle
        errors = [l for l in self.err.splitlines() if " error: " in l or " warning: " in l]
        return (f"Run(rc={self.rc}, errors={errors[-8:]!r}, stdout={self.out[-3000:]!r}, "
                f"stderr={self.err[-3000:]!r})")


class Db:
    """One database of a shared server: what the tests use as "a server"."""

    def __init__(self, server, dbname):
        self.server = server
        self.dbname = dbname
        self.workers = 1

    def sql(self, query, params=None):
        return self.server.sql(query, params, dbname=self.dbname)

    def connect(self):
        return self.server.connect(self.dbname)

    def dsn(self):
        return self.server.dsn(self.dbname)

    def pgbench(self, *args):
        return self.server.pgbench(*args, dbname=self.dbname)


class Stream:
    """A source publication + slot, the batch file, and the driver against a target."""

    def __init__(self, src, dst, name="s1", tmp_path=None, tables=None):
        self.src = src
        self.dst = dst
        self.name = f"{name}_{src.dbname}"            # origins and slots are cluster-wide
        self.path = os.path.join(str(tmp_path), f"{name}.bin")
        open(self.path, "wb").close()
        pub = "FOR ALL TABLES" if tables is None else "FOR TABLE " + ", ".join(tables)
        src.sql(f"CREATE PUBLICATION pub_{self.name} {pub}")
        src.sql(f"SELECT pg_create_logical_replication_slot('slot_{self.name}', 'pgoutput')")

    def messages(self):
        """Consumes the slot's pending changes: a list of pgoutput messages."""
        rows = self.src.sql(
            "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, "
            "'proto_version', '2', 'publication_names', %s, 'messages', 'true')",
            (f"slot_{self.name}", f"pub_{self.name}"))
        return [bytes(r[0]) for r in rows]

    def fetch(self, transform=None):
        """Appends the slot's pending changes to the batch file; returns them."""
        msgs = self.messages()
        if transform:
            msgs = transform(msgs)
        write_records(self.path, msgs, append=True)
        return msgs

    def workers(self):
        return ["--workers", str(self.dst.workers)] if self.dst.workers > 1 else []

    def run(self, *args, policy="error", timeout=300, input_path=None):
        cmd = [DRIVER, "--target", self.dst.dsn(), "--stream", self.name,
               "--on-conflict", policy, "--input", input_path or self.path] + \
            self.workers() + list(args)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return Run(res.returncode, res.stdout, res.stderr)

    def popen(self, *args, policy="error"):
        cmd = [DRIVER, "--target", self.dst.dsn(), "--stream", self.name,
               "--on-conflict", policy, "--input", self.path] + self.workers() + list(args)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1)

    def wait_detached(self):
        """Waits until no target session holds the origin (a killed driver's backend exits)."""
        harness.wait_until(lambda: self.dst.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'strait-apply' "
            "AND datname = current_database()")[0][0] == 0, timeout=30,
            what="the killed driver's target session to end")

    def origin_lsn(self):
        """Where the stream resumes: the highest of its origin and its parallel workers'."""
        rows = self.dst.sql("SELECT max(pg_replication_origin_progress(roname, true))::text "
                            "FROM pg_replication_origin WHERE roname = %s OR "
                            "starts_with(roname, %s)",
                            (f"strait_{self.name}", f"strait_{self.name}:apply:"))
        return rows[0][0] if rows else None


def write_records(path, msgs, append=False):
    with open(path, "ab" if append else "wb") as f:
        for m in msgs:
            f.write(struct.pack(">I", len(m)) + m)


def copy_out(pg, query):
    """Sorted lines of COPY (query) TO STDOUT."""
    with pg.connect() as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY ({query}) TO STDOUT") as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
    return sorted(data.decode().splitlines())


def assert_same(src, dst, table, columns="*"):
    a = copy_out(src, f"SELECT {columns} FROM {table}")
    b = copy_out(dst, f"SELECT {columns} FROM {table}")
    assert a == b, f"{table} differs:\nsource {a[:20]}\ntarget {b[:20]}"
    return a


def both(src, dst, sql):
    src.sql(sql)
    dst.sql(sql)


def lsn_int(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


@pytest.fixture(scope="module")
def servers():
    """One source and one target server for the module; each test gets its own databases."""
    started = []
    try:
        for name in ("apply-src", "apply-dst"):
            started.append(harness.PgServer(name).start())
        yield started
    finally:
        for server in started:
            server.cleanup()


_db_seq = iter(range(1, 1000000))


@pytest.fixture(params=[1, 3], ids=["one-session", "parallel"])
def pair(servers, request):
    """Every test runs with one target session and with three side by side."""
    src_server, dst_server = servers
    dbname = f"t{next(_db_seq)}"
    for server in servers:
        server.createdb(dbname)
    dst = Db(dst_server, dbname)
    dst.workers = request.param
    yield Db(src_server, dbname), dst
    # Slots and origins are cluster-wide and limited by max_replication_slots.
    src_server.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                   "WHERE database = %s", (dbname,))
    dst_server.sql("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                   "WHERE roname LIKE %s OR roname LIKE %s",
                   (f"strait\\_%\\_{dbname}", f"strait\\_%\\_{dbname}:apply:%"))
    for server in servers:
        server.sql(f'DROP DATABASE "{dbname}" WITH (FORCE)')


def message_types(msgs):
    return [chr(m[0]) for m in msgs]


def commit_end_lsns(msgs):
    """End LSNs of the Commit messages, as 'X/Y' text."""
    out = []
    for m in msgs:
        if m[:1] == b"C":
            end = struct.unpack(">Q", m[10:18])[0]
            out.append(f"{end >> 32:X}/{end & 0xFFFFFFFF:X}")
    return out


# --------------------------------------------------------------------------
# pgbench

def test_pgbench(pair, tmp_path):
    src, dst = pair
    st = Stream(src, dst, "bench", tmp_path)
    src.pgbench("-i", "-s", "1", "-q")
    dst.pgbench("-i", "-s", "1", "-q", "-I", "dtp")        # empty tables with keys
    src.pgbench("-c", "4", "-j", "2", "-t", "1500", "-n")
    msgs = st.fetch()
    changes = sum(1 for m in msgs if m[:1] in (b"I", b"U", b"D"))
    txns = sum(1 for m in msgs if m[:1] == b"C")

    run = st.run("--txns-per-batch", "200")
    assert run.rc == 0, run
    done = [l for l in run.lines if l.startswith("done ")][0].split()
    seconds = float(done[2])
    print(f"\napply rate: {txns} transactions, {changes} changes in {seconds:.2f} s = "
          f"{txns / seconds:.0f} transactions/s, {changes / seconds:.0f} rows/s; "
          f"{run.status['target_transactions']} target transactions")

    for table in ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"):
        assert_same(src, dst, table)
    # TPC-B: every balance moved by the same deltas the history records.
    sums = dst.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                   "(SELECT sum(bbalance) FROM pgbench_branches), "
                   "(SELECT sum(tbalance) FROM pgbench_tellers), "
                   "(SELECT sum(delta) FROM pgbench_history), "
                   "(SELECT count(*) FROM pgbench_history)")[0]
    assert sums[0] == sums[1] == sums[2] == sums[3]
    assert sums[4] == 6000
    assert run.status["rows"]["inserted"] >= 100000 + 6000
    assert run.status["rows"]["updated"] == 18000
    assert st.origin_lsn() == run.committed[-1]


# --------------------------------------------------------------------------
# every built-in type

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
"""

TYPES_COLUMNS = """
  c_int2 int2, c_int4 int4, c_int8 int8, c_num numeric, c_numbig numeric(50, 25),
  c_float4 float4, c_float8 float8, c_text text, c_varchar varchar(20), c_char char(5),
  c_qchar "char", c_name name, c_bytea bytea, c_bool bool, c_date date, c_time time,
  c_timetz timetz, c_ts timestamp, c_tstz timestamptz, c_interval interval, c_uuid uuid,
  c_json json, c_jsonb jsonb, c_xml xml, c_inet inet, c_cidr cidr, c_macaddr macaddr,
  c_macaddr8 macaddr8, c_money money, c_bit bit(8), c_varbit varbit(16), c_point point,
  c_line line, c_lseg lseg, c_box box, c_path path, c_polygon polygon, c_circle circle,
  c_tsvector tsvector, c_tsquery tsquery, c_int4range int4range, c_int8range int8range,
  c_numrange numrange, c_daterange daterange, c_tstzrange tstzrange,
  c_multirange int4multirange, c_oid oid, c_lsn pg_lsn, c_int_arr int[], c_text_2d text[],
  c_bool_arr bool[], c_jsonb_arr jsonb[], c_enum mood, c_enum_arr mood[], c_comp pair,
  c_domain posint
"""

TYPES_ROW = """(
  {id}, -32768, 2147483647, -9223372036854775808, 'NaN',
  '1234567890123456789012345.1234567890123456789012345',
  'Infinity', '-0', E'quote '' backslash \\\\ tab \\t newline \\n unicode \u00e9\u4e2d\U0001f600',
  'varchar', 'ab', 'x', 'a name', '\\x00ff10feedbeef', true, '0001-01-01', '24:00:00',
  '12:34:56.789+05:30', '294276-12-31 23:59:59.999999', 'infinity',
  '-178000000 years -1 mon 3 days -04:05:06.000001', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{{"b": [1, 2.50, "x"], "a": null}}', '{{"b": [1, 2.50, "x"], "a": {{"n": true}}}}',
  '<doc a="1"><x>text &amp; more</x></doc>', '2001:db8::1/64', '10.0.0.0/8',
  '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', '-92233720368547758.08', B'10101010',
  B'1101', '(1.5,-2.25)', '{{1,-1,0}}', '[(0,0),(1,1)]', '(3,4),(1,2)',
  '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(2,0))', '<(1,1),5>',
  'a fat:2A cat:1 sat on the mat', 'fat & (rat | cat)', '[1,10)', '(,5]', '[1.5,2.5]',
  'empty', '["2020-01-01 00:00:00+00","2021-01-01 00:00:00+00")', '{{[1,3), [7,9)}}',
  4294967295, 'FFFFFFFF/FFFFFFFF', '{{1,NULL,-3}}', '{{{{"a\\"b",NULL}},{{"c,d",""}}}}',
  '{{t,f,NULL}}', ARRAY['{{"k": 1}}'::jsonb, NULL], 'happy', '{{sad,ok}}',
  '(7,"x, \\"y\\"")', 42
)"""


# The columns of a type some supported version lacks: {column: (the first
# major that has it, its text in TYPES_COLUMNS, its value's text in TYPES_ROW)}.
NEWER_TYPES = {
    "c_multirange": (14, "c_multirange int4multirange, ", "'{{[1,3), [7,9)}}',\n  "),
}


def types_for(*versions):
    """(TYPES_COLUMNS, TYPES_ROW) without the columns whose type one of the
    servers lacks, and the names of the columns left out."""
    columns, row, left_out = TYPES_COLUMNS, TYPES_ROW, []
    for name, (since, column, value) in NEWER_TYPES.items():
        if min(versions) < since:
            assert column in columns and value in row, name
            columns, row = columns.replace(column, ""), row.replace(value, "")
            left_out.append(name)
    return columns, row, left_out


@pytest.mark.parametrize("identity", ["key", "full"])
def test_all_types_round_trip(pair, tmp_path, identity):
    src, dst = pair
    both(src, dst, TYPES_DDL)
    if identity == "key":
        both(src, dst, f"CREATE TABLE alltypes (id int PRIMARY KEY, {TYPES_COLUMNS})")
    else:
        both(src, dst, f"CREATE TABLE alltypes (id int, {TYPES_COLUMNS})")
        src.sql("ALTER TABLE alltypes REPLICA IDENTITY FULL")
    st = Stream(src, dst, "types", tmp_path)
    for i in (1, 2, 3):
        src.sql("INSERT INTO alltypes VALUES " + TYPES_ROW.format(id=i))
    src.sql("INSERT INTO alltypes (id) VALUES (4), (5)")          # all NULL
    src.sql("""INSERT INTO alltypes (id, c_float4, c_float8, c_num, c_date, c_tstz)
               VALUES (6, 'NaN', '-Infinity', '-Infinity', '-infinity', '-infinity'),
                      (7, 1.17549435e-38, 2.2250738585072014e-308, '0.000000000000000000001',
                       '5874897-12-31', '2000-01-01 00:00:00.000001+00')""")
    src.sql("""UPDATE alltypes SET c_text = 'changed', c_jsonb = '[]', c_int_arr = '{{1,2},{3,4}}',
               c_float8 = 'NaN', c_point = '(9,9)', c_xml = '<changed/>' WHERE id = 2""")
    src.sql("UPDATE alltypes SET c_int4 = 7, c_json = '{}' WHERE id IN (4, 6)")
    src.sql("DELETE FROM alltypes WHERE id IN (3, 5)")
    src.sql("UPDATE alltypes SET c_domain = 1 WHERE id = 1")
    st.fetch()

    run = st.run()
    assert run.rc == 0, run
    rows = assert_same(src, dst, "alltypes")
    assert len(rows) == 5
    assert run.status["rows"] == {"inserted": 7, "updated": 4, "deleted": 2}


# --------------------------------------------------------------------------
# TOAST

def test_unchanged_toast_survives_update(pair, tmp_path):
    src, dst = pair
    both(src, dst, "CREATE TABLE docs (id int PRIMARY KEY, body text, n int)")
    both(src, dst, "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL")
    st = Stream(src, dst, "toast", tmp_path)
    # ~64 kB of random hex: far above the TOAST threshold, stored out of line.
    src.sql("INSERT INTO docs SELECT 1, string_agg(md5(random()::text), ''), 0 "
            "FROM generate_series(1, 2000)")
    src.sql("INSERT INTO docs VALUES (2, 'small', 0)")
    src.sql("UPDATE docs SET n = n + 1")
    src.sql("UPDATE docs SET n = n + 1 WHERE id = 1")
    msgs = st.fetch()
    updates = [m for m in msgs if m[:1] == b"U"]
    assert len(updates) == 3
    # The big value was not resent: pgoutput marked it unchanged ('u').
    assert all(len(m) < 1000 for m in updates)

    run = st.run()
    assert run.rc == 0, run
    assert_same(src, dst, "docs")
    assert dst.sql("SELECT length(body), n FROM docs WHERE id = 1")[0] == (64000, 2)


def test_update_of_a_generated_always_identity_key(pair, tmp_path):
    """A key that is GENERATED ALWAYS AS IDENTITY may not be SET, even to its
    own value: updates of other columns apply, by the key, without it."""
    src, dst = pair
    both(src, dst, "CREATE TABLE gen (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, "
                   "n int)")
    st = Stream(src, dst, "genkey", tmp_path)
    src.sql("INSERT INTO gen (v, n) SELECT 'row ' || g, g FROM generate_series(1, 5) g")
    src.sql("UPDATE gen SET v = 'changed', n = n * 10 WHERE id <= 3")
    src.sql("UPDATE gen SET n = 0")
    src.sql("DELETE FROM gen WHERE id = 5")
    st.fetch()
    run = st.run()
    assert run.rc == 0, run
    assert_same(src, dst, "gen")


# --------------------------------------------------------------------------
# replica identities

def test_replica_identity_full_with_duplicates(pair, tmp_path):
    src, dst = pair
    both(src, dst, "CREATE TABLE nokey (a int, b text, c jsonb, d point)")
    src.sql("ALTER TABLE nokey REPLICA IDENTITY FULL")
    st = Stream(src, dst, "full", tmp_path)
    src.sql("""INSERT INTO nokey VALUES (1, 'a', '{"x": 1}', '(1,1)'), (1, 'a', '{"x": 1}', '(1,1)'),
               (1, 'a', '{"x": 1}', '(1,1)'), (2, NULL, NULL, NULL), (2, NULL, NULL, NULL),
               (3, 'c', '[]', '(0,0)')""")
    # ctid picks one of the equal rows, as on the target
    src.sql("UPDATE nokey SET b = 'b' WHERE ctid = (SELECT ctid FROM nokey WHERE a = 1 LIMIT 1)")
    src.sql("DELETE FROM nokey WHERE ctid = (SELECT ctid FROM nokey WHERE a = 2 LIMIT 1)")
    src.sql("UPDATE nokey SET d = '(5,5)' WHERE a = 3")
    st.fetch()

    run = st.run()
    assert run.rc == 0, run
    rows = assert_same(src, dst, "nokey")
    assert len(rows) == 5
    assert dst.sql("SELECT count(*) FILTER (WHERE b = 'a'), count(*) FILTER (WHERE b = 'b'), "
                   "count(*) FILTER (WHERE a = 2) FROM nokey")[0] == (2, 1, 1)


def test_replica_identity_using_index_and_key_updates(pair, tmp_path):
    src, dst = pair
    both(src, dst, "CREATE TABLE ri (a int NOT NULL, b text NOT NULL, v text, "
                   "CONSTRAINT ri_ab UNIQUE (a, b))")
    src.sql("ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_ab")
    both(src, dst, "CREATE TABLE pk (id int PRIMARY KEY, v text)")
    st = Stream(src, dst, "ri", tmp_path)
    src.sql("INSERT INTO ri SELECT g, 'k' || g, 'v' FROM generate_series(1, 10) g")
    src.sql("INSERT INTO pk SELECT g, 'v' FROM generate_series(1, 10) g")
    src.sql("UPDATE ri SET v = 'changed' WHERE a <= 3")             # identity unchanged
    src.sql("UPDATE ri SET b = 'moved' WHERE a = 4")                # identity changes: old key
    src.sql("DELETE FROM ri WHERE a = 5")
    src.sql("UPDATE pk SET id = id + 100 WHERE id <= 5")            # primary key changes
    src.sql("UPDATE pk SET v = 'x' WHERE id = 101")
    src.sql("DELETE FROM pk WHERE id = 102")
    msgs = st.fetch()
    assert any(m[:1] == b"U" and m[5:6] == b"K" for m in msgs)      # old key tuples sent

    run = st.run()
    assert run.rc == 0, run
    assert_same(src, dst, "ri")
    assert_same(src, dst, "pk")


# --------------------------------------------------------------------------
# TRUNCATE

def test_truncate_cascade_restart_identity(pair, tmp_path):
    src, dst = pair
    both(src, dst, """
        CREATE TABLE parent (id int PRIMARY KEY);
        CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent);
        CREATE TABLE counter (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);
        CREATE TABLE other (id int PRIMARY KEY);
    """)
    st = Stream(src, dst, "trunc", tmp_path)
    src.sql("INSERT INTO parent SELECT generate_series(1, 5)")
    src.sql("INSERT INTO child SELECT g, g FROM generate_series(1, 5) g")
    src.sql("INSERT INTO counter (v) SELECT 'x' FROM generate_series(1, 5)")
    src.sql("INSERT INTO other SELECT generate_series(1, 3)")
    src.sql("TRUNCATE parent CASCADE")
    src.sql("TRUNCATE counter, other RESTART IDENTITY")
    src.sql("INSERT INTO parent VALUES (42)")
    src.sql("INSERT INTO counter (v) VALUES ('after')")
    msgs = st.fetch()
    assert message_types(msgs).count("T") == 2
    dst.sql("SELECT setval('counter_id_seq', 500)")

    run = st.run()
    assert run.rc == 0, run
    for t in ("parent", "child", "counter", "other"):
        assert_same(src, dst, t)
    assert dst.sql("SELECT id FROM counter") == [(1,)]
    # RESTART IDENTITY reset the target's sequence too
    assert dst.sql("SELECT last_value, is_called FROM counter_id_seq") == [(1, False)]
    assert run.status["truncates"] == 2


# --------------------------------------------------------------------------
# column mapping

def test_column_order_and_extra_target_columns(pair, tmp_path):
    src, dst = pair
    src.sql("CREATE TABLE items (id int PRIMARY KEY, name text, qty int, price numeric)")
    dst.sql("""CREATE TABLE items (price numeric, note text DEFAULT 'from source',
               qty int, added timestamptz NOT NULL DEFAULT now(), name text, id int PRIMARY KEY)""")
    st = Stream(src, dst, "cols", tmp_path)
    src.sql("INSERT INTO items SELECT g, 'n' || g, g, g * 0.5 FROM generate_series(1, 50) g")
    src.sql("UPDATE items SET qty = qty * 2, name = upper(name) WHERE id % 3 = 0")
    src.sql("DELETE FROM items WHERE id % 5 = 0")
    st.fetch()

    run = st.run()
    assert run.rc == 0, run
    assert_same(src, dst, "items", "id, name, qty, price")
    assert dst.sql("SELECT count(*) FROM items WHERE note = 'from source' AND added IS NOT NULL") \
        == [(40,)]


def test_missing_columns_stop_then_resume(pair, tmp_path):
    src, dst = pair
    both(src, dst, "CREATE TABLE first (id int PRIMARY KEY)")
    src.sql("CREATE TABLE orders (id int PRIMARY KEY, amount int, note text, created_at timestamptz)")
    dst.sql("CREATE TABLE orders (id int PRIMARY KEY, amount int)")
    st = Stream(src, dst, "missing", tmp_path)
    src.sql("INSERT INTO first VALUES (1)")
    src.sql("INSERT INTO orders VALUES (1, 10, 'a', '2024-01-01 00:00+00'), (2, 20, NULL, NULL)")
    src.sql("INSERT INTO first VALUES (2)")
    src.sql("UPDATE orders SET amount = 11 WHERE id = 1")
    msgs = st.fetch()

    run = st.run("--group-txns", "1")
    assert run.rc == 1, run
    assert run.stopped == ['target table "public.orders" lacks columns "note", "created_at" '
                           'that the source publishes']
    assert 'lacks columns "note", "created_at"' in run.err           # logged once
    assert run.err.count("lacks columns") == 1
    assert run.status["state"] == "stopped"
    # The transaction before it is applied and recorded; nothing of orders is.
    assert dst.sql("SELECT id FROM first") == [(1,)]
    assert dst.sql("SELECT count(*) FROM orders") == [(0,)]
    assert st.origin_lsn() == commit_end_lsns(msgs)[0]

    # The operator fixes one column; an in-process resume names the other one.
    dst.sql("ALTER TABLE orders ADD COLUMN note text")
    flag = os.path.join(str(tmp_path), "resume")
    proc = st.popen("--group-txns", "1", "--resume-file", flag)
    try:
        lines = []

        def stopped():
            line = proc.stdout.readline()
            lines.append(line)
            return line.startswith("stopped ")
        harness.wait_until(stopped, timeout=30, what="the stream to stop")
        assert lines[-1].strip() == ('stopped target table "public.orders" lacks column '
                                     '"created_at" that the source publishes')
        dst.sql("ALTER TABLE orders ADD COLUMN created_at timestamptz")
        open(flag, "w").close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err)
    assert "resuming" in out
    assert_same(src, dst, "orders")
    assert_same(src, dst, "first")
    assert st.origin_lsn() == commit_end_lsns(msgs)[-1]


def test_missing_table_stops(pair, tmp_path):
    src, dst = pair
    src.sql("CREATE TABLE nothere (id int PRIMARY KEY)")
    st = Stream(src, dst, "notable", tmp_path)
    src.sql("INSERT INTO nothere VALUES (1)")
    st.fetch()
    run = st.run()
    assert run.rc == 1, run
    assert run.stopped == ['target table "public.nothere" does not exist']
    dst.sql("CREATE TABLE nothere (id int PRIMARY KEY)")
    run = st.run()
    assert run.rc == 0, run
    assert_same(src, dst, "nothere")


# --------------------------------------------------------------------------
# conflicts

def conflict_setup(src, dst, tmp_path, name):
    both(src, dst, "CREATE TABLE c (id int PRIMARY KEY, v text)")
    src.sql("INSERT INTO c VALUES (2, 'two'), (3, 'three')")       # before the slot: not streamed
    dst.sql("INSERT INTO c VALUES (1, 'target one')")
    st = Stream(src, dst, name, tmp_path)
    src.sql("INSERT INTO c VALUES (4, 'four')")
    src.sql("INSERT INTO c VALUES (1, 'source one')")               # duplicate key
    src.sql("UPDATE c SET v = 'two updated' WHERE id = 2")          # missing on the target
    src.sql("DELETE FROM c WHERE id = 3")                           # missing on the target
    src.sql("INSERT INTO c VALUES (5, 'five')")
    st.fetch()
    return st


def test_conflict_source_wins(pair, tmp_path):
    src, dst = pair
    st = conflict_setup(src, dst, tmp_path, "sw")
    run = st.run(policy="source_wins")
    assert run.rc == 0, run
    assert dst.sql("SELECT id, v FROM c ORDER BY id") == [
        (1, "source one"), (2, "two updated"), (4, "four"), (5, "five")]
    assert run.status["conflicts"] == {"total": 3, "insert_exists": 1, "update_missing": 1,
                                       "delete_missing": 1}
    assert "conflict in target table \"public.c\"" in run.err


def test_conflict_target_wins(pair, tmp_path):
    src, dst = pair
    st = conflict_setup(src, dst, tmp_path, "tw")
    run = st.run(policy="target_wins")
    assert run.rc == 0, run
    assert dst.sql("SELECT id, v FROM c ORDER BY id") == [
        (1, "target one"), (4, "four"), (5, "five")]
    assert run.status["conflicts"]["total"] == 3


def test_conflict_error_stops_naming_the_key(pair, tmp_path):
    src, dst = pair
    st = conflict_setup(src, dst, tmp_path, "err")

    # Grouped: the insert of 4 shares the target transaction that fails: rolled back.
    run = st.run()
    assert run.rc == 1, run
    assert "Key (id)=(1) already exists" in run.stopped[0], run
    assert 'target table "public.c"' in run.stopped[0]
    assert dst.sql("SELECT id FROM c ORDER BY id") == [(1,)]
    assert run.committed == []

    # One source transaction per target transaction: 4 is committed, then the stop.
    run = st.run("--group-txns", "1")
    assert run.rc == 1, run
    assert dst.sql("SELECT id FROM c ORDER BY id") == [(1,), (4,)]
    if dst.workers == 1:
        assert len(run.committed) == 1
    else:
        # committed without a WAL flush: reported once durable, at the next start
        assert lsn_int(st.origin_lsn()) > lsn_int(run.ready[0])

    dst.sql("DELETE FROM c WHERE id = 1")                           # the operator decides
    run = st.run("--group-txns", "1")
    assert run.rc == 1, run
    assert run.stopped[0].startswith('conflict: UPDATE found no row in target table "public.c" '
                                     'with key (id)=(2) (source transaction '), run
    assert run.stopped[0].endswith("; on_conflict is error)")
    assert dst.sql("SELECT id, v FROM c ORDER BY id") == [(1, "source one"), (4, "four")]

    dst.sql("INSERT INTO c VALUES (2, 'two'), (3, 'three')")
    run = st.run("--group-txns", "1")
    assert run.rc == 0, run
    assert_same(src, dst, "c")
    assert run.status["conflicts"]["total"] == 0


def test_conflict_error_resume_in_process(pair, tmp_path):
    """A stop rolls back a group whose commits were already decoded; a resume
    in the same process must apply them again, not skip them."""
    src, dst = pair
    both(src, dst, "CREATE TABLE r (id int PRIMARY KEY, v text)")
    src.sql("INSERT INTO r VALUES (1, 'one')")                     # not streamed
    st = Stream(src, dst, "inproc", tmp_path)
    for i in range(10, 20):
        src.sql(f"INSERT INTO r VALUES ({i}, 'x')")
    src.sql("UPDATE r SET v = 'updated' WHERE id = 1")              # missing on the target
    for i in range(20, 30):
        src.sql(f"INSERT INTO r VALUES ({i}, 'y')")
    msgs = st.fetch()

    flag = os.path.join(str(tmp_path), "resume")
    proc = st.popen("--resume-file", flag, "--txns-per-batch", "100")
    try:
        lines = []

        def stopped():
            lines.append(proc.stdout.readline())
            return lines[-1].startswith("stopped ")
        harness.wait_until(stopped, timeout=30, what="the stream to stop")
        assert "UPDATE found no row" in lines[-1] and "(id)=(1)" in lines[-1]
        # One group held all of it: nothing is committed.
        assert dst.sql("SELECT count(*) FROM r") == [(0,)]
        dst.sql("INSERT INTO r VALUES (1, 'one')")
        open(flag, "w").close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err)
    assert_same(src, dst, "r")
    assert dst.sql("SELECT count(*) FROM r") == [(21,)]
    assert [l.split()[1] for l in out.splitlines() if l.startswith("committed")] == \
        commit_end_lsns(msgs)


def test_conflict_error_on_missing_delete(pair, tmp_path):
    src, dst = pair
    both(src, dst, "CREATE TABLE d (id int PRIMARY KEY)")
    src.sql("INSERT INTO d VALUES (7)")
    st = Stream(src, dst, "derr", tmp_path)
    src.sql("DELETE FROM d WHERE id = 7")
    st.fetch()
    run = st.run()
    assert run.rc == 1, run
    assert run.stopped[0].startswith('conflict: DELETE found no row in target table "public.d" '
                                     'with key (id)=(7)')
    assert run.status["conflicts"]["delete_missing"] == 1


# --------------------------------------------------------------------------
# identifiers

def test_quoted_identifiers_and_other_schema(pair, tmp_path):
    src, dst = pair
    both(src, dst, """
        CREATE SCHEMA "Sales Data";
        CREATE TABLE "Sales Data"."Mixed Case" ("Id" int PRIMARY KEY, "Col A" text,
            "we""ird" int, "select" text, "Ünïcode" text);
        CREATE TABLE "Sales Data".plain (id int PRIMARY KEY, v text);
    """)
    st = Stream(src, dst, "quote", tmp_path)
    src.sql("""INSERT INTO "Sales Data"."Mixed Case" SELECT g, 'a' || g, g, 'sel', 'ü'
               FROM generate_series(1, 10) g""")
    src.sql("""UPDATE "Sales Data"."Mixed Case" SET "we""ird" = -1, "select" = NULL WHERE "Id" < 4""")
    src.sql("""DELETE FROM "Sales Data"."Mixed Case" WHERE "Id" = 9""")
    src.sql("""INSERT INTO "Sales Data".plain VALUES (1, 'x')""")
    src.sql("""TRUNCATE "Sales Data".plain""")
    st.fetch()
    run = st.run()
    assert run.rc == 0, run
    assert_same(src, dst, '"Sales Data"."Mixed Case"')
    assert_same(src, dst, '"Sales Data".plain')


# --------------------------------------------------------------------------
# exactly once

def small_transactions(src, n):
    src.sql("INSERT INTO tally VALUES (1, 0)")
    with src.connect() as conn:
        for i in range(n):
            with conn.transaction():
                conn.execute("INSERT INTO log VALUES (%s, %s)", (i, "row"))
                conn.execute("UPDATE tally SET n = n + 1 WHERE id = 1")


def exactly_once_tables(src, dst):
    # log has no key: a transaction applied twice would leave duplicate rows.
    both(src, dst, "CREATE TABLE log (i int, v text); "
                   "CREATE TABLE tally (id int PRIMARY KEY, n int)")


def assert_exactly_once(src, dst, n):
    assert_same(src, dst, "log")
    assert_same(src, dst, "tally")
    assert dst.sql("SELECT count(*), count(DISTINCT i) FROM log") == [(n, n)]
    assert dst.sql("SELECT n FROM tally") == [(n,)]


def test_exactly_once_after_exit_mid_stream(pair, tmp_path):
    src, dst = pair
    exactly_once_tables(src, dst)
    st = Stream(src, dst, "once", tmp_path)
    small_transactions(src, 300)
    msgs = st.fetch()
    ends = commit_end_lsns(msgs)

    run = st.run("--exit-after", "40", "--group-txns", "7", "--txns-per-batch", "13")
    assert run.rc == 3, run
    assert len(run.committed) == 40
    # The origin covers the whole group holding the 40th commit.
    applied = st.origin_lsn()
    assert lsn_int(applied) >= lsn_int(run.committed[-1])
    assert applied in ends
    applied_n = ends.index(applied)              # the tally insert is transaction 0
    assert dst.sql("SELECT count(*) FROM log") == [(applied_n,)]

    st.wait_detached()
    run = st.run("--group-txns", "7")
    assert run.rc == 0, run
    assert run.ready == [applied]
    assert run.committed == ends[applied_n + 1:]
    assert run.status["transactions_skipped"] == applied_n + 1
    assert_exactly_once(src, dst, 300)

    # A third run finds everything applied and does nothing.
    run = st.run()
    assert run.rc == 0, run
    assert run.committed == []
    assert_exactly_once(src, dst, 300)


def test_a_row_created_then_changed_in_one_segment_is_there_for_the_next(pair, tmp_path):
    """Transaction 0 inserts the tally row, 1-6 update it: one segment on one
    session. Transaction 7 updates it on another session once 6 executed;
    the row is still invisible there until that segment commits, which a
    deferred trigger on the target holds for 2 s (at its COMMIT, after every
    change executed). Transaction 7 must wait for the commit, though its
    last writer (6) only updated the row: it finds it, and the run ends
    equal with no conflict."""
    src, dst = pair
    exactly_once_tables(src, dst)
    dst.sql("CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$; "
            "CREATE CONSTRAINT TRIGGER tally_slow_commit AFTER UPDATE ON tally "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.n = 6) "
            "EXECUTE FUNCTION slow_commit(); "
            "ALTER TABLE tally ENABLE ALWAYS TRIGGER tally_slow_commit")
    st = Stream(src, dst, "created", tmp_path)
    small_transactions(src, 40)
    ends = commit_end_lsns(st.fetch())
    run = st.run("--group-txns", "7", "--txns-per-batch", "41")
    assert run.rc == 0, run
    assert run.committed[-1] == ends[-1]
    assert_exactly_once(src, dst, 40)
    if dst.workers > 1:
        # the segments did go to sessions side by side, and one waited for another
        assert run.status["parallel"]["waits"] >= 1, run.status


def test_exactly_once_after_kill_9(pair, tmp_path):
    src, dst = pair
    exactly_once_tables(src, dst)
    st = Stream(src, dst, "kill", tmp_path)
    small_transactions(src, 3000)
    st.fetch()

    proc = st.popen("--group-txns", "3", "--txns-per-batch", "5")
    try:
        seen = []

        def committed_some():
            while len(seen) < 20:
                line = proc.stdout.readline()
                if not line:
                    break
                if line.startswith("committed "):
                    seen.append(line)
            return True
        harness.wait_until(committed_some, timeout=60, what="some commits")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the driver finished before it was killed"
    partial = dst.sql("SELECT count(*) FROM log")[0][0]
    assert 0 < partial < 3000

    st.wait_detached()
    run = st.run()
    assert run.rc == 0, run
    assert lsn_int(run.ready[0]) > 0
    assert_exactly_once(src, dst, 3000)


def split_transactions(msgs):
    """[[Begin, ..., Commit], ...]; anything between transactions is dropped."""
    txns, cur = [], None
    for m in msgs:
        if m[:1] == b"B":
            cur = [m]
        elif cur is not None:
            cur.append(m)
            if m[:1] == b"C":
                txns.append(cur)
                cur = None
    return txns


@pytest.mark.parametrize("case", ["applied_part_grouped", "applied_part_alone", "begin_only"])
def test_interrupted_transaction_is_sent_again(pair, tmp_path, case):
    """A transaction spanning batches is cut off and sent again from its Begin."""
    src, dst = pair
    exactly_once_tables(src, dst)
    st = Stream(src, dst, "intr", tmp_path)
    src.sql("INSERT INTO tally VALUES (1, 0)")
    for i in range(6):
        with src.connect() as conn:
            with conn.transaction():
                for j in range(20 if i == 3 else 1):
                    conn.execute("INSERT INTO log VALUES (%s, 'row')", (i * 100 + j,))
                conn.execute("UPDATE tally SET n = n + 1 WHERE id = 1")
    txns = split_transactions(st.messages())
    assert len(txns) == 7
    big = txns[4]                                     # Begin, Relation?, 20 inserts, ...
    partial = big[:1] if case == "begin_only" else big[:12]
    write_records(st.path, [m for t in txns[:4] for m in t] + partial
                  + [m for t in txns[4:] for m in t])

    args = ["--group-txns", "1"] if case == "applied_part_alone" else []
    run = st.run(*args)
    assert run.rc == 0, run
    assert "was interrupted by the BEGIN" in run.err
    if case == "begin_only" or dst.workers > 1:
        # parallel apply deals whole transactions: no part reached the target
        assert "dropping its partial copy" in run.err
        assert len(run.ready) == 1
    else:
        assert "rolling back the target transaction" in run.err
        assert len(run.ready) == 2                    # it reconnected by itself
    assert run.stopped == []
    assert_same(src, dst, "log")
    assert_same(src, dst, "tally")
    assert dst.sql("SELECT count(*), count(DISTINCT i) FROM log") == [(25, 25)]
    assert dst.sql("SELECT n FROM tally") == [(6,)]
    assert st.origin_lsn() == commit_end_lsns([t[-1] for t in txns])[-1]


def test_connection_loss_then_resume(pair, tmp_path):
    src, dst = pair
    exactly_once_tables(src, dst)
    st = Stream(src, dst, "lost", tmp_path)
    # sessions side by side apply 2,000 before the loss: more, so it comes mid-stream
    n = 2000 if dst.workers == 1 else 8000
    small_transactions(src, n)
    st.fetch()

    flag = os.path.join(str(tmp_path), "resume")
    proc = st.popen("--group-txns", "1", "--txns-per-batch", "5", "--resume-file", flag)
    stops = []
    try:
        commits = 0
        while commits < 20:
            line = proc.stdout.readline()
            assert line, "the driver ended early"
            commits += line.startswith("committed ")
        dst.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'strait-apply' AND datname = current_database()")
        for line in proc.stdout:
            if line.startswith("stopped "):
                stops.append(line.strip())
                st.wait_detached()
                open(flag, "w").close()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert stops and stops[0].startswith("stopped lost the connection to the target: "), stops
    assert_exactly_once(src, dst, n)


def test_changes_find_their_rows_through_the_key_index(pair, tmp_path):
    """A small table's rows updated over and over (a branch's balance): each
    change reaches its row through the primary key's index, as PostgreSQL's
    own apply does, never by scanning the table and its dead versions."""
    src, dst = pair
    both(src, dst, "CREATE TABLE branch (id int PRIMARY KEY, balance bigint, note text)")
    src.sql("INSERT INTO branch SELECT g, 0, 'n' FROM generate_series(1, 20) g")
    dst.sql("INSERT INTO branch SELECT g, 0, 'n' FROM generate_series(1, 20) g")
    dst.sql("ANALYZE branch")                     # the planner sees one page
    st = Stream(src, dst, "idx", tmp_path)
    with src.connect() as conn:
        for i in range(600):
            with conn.transaction():
                conn.execute("UPDATE branch SET balance = balance + %s WHERE id = %s",
                             (i, 1 + i % 20))
        conn.execute("DELETE FROM branch WHERE id = 20")
    st.fetch()
    before = dst.sql("SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) "
                     "FROM pg_stat_user_tables WHERE relname = 'branch'")[0]
    run = st.run()
    assert run.rc == 0, run
    # the driver's sessions have ended: their counts are in the statistics
    harness.wait_until(lambda: dst.sql(
        "SELECT coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'branch'")[0][0]
        >= before[1] + 601, timeout=30, what="the apply's index scans to be counted")
    after = dst.sql("SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables "
                    "WHERE relname = 'branch'")[0][0]
    assert after == before[0], f"the apply scanned branch whole {after - before[0]} times"
    assert_same(src, dst, "branch")


def test_update_of_a_row_inserted_by_a_segment_not_yet_committed(pair, tmp_path):
    """A row inserted in one segment and updated by the next: with sessions
    side by side the update must wait until the insert committed (a row not
    committed is invisible to another session: the UPDATE would find
    nothing and, under target_wins, be skipped)."""
    src, dst = pair
    both(src, dst, "CREATE TABLE tally (id int PRIMARY KEY, n int); "
                   "CREATE TABLE blocker (i int PRIMARY KEY)")
    st = Stream(src, dst, "ins", tmp_path)
    with src.connect() as conn:
        conn.execute("INSERT INTO tally VALUES (1, 0)")
        conn.commit()
        for i in range(31):                   # the rest of the first segment
            conn.execute("INSERT INTO blocker VALUES (%s)", (i,))
            conn.commit()
        for i in range(32):                   # the next one: on another session
            conn.execute("UPDATE tally SET n = n + 1 WHERE id = 1")
            conn.commit()
    st.fetch()
    # the first segment inserts the row, then waits for this lock: the row
    # stays uncommitted while the next segment is dealt
    locker = psycopg.connect(dst.dsn(), autocommit=False)
    locker.execute("LOCK TABLE blocker IN ACCESS EXCLUSIVE MODE")
    try:
        proc = st.popen(policy="target_wins")
        time.sleep(2)
    finally:
        locker.rollback()
        locker.close()
    out, err = proc.communicate(timeout=120)
    run = Run(proc.returncode, out, err)
    assert run.rc == 0, run
    assert dst.sql("SELECT n FROM tally") == [(32,)], run
    assert run.status["conflicts"]["total"] == 0, run
    assert_same(src, dst, "blocker")


def hold_origin(dst, origin):
    """A session of another process that holds the origin until closed."""
    conn = dst.connect()
    conn.autocommit = True
    conn.execute("SELECT pg_replication_origin_create(%s) WHERE NOT EXISTS "
                 "(SELECT 1 FROM pg_replication_origin WHERE roname = %s)", (origin, origin))
    conn.execute("SELECT pg_replication_origin_session_setup(%s)", (origin,))
    return conn


def test_origin_held_by_an_ending_session_is_waited_for(pair, tmp_path):
    """The previous backend still holds the origin as the engine connects again."""
    src, dst = pair
    exactly_once_tables(src, dst)
    st = Stream(src, dst, "held", tmp_path)
    small_transactions(src, 50)
    st.fetch()
    holder = hold_origin(dst, f"strait_{st.name}")
    try:
        proc = st.popen()
        time.sleep(1.5)
        assert proc.poll() is None, proc.stderr.read()
    finally:
        holder.close()
    out, err = proc.communicate(timeout=120)
    run = Run(proc.returncode, out, err)
    assert run.rc == 0, run
    assert run.stopped == [], run
    assert "is already active for PID" in run.err      # it met the origin held, and waited
    assert_exactly_once(src, dst, 50)


def test_origin_held_by_another_process_stops_with_its_error(pair, tmp_path):
    src, dst = pair
    exactly_once_tables(src, dst)
    st = Stream(src, dst, "taken", tmp_path)
    small_transactions(src, 5)
    st.fetch()
    holder = hold_origin(dst, f"strait_{st.name}")
    try:
        run = st.run(timeout=120)
    finally:
        holder.close()
    assert run.rc != 0
    assert len(run.stopped) == 1, run
    assert "could not set up the target session" in run.stopped[0]
    assert "is already active for PID" in run.stopped[0]
    assert dst.sql("SELECT count(*) FROM log") == [(0,)]


def test_partitioned_target(pair, tmp_path):
    src, dst = pair
    src.sql("CREATE TABLE m (id int PRIMARY KEY, v text)")
    src.sql("CREATE TABLE f (id int, v text)")
    src.sql("ALTER TABLE f REPLICA IDENTITY FULL")
    dst.sql("""CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
               CREATE TABLE m_lo PARTITION OF m FOR VALUES FROM (MINVALUE) TO (50);
               CREATE TABLE m_hi PARTITION OF m FOR VALUES FROM (50) TO (MAXVALUE);
               CREATE TABLE f (id int, v text) PARTITION BY LIST (v);
               CREATE TABLE f_a PARTITION OF f FOR VALUES IN ('a');
               CREATE TABLE f_b PARTITION OF f DEFAULT;""")
    st = Stream(src, dst, "part", tmp_path)
    src.sql("INSERT INTO m SELECT g, 'v' FROM generate_series(1, 100) g")
    src.sql("UPDATE m SET id = id + 1000 WHERE id BETWEEN 1 AND 5")  # moves partitions
    src.sql("DELETE FROM m WHERE id BETWEEN 90 AND 1002")
    src.sql("INSERT INTO f VALUES (1, 'a'), (1, 'a'), (2, 'b'), (2, 'b')")
    src.sql("UPDATE f SET v = 'c' WHERE ctid = (SELECT ctid FROM f WHERE v = 'a' LIMIT 1)")
    src.sql("DELETE FROM f WHERE ctid = (SELECT ctid FROM f WHERE v = 'b' LIMIT 1)")
    src.sql("TRUNCATE m")
    src.sql("INSERT INTO m VALUES (7, 'after')")
    st.fetch()
    run = st.run(policy="source_wins")
    assert run.rc == 0, run
    assert_same(src, dst, "m")
    assert_same(src, dst, "f")
    assert run.status["conflicts"]["total"] == 0


# --------------------------------------------------------------------------
# bad input never crashes

def rewrite_insert_ncols(msg):
    """An Insert with its last column dropped (and the count lowered)."""
    relid = msg[1:5]
    assert msg[5:6] == b"N"
    ncols = struct.unpack(">H", msg[6:8])[0]
    pos, cols = 8, []
    for _ in range(ncols):
        start = pos
        kind = msg[pos:pos + 1]
        pos += 1
        if kind in (b"t", b"b"):
            n = struct.unpack(">I", msg[pos:pos + 4])[0]
            pos += 4 + n
        cols.append(msg[start:pos])
    return b"I" + relid + b"N" + struct.pack(">H", ncols - 1) + b"".join(cols[:-1])


def relation_message(oid, natts):
    attrs = b"".join(b"\x00" + f"c{i}".encode() + b"\x00" + struct.pack(">Ii", 23, -1)
                     for i in range(natts))
    return (b"R" + struct.pack(">I", oid) + b"public\x00wide\x00d" + struct.pack(">H", natts)
            + attrs)


@pytest.mark.parametrize("case", ["garbage", "unknown_relation", "column_count", "truncated",
                                  "too_many_columns"])
def test_bad_input_stops_cleanly(pair, tmp_path, case):
    src, dst = pair
    both(src, dst, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    st = Stream(src, dst, "bad", tmp_path)
    src.sql("INSERT INTO t VALUES (1, 'a')")
    src.sql("SELECT pg_logical_emit_message(true, 'strait-test', 'hello')")
    src.sql("SELECT pg_logical_emit_message(false, 'strait-test', 'untransactional')")
    msgs = st.messages()
    assert "M" in message_types(msgs)
    if case == "garbage":
        i = message_types(msgs).index("I")
        msgs = msgs[:i] + [b"Zgarbage"] + msgs[i:]
        expect = "could not decode"
    elif case == "unknown_relation":
        msgs = [m for m in msgs if m[:1] != b"R"]
        expect = "unknown relation OID"
    elif case == "column_count":
        msgs = [rewrite_insert_ncols(m) if m[:1] == b"I" else m for m in msgs]
        expect = "has 1 columns but its Relation message announced 2"
    elif case == "too_many_columns":
        i = message_types(msgs).index("I")
        msgs = msgs[:i] + [relation_message(99999, 3000)] + msgs[i:]
        expect = "announces 3000 columns, more than PostgreSQL allows"
    else:
        write_records(st.path, msgs)
        with open(st.path, "ab") as f:
            f.write(struct.pack(">I", 1000) + b"short")
        run = st.run()
        assert run.rc == 1, run
        assert "runs past its end" in run.err
        return
    write_records(st.path, msgs)
    run = st.run()
    assert run.rc == 1, run
    assert expect in run.stopped[0], run
    assert "Sanitizer" not in run.err
    assert dst.sql("SELECT count(*) FROM t") == [(0,)]


def test_logical_messages_are_ignored(pair, tmp_path):
    src, dst = pair
    both(src, dst, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    st = Stream(src, dst, "msg", tmp_path)
    with src.connect() as conn:
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1, 'a')")
            conn.execute("SELECT pg_logical_emit_message(true, 'strait-test', 'inside')")
    src.sql("SELECT pg_logical_emit_message(false, 'strait-test', 'outside')")
    src.sql("INSERT INTO t VALUES (2, 'b')")
    msgs = st.fetch()
    assert message_types(msgs).count("M") == 2
    run = st.run("--log-level", "debug")
    assert run.rc == 0, run
    assert_same(src, dst, "t")
    assert "ignoring logical decoding message with prefix \"strait-test\"" in run.err
