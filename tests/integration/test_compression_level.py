"""The zstd level follows what limits a stream (gateway/stream/complevel.h):
held back by its rate with a backlog, the sender raises the level step by
step; once nothing waits, it goes back to the configured level. The sink
decodes whatever level each batch had. Two sites on this host's loopback."""

import harness
from harness import wait_until
from test_spool import (harness_metrics, loopback_pair, source_status, wait_equal, wait_link,
                        write_bulk)


def level(d):
    return source_status(d)["compression"]


def test_rate_bound_stream_raises_the_level_then_returns(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = loopback_pair(
        tmp_path, pg_factory, straitd_factory,
        {"compression": {"codec": "zstd", "level": 3}, "schedule": [{"rate": "256KiB/s"}]})
    wait_link(onprem)
    assert level(onprem) == {"level": 3, "configured_level": 3, "why": "configured"}
    # about 10 MB of hex text (half of it after zstd): the rate holds a backlog back
    for _ in range(10):
        write_bulk(src, 500)
    wait_until(lambda: level(onprem)["level"] >= 9, 60, interval=0.5,
               what="the level to rise while the rate holds a backlog")
    c = level(onprem)
    assert c["why"] == "link or rate bound" and c["configured_level"] == 3
    assert 'strait_stream_compression_level{stream="app",to="cloud"} ' in harness_metrics(onprem)
    # unlimited: the backlog drains, and the level goes back to the configured one
    onprem.ctl("sync-now", "app")
    wait_equal(src, dst, ("bulk",), timeout=120)
    wait_until(lambda: level(onprem)["level"] == 3, 120, interval=0.5,
               what="the level back to the configured one")
    assert "zstd level" in onprem.log_text()
    # batches at every level on the way decoded at the sink: the target is equal
    assert harness.tables_equal(src, dst, ("bulk",))
