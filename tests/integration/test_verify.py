"""Table comparison by in-database checksums (replicator/verify.c) between two
real PostgreSQL servers, through tests/tools/verify_driver.

The same rows are loaded on both servers; then rows are changed directly on
the target and the driver must report exactly those keys (or, for a table
without a key, exactly those row texts with their multiplicity differences).
A 200,000-row table must verify with checksum traffic under 1% of its size.
"""

import json
import os
import subprocess

import pytest

import harness

DRIVER = os.path.join(harness.BUILD, "tools", "verify_driver")


def run_driver(src, dst, table, *args, schema="public", expect=None):
    res = subprocess.run([DRIVER, "--source", src.dsn(), "--target", dst.dsn(), "--schema", schema,
                          "--table", table] + list(args),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, 3), f"driver failed ({res.returncode}): {res.stderr}"
    if expect is not None:
        assert res.returncode == expect, res.stdout
    assert "ERROR: AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def on_both(servers, statements):
    for pg in servers:
        for sql in statements:
            pg.sql(sql)


@pytest.fixture
def servers(pg_factory):
    return pg_factory("ver-src"), pg_factory("ver-dst")


KEYED = [
    "CREATE TABLE items (id int PRIMARY KEY, name text, qty numeric, made timestamptz, tags text[], t int)",  # "t" is also the alias
    "INSERT INTO items SELECT g, 'item ' || g, g * 1.5, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 min', "
    "ARRAY['a', g::text] FROM generate_series(1, 5000) g",
    'CREATE SCHEMA "Odd Schema"',
    'CREATE TABLE "Odd Schema"."Two ""Keys""" (k1 text, k2 int, v text, PRIMARY KEY (k1, k2))',
    "INSERT INTO \"Odd Schema\".\"Two \"\"Keys\"\"\" SELECT 'k, ' || (g % 7), g, 'v' || g "
    "FROM generate_series(1, 3000) g",
]


def test_equal_tables_have_no_differences(servers):
    src, dst = servers
    on_both(servers, KEYED)
    r = run_driver(src, dst, "items", "--chunk-rows", "700", expect=0)
    assert r["equal"] is True and r["keyed"] is True and r["key"] == ["id"]
    assert (r["rows_source"], r["rows_target"]) == (5000, 5000)
    assert r["chunks"] == 8                       # 7 full chunks of 700 and a last one
    assert r["missing"] == [] and r["extra"] == [] and r["changed"] == []
    assert r["narrowed"] == 0
    r = run_driver(src, dst, 'Two "Keys"', schema="Odd Schema", expect=0)
    assert r["key"] == ["k1", "k2"] and r["rows_source"] == 3000 and r["chunks"] == 1


def test_changes_on_the_target_are_reported_by_key(servers):
    src, dst = servers
    on_both(servers, KEYED)
    dst.sql("UPDATE items SET qty = qty + 1 WHERE id IN (42, 4321)")
    dst.sql("DELETE FROM items WHERE id IN (1, 2500, 5000)")
    dst.sql("INSERT INTO items VALUES (0, 'before all', 0, NULL, NULL), (6001, 'after all', 1, NULL, NULL)")
    dst.sql("UPDATE items SET made = made + interval '1 microsecond' WHERE id = 777")
    for chunk in ("700", "10000"):
        r = run_driver(src, dst, "items", "--chunk-rows", chunk, "--leaf-rows", "16", expect=3)
        assert r["equal"] is False
        assert sorted(r["changed"]) == ["(id)=(42)", "(id)=(4321)", "(id)=(777)"]
        assert sorted(r["missing"]) == ["(id)=(1)", "(id)=(2500)", "(id)=(5000)"]
        assert sorted(r["extra"]) == ["(id)=(0)", "(id)=(6001)"]
        assert (r["changed_total"], r["missing_total"], r["extra_total"]) == (3, 3, 2)
        assert (r["rows_source"], r["rows_target"]) == (5000, 4999)
        assert r["narrowed"] >= 1

    # a composite key with awkward names and values; a key changed on the target
    t = '"Odd Schema"."Two ""Keys"""'
    dst.sql(f"UPDATE {t} SET v = 'changed' WHERE k1 = 'k, 3' AND k2 = 10")
    dst.sql(f"UPDATE {t} SET k2 = -1 WHERE k1 = 'k, 0' AND k2 = 7")
    r = run_driver(src, dst, 'Two "Keys"', "--chunk-rows", "500", schema="Odd Schema", expect=3)
    assert r["changed"] == ["(k1, k2)=(k, 3, 10)"]
    assert r["missing"] == ["(k1, k2)=(k, 0, 7)"]
    assert r["extra"] == ["(k1, k2)=(k, 0, -1)"]

    # reports are bounded; totals are not
    dst.sql("DELETE FROM items WHERE id BETWEEN 100 AND 199")
    r = run_driver(src, dst, "items", "--max-report", "10", expect=3)
    assert r["truncated"] is True
    assert len(r["missing"]) + len(r["extra"]) + len(r["changed"]) == 10
    assert r["missing_total"] == 103 and r["changed_total"] == 3 and r["extra_total"] == 2


