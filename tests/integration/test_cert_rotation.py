"""Certificate rotation: both sites' certificate and key files are replaced
by new ones from the same CA and the daemons reloaded while pgbench writes
at the source. No stream restarts (the walsender and the apply session are
the same backends before and after), and the target ends equal."""

import os
import time

import harness
import tlsutil
from harness import wait_until
from test_initial_sync import pgbench_background
from test_replication import PGBENCH_TABLES, start_pair, stream_status, wait_equal, wait_streaming


def schema(pg):
    pg.pgbench("-i", "-s", "1", "-q")


def stream_backends(src, dst):
    walsender = src.sql("SELECT pid FROM pg_stat_replication WHERE application_name LIKE 'strait%'")
    apply = dst.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'strait-apply'")
    return sorted(walsender), sorted(apply)


def test_certificate_rotation_by_reload_under_pgbench(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, cluster = start_pair(tmp_path, pg_factory, straitd_factory,
                                                  schema=schema)
    wait_streaming(onprem, timeout=60)
    wait_until(lambda: stream_status(cloud, "sink")["apply_ready"], 30, what="cloud's apply")
    bench = pgbench_background(src, "-n", "-c", "2", "-T", "12")
    try:
        wait_until(lambda: src.sql("SELECT count(*) FROM pgbench_history")[0][0] > 100, 20,
                   what="pgbench writes")
        wait_until(lambda: stream_backends(src, dst)[1], 20, what="the apply session")
        before = stream_backends(src, dst)
        assert before[0] and before[1], before
        old, marks = {}, {}
        for name, d in (("onprem", onprem), ("cloud", cloud)):
            host_dir = os.path.dirname(cluster.path(name))
            crt = os.path.join(host_dir, "tls", "site.crt")
            with open(crt) as f:
                old[name] = f.read()
            cert = tlsutil.make_site_cert(cluster.ca, os.path.join(str(tmp_path), "ca2"), name)
            tlsutil.install_site_tls(cluster.ca, cert, host_dir)
            with open(crt) as f:
                assert f.read() != old[name]
            at = len(d.log_text())
            d.reload()
            wait_until(lambda: "reload" in d.log_text()[at:], 10, what=f"{name}'s reload")
            marks[name] = at
        time.sleep(2)          # writes flow under the new files
        assert bench.poll() is None, "pgbench ended before the rotation was done"
        assert bench.wait(timeout=30) == 0, bench.stderr.read()
    finally:
        if bench.poll() is None:
            bench.kill()
        bench.wait()
    wait_equal(src, dst, PGBENCH_TABLES)
    # the same backends: neither the source's stream nor the apply restarted
    assert stream_backends(src, dst) == before
    for name, d in (("onprem", onprem), ("cloud", cloud)):
        after = d.log_text()[marks[name]:]
        print(name, after[:3000])
        assert " error: " not in after, after
