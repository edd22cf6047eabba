"""A short round of the chaos test (tests/chaos/chaos.py; `make chaos` runs
20 rounds or more): a ledger load on the primary while faults strike with a
fixed seed, and after each round the target must equal the source exactly."""

import os
import subprocess
import sys

import pytest

import harness

CHAOS = os.path.join(harness.REPO, "tests", "chaos", "chaos.py")
SEED = 20261252       # covers every kind of fault in 3 rounds
ROUNDS = 3


@pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")
def test_chaos_short_round(tmp_path):
    res = subprocess.run([sys.executable, CHAOS, "--rounds", str(ROUNDS), "--seed", str(SEED),
                          "--span", "8", "--workdir", str(tmp_path / "chaos")],
                         capture_output=True, text=True, timeout=600)
    print(res.stdout, res.stderr)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert f"{ROUNDS} rounds passed with seed {SEED}" in res.stdout
