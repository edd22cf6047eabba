"""Large values cross: a pgoutput message larger than a relay frame (a row
with a value of tens or hundreds of MB) is spooled and sent in pieces and
joined at the sink, and the rows around it follow. The values are random
hex, so zstd cannot shrink them below a frame."""
import pytest

from harness import wait_until
from test_noloss import (assert_no_sanitizer_reports, sink_status, source_status, start_pair,
                         tail, wait_sink_ready, wait_streaming)

MiB = 1024 * 1024


def value_table(pg):
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, body text NOT NULL)")


def random_text(mib):
    """SQL for mib MiB of random hex (md5 of random numbers, 32 characters each)."""
    return f"(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, {mib * MiB // 32}))"


def digest(pg):
    return pg.sql("SELECT id, n, length(body), md5(body) FROM t ORDER BY id")


def cross(tmp_path, pg_factory, straitd_factory, big_mib, mid_mib, timeout):
    """Writes, around a row of big_mib MiB: a small row before, a transaction
    holding a mid_mib MiB value with small rows on both sides, an UPDATE that
    leaves the big value unchanged (pgoutput sends it as unchanged TOAST),
    and a small row after; the target ends equal to the source."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, value_table)
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    src.sql("INSERT INTO t (id, body) VALUES (1, 'before')")
    src.sql(f"INSERT INTO t (id, body) VALUES (2, {random_text(big_mib)})")
    with src.connect() as conn:
        with conn.transaction():
            conn.execute("INSERT INTO t (id, body) VALUES (3, 'small, in front')")
            conn.execute(f"INSERT INTO t (id, body) VALUES (4, {random_text(mid_mib)})")
            conn.execute("INSERT INTO t (id, body) VALUES (5, 'small, behind')")
    src.sql("UPDATE t SET n = 7 WHERE id = 2")
    src.sql("INSERT INTO t (id, body) VALUES (6, 'after')")
    want = digest(src)
    assert want[1][2] == big_mib * MiB and want[3][2] == mid_mib * MiB
    try:
        wait_until(lambda: dst.sql("SELECT count(*), coalesce(sum(n), 0) FROM t")[0] == (6, 7),
                   timeout, interval=0.5, what=f"the rows around a {big_mib} MiB value")
    except TimeoutError:
        pytest.fail(f"target rows {dst.sql('SELECT id, n, length(body) FROM t ORDER BY id')}\n"
                    f"source: {source_status(onprem)}\nsink: {sink_status(cloud)}\n"
                    f"source log:\n{tail(onprem)}\nsink log:\n{tail(cloud)}")
    assert digest(dst) == want
    sink = sink_status(cloud)
    assert sink["last_error"] is None, sink
    assert sink["joining_bytes"] == 0, sink
    assert source_status(onprem)["last_error"] is None
    assert_no_sanitizer_reports(onprem, cloud)
    return onprem, cloud


def test_values_of_20_and_9_mib_cross(tmp_path, pg_factory, straitd_factory):
    """Five pieces and three (4 MiB each): the joining, quickly."""
    cross(tmp_path, pg_factory, straitd_factory, 20, 9, 60)


@pytest.mark.big
def test_a_100_mib_value_crosses(tmp_path, pg_factory, straitd_factory):
    cross(tmp_path, pg_factory, straitd_factory, 100, 40, 600)


@pytest.mark.big
def test_a_900_mib_value_crosses(tmp_path, pg_factory, straitd_factory):
    cross(tmp_path, pg_factory, straitd_factory, 900, 40, 3600)