def test_table_without_key_compares_multisets(servers):
    src, dst = servers
    on_both(servers, [
        "CREATE TABLE events (a int, b text)",
        "INSERT INTO events SELECT g % 50, 'ev ' || (g % 50) FROM generate_series(1, 2000) g",
        "INSERT INTO events VALUES (NULL, NULL), (NULL, NULL), (7, 'it''s, \"x\"')",
    ])
    r = run_driver(src, dst, "events", expect=0)
    assert r["keyed"] is False and r["key"] == [] and r["rows_source"] == 2003

    # one of two identical rows gone, three copies of another gone, one changed, extra duplicates
    dst.sql("DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE a IS NULL LIMIT 1)")
    dst.sql("DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE a = 3 LIMIT 3)")
    dst.sql("UPDATE events SET b = 'changed' WHERE a = 7 AND b LIKE 'it%'")
    dst.sql("INSERT INTO events VALUES (5, 'ev 5'), (5, 'ev 5'), (99, 'new')")
    r = run_driver(src, dst, "events", "--leaf-rows", "32", expect=3)
    missing = {m["row"]: m["count"] for m in r["missing"]}
    extra = {m["row"]: m["count"] for m in r["extra"]}
    assert missing == {"(,)": 1, '(3,"ev 3")': 3, '(7,"it\'s, ""x""")': 1}
    assert extra == {'(5,"ev 5")': 2, "(99,new)": 1, "(7,changed)": 1}
    assert (r["missing_total"], r["extra_total"], r["changed"]) == (5, 4, [])
    assert r["narrowed"] >= 1 and r["rows_target"] == 2002


def test_human_report(servers):
    src, dst = servers
    on_both(servers, KEYED[:2])
    dst.sql("DELETE FROM items WHERE id = 9")
    res = subprocess.run([DRIVER, "--source", src.dsn(), "--target", dst.dsn(), "--table", "items", "--text"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr
    assert '"public"."items": DIFFERENT' in res.stdout
    assert "missing on the target: 1\n    (id)=(9)\n" in res.stdout


def test_large_table_traffic_is_small(servers):
    src, dst = servers
    on_both(servers, [
        "CREATE TABLE big (id bigint PRIMARY KEY, payload text, n int)",
        "INSERT INTO big SELECT g, md5(g::text), g % 1000 FROM generate_series(1, 200000) g",
        "VACUUM ANALYZE big",
    ])
    size = src.sql("SELECT pg_relation_size('big')")[0][0]
    r = run_driver(src, dst, "big", expect=0)
    print("checksum bytes", r["checksum_bytes"], "of a", size, "byte table")
    assert r["rows_source"] == 200000 and r["chunks"] == 21   # 20 full, then the open end above
    assert 0 < r["checksum_bytes"] < size / 100, (r["checksum_bytes"], size)

    dst.sql("UPDATE big SET n = -1 WHERE id = 123456")
    r = run_driver(src, dst, "big", expect=3)
    assert r["changed"] == ["(id)=(123456)"] and r["missing"] == [] and r["extra"] == []
    assert 0 < r["checksum_bytes"] < size / 100, (r["checksum_bytes"], size)


def test_missing_table_and_key_column_fail_cleanly(servers):
    src, dst = servers
    on_both(servers, KEYED[:2])
    for args in (["--table", "no_such_table"], ["--table", "items", "--key", "no_such_column"]):
        res = subprocess.run([DRIVER, "--source", src.dsn(), "--target", dst.dsn()] + args,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 1, res.stdout
        assert res.stderr.startswith("error "), res.stderr
        assert "no_such" in res.stderr and "AddressSanitizer" not in res.stderr
    # a key given by the caller is used as is
    dst.sql("DELETE FROM items WHERE id = 3")
    r = run_driver(src, dst, "items", "--key", "id", expect=3)
    assert r["key"] == ["id"] and r["missing"] == ["(id)=(3)"]
