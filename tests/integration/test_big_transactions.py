"""Transactions of any size in bounded memory: the sink applies a large
source transaction as it arrives, in one open target transaction, and frees
what it has applied; the source sends within a window that those frees
reopen. Memory is measured on the release build (a sanitizer build's shadow
memory and quarantine are not the product's)."""
import time

import pytest

from harness import wait_until
from test_noloss import (assert_no_sanitizer_reports, sink_status, source_status, start_pair,
                         vm_hwm, wait_sink_ready, wait_streaming)

MiB = 1024 * 1024
RSS_LIMIT = 64 * MiB


def big_schema(pg):
    pg.sql("CREATE TABLE big (id int PRIMARY KEY, body text NOT NULL)")


def digest(pg):
    return pg.sql("SELECT count(*), sum(id), md5(string_agg(body, ',' ORDER BY id)) FROM big")[0]


@pytest.mark.parametrize("rows", [
    # about 66 MB of changes: the sink could not hold them whole under the limit
    pytest.param(700_000, id="700k"),
    # about 190 MB (make big)
    pytest.param(2_000_000, id="2m", marks=pytest.mark.big),
])
def test_a_large_transaction_in_bounded_memory(tmp_path, plain_build, pg_factory, straitd_factory,
                                               rows):
    """One INSERT of many rows and a small transaction after it: the target
    ends equal, the target never shows part of the big one, and both
    daemons' peak RSS stays under 64 MiB."""
    src, dst, onprem, cloud, _ = start_pair(tmp_path, pg_factory, straitd_factory, big_schema)
    wait_streaming(onprem)
    wait_sink_ready(cloud)
    t0 = time.monotonic()
    src.sql(f"INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) "
            f"FROM generate_series(1, {rows}) g")
    committed = time.monotonic()
    src.sql("INSERT INTO big VALUES (0, 'after')")
    seen = set()

    def arrived():
        n = dst.sql("SELECT count(*) FROM big")[0][0]
        seen.add(n)
        return n == rows + 1
    wait_until(arrived, 900, interval=1.0, what=f"{rows} rows at the target")
    applied = time.monotonic()
    assert seen <= {0, rows + 1}, f"the target showed part of the transaction: {sorted(seen)}"
    assert digest(dst) == digest(src)
    hwm = {d.site: vm_hwm(d.pid) for d in (onprem, cloud)}
    sink = sink_status(cloud)
    print(f"\n{rows} rows in one transaction: insert {committed - t0:.1f} s, applied "
          f"{applied - committed:.1f} s after its commit; peak RSS "
          + ", ".join(f"{site} {v / MiB:.1f} MiB" for site, v in hwm.items())
          + f"; {sink['batches_received']} batches")
    for site, v in hwm.items():
        assert v < RSS_LIMIT, f"straitd@{site} peaked at {v / MiB:.1f} MiB (limit {RSS_LIMIT // MiB})"
    assert sink["last_error"] is None and sink["apply"]["last_error"] is None, sink
    assert source_status(onprem)["last_error"] is None
    assert_no_sanitizer_reports(onprem, cloud)
