"""make bench is too long for make test; this runs its script once in
--smoke mode (initial sync of pgbench -i -s 1 and a 5-second steady phase,
native and strait each once) so a broken bench script is caught here.

It checks that the table and results.json come out with measured numbers,
not that strait meets its targets (that is the bench's own verdict)."""

import json
import os
import subprocess
import sys

import pytest

import harness

BENCH = os.path.join(harness.REPO, "tests", "bench", "bench.py")


@pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")
def test_bench_smoke(tmp_path):
    out = tmp_path / "bench"
    # the bench measures the real daemon: the plain build when there is one
    build = os.environ.get("STRAIT_PLAIN_BUILD") or harness.BUILD
    env = dict(os.environ, STRAIT_BUILD=build)
    res = subprocess.run([sys.executable, BENCH, "--smoke", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]

    text = (out / "results.txt").read_text()
    assert "WAN bytes/txn" in text and "initial sync" in text
    assert res.stdout.rstrip().endswith(text.rstrip().splitlines()[-1])

    doc = json.loads((out / "results.json").read_text())
    assert doc["failed"] is None
    rows = {r["metric"].split(" (")[0].split(",")[0]: r for r in doc["table"]}
    for metric in ("WAN bytes/txn", "initial sync", "lag under load"):
        row = rows[metric]
        for col in ("native", "strait"):
            float(row[col].split()[0])           # a number, not n/a
        assert row["result"] in ("met", "MISSED")
    for system in ("native", "strait"):
        run = doc["runs"][system][0]
        assert "error" not in run, run.get("error")
        steady = run["steady"]
        assert steady["transactions"] > 0 and steady["bytes_per_txn"] > 0
        assert steady["lag_samples"] >= 4 and steady["drain_s"] is not None
        assert run["sync"]["seconds"] > 0
    daemons = doc["runs"]["strait"][0]["straitd"]
    assert set(daemons) == {"onprem", "cloud"}
    assert all(d["peak_rss"] > 0 and d["cpu_s"] > 0 for d in daemons.values())
    assert os.path.getsize(out / "lag.png") > 1000
