"""hooks.on_role_change: the operator's program runs on every site whose
role or epoch changes, with the new role, the site and the epoch, one run
after another in the order of the changes; a failing program changes
nothing. Two sites on this host's loopback, real PostgreSQL servers."""

import os
import time

import harness
from harness import wait_until
from test_failover import ledger_schema, role, sink_of
from test_replication import wait_streaming


def test_on_role_change_runs_on_both_sites(tmp_path, pg_factory, straitd_factory):
    calls = tmp_path / "calls"
    hook = tmp_path / "on-role-change"
    hook.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    os.chmod(hook, 0o755)
    src, dst = pg_factory("onprem"), pg_factory("cloud")
    for pg in (src, dst):
        ledger_schema(pg)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream],
                              extra={"hooks": {"on_role_change": str(hook)}})
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem, timeout=60)
    wait_until(lambda: sink_of(cloud) and sink_of(cloud)[0]["apply_ready"], 30, what="cloud's apply")
    # a start is no change: nothing ran
    time.sleep(1)
    assert not calls.exists()

    onprem.ctl("switchover", "--to", "cloud")

    def lines():
        return calls.read_text().splitlines() if calls.exists() else []
    wait_until(lambda: "primary cloud 2" in lines() and "replica onprem 2" in lines(), 30,
               what="both hooks")
    got = lines()
    print(got)
    # onprem fenced itself first (the new epoch), then became cloud's replica: in that order
    mine = [l for l in got if l.endswith("onprem 2")]
    assert mine == ["fenced onprem 2", "replica onprem 2"], got
    assert [l for l in got if "cloud" in l] == ["primary cloud 2"], got
    assert "hook on_role_change primary cloud 2: done in" in cloud.log_text()

    # a program that fails is logged; the roles change all the same
    hook.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\nexit 3\n")
    cloud.ctl("switchover", "--to", "onprem")
    wait_until(lambda: "primary onprem 3" in lines() and "replica cloud 3" in lines(), 30,
               what="the hooks of the switchover back")
    assert role(onprem) == "primary" and role(cloud) == "replica"
    wait_until(lambda: "hook on_role_change primary onprem 3: exited 3" in onprem.log_text(), 10,
               what="the failure logged")
