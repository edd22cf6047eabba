"""straitd's life cycle against a real process: start-up and site identity,
the control socket, status, SIGHUP reload (valid and invalid), SIGTERM."""

import json
import os
import signal
import socket
import stat

import pytest

import harness
from harness import make_keypair, run, wait_until, write_config, write_private_key


def two_site_cluster(tmp_path, streams=None):
    """A two-site cluster (tunnel backend none, no database reachable): each
    host's config path and dict."""
    sites = harness.loopback_sites([None, None])
    if streams is None:
        streams = [{"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app"}]
    return harness.Cluster(tmp_path, sites, streams).hosts


def test_starts_as_named_site_and_reports_status(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["cloud"]
    d = straitd_factory(path, site="cloud")
    st = d.status()
    assert st["cluster"] == "acme-dr"
    assert st["site"] == "cloud"
    assert st["role"] == "replica"
    assert st["pid"] == d.pid
    assert {s["name"]: s["self"] for s in st["sites"]} == {"onprem": False, "cloud": True}
    assert st["streams"][0] == {"name": "app", "from": "onprem", "to": "cloud",
                                "destinations": ["cloud"], "publication": "strait_app",
                                "mode": "live"}
    assert st["tunnel"]["backend"] == "none"
    text = d.ctl("status", "--verbose").stdout
    assert "site: cloud" in text and "cluster: acme-dr" in text
    assert "- name: app" in text
    # the state directory is created private to the daemon
    assert stat.S_IMODE(os.stat(cfg["state_dir"]).st_mode) == 0o700


def test_status_and_lag_of_many_streams(tmp_path, straitd_factory):
    """Twenty streams (more than the report's first allocation holds): status
    and lag list each by its own name, and the daemon lives."""
    streams = [{"name": f"s{i:02d}", "from": "onprem", "to": "cloud",
                "publication": f"strait_s{i:02d}"} for i in range(20)]
    hosts = two_site_cluster(tmp_path, streams)
    d = straitd_factory(hosts["cloud"][0], site="cloud")
    for _ in range(3):
        rows = json.loads(d.ctl("lag", "--json").stdout)["lag"]
        assert sorted(r["stream"] for r in rows) == [f"s{i:02d}" for i in range(20)]
        assert all(r["peer"] == "onprem" for r in rows)
        repl = d.status()["replication"]
        assert sorted(r["stream"] for r in repl) == [f"s{i:02d}" for i in range(20)]
        assert "s19" in d.ctl("lag").stdout
        assert "s19" in d.ctl("status").stdout
    assert d.alive()
    text = d.log_text()
    assert "AddressSanitizer" not in text and "runtime error:" not in text


def test_finds_its_site_from_the_private_key(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0])
    assert d.status()["site"] == "onprem"


def test_refuses_a_key_that_matches_no_site(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    write_private_key(cfg["private_key_file"], make_keypair()[0])
    d = straitd_factory(path, start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert "no site in" in d.log_text() and "--site" in d.log_text()


def test_refuses_a_key_of_another_site_with_site_flag(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0], site="cloud", start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert "does not match site \"cloud\"" in d.log_text()


def test_refuses_a_world_readable_private_key(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    os.chmod(cfg["private_key_file"], 0o644)
    d = straitd_factory(path, start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert "group or world access" in d.log_text()


def test_refuses_an_unknown_site(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0], site="mars", start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert "site \"mars\" is not defined" in d.log_text()


def test_refuses_an_invalid_config_at_start(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, _ = hosts["onprem"]
    with open(path, "a") as f:
        f.write("bogus_key: 1\n")
    d = straitd_factory(path, site="onprem", start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert "bogus_key" in d.log_text()


def test_control_socket_is_owner_only_and_single(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    straitd_factory(path, site="onprem")
    mode = os.stat(cfg["control"]["socket"]).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    second = straitd_factory(path, site="onprem", start=False).start(wait=False)
    assert second.wait_exit() == 1
    assert "is in use" in second.log_text()


def test_control_socket_rejects_bad_requests(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0], site="onprem")

    def call(payload):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(d.socket)
            s.sendall(payload)
            chunks = []
            while True:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)

    assert call(b"frobnicate\n").startswith(b"error\nunknown command")
    assert call(b"\n").startswith(b"error\n")
    assert call(b"status\t--bogus\n").startswith(b"error\nusage")
    assert call(b"x" * 10000) == b""            # over-long request: dropped
    assert call(b"\t".join([b"a"] * 100) + b"\n").startswith(b"error\ntoo many")
    assert d.alive() and d.status()["site"] == "onprem"


def test_sighup_reloads_a_valid_config(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    d = straitd_factory(path, site="onprem")
    cfg["streams"].append({"name": "archive", "from": "onprem", "to": "cloud",
                           "publication": "strait_archive", "mode": "batch",
                           "windows": ["01:00-05:00"]})
    write_config(path, cfg)
    d.reload()
    st = wait_until(lambda: (s := d.status())["config"]["reloads"] == 1 and s,
                    what="the reload")
    assert [s["name"] for s in st["streams"]] == ["app", "archive"]
    assert st["streams"][1]["mode"] == "batch"
    assert st["config"]["last_reload_error"] is None
    assert "configuration reloaded" in d.log_text()


def test_sighup_with_an_invalid_config_keeps_the_old_one(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    d = straitd_factory(path, site="onprem")
    with open(path) as f:
        good = f.read()
    with open(path, "w") as f:
        f.write(good.replace("publication: strait_app", "publication: strait_app\n  spool_max: lots"))
    d.reload()
    st = wait_until(lambda: (s := d.status())["config"]["failed_reloads"] == 1 and s,
                    what="the refused reload")
    assert d.alive()
    assert st["config"]["reloads"] == 0
    assert st["config"]["last_reload_error"]
    assert [s["name"] for s in st["streams"]] == ["app"]
    log = d.log_text()
    assert "reload refused" in log
    assert "spool_max" in log and "lots" in log
    # the same through straitctl reload: exit 1 with the reason
    res = d.ctl("reload", check=False)
    assert res.returncode == 1 and "reload refused" in res.stderr
    # fixed file: reload takes
    with open(path, "w") as f:
        f.write(good)
    assert d.ctl("reload").stdout.strip() == "configuration reloaded"
    assert d.status()["config"]["reloads"] == 1


def test_reload_refuses_a_change_that_needs_a_restart(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    d = straitd_factory(path, site="onprem")
    cfg["cluster"] = "another-cluster"
    write_config(path, cfg)
    res = d.ctl("reload", check=False)
    assert res.returncode == 1
    assert d.status()["cluster"] == "acme-dr"
    assert "cluster" in d.log_text()


def test_sigterm_stops_cleanly(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    d = straitd_factory(path, site="onprem")
    assert d.stop() == 0
    assert not os.path.exists(cfg["control"]["socket"])
    log = d.log_text()
    assert "received SIGTERM, shutting down" in log and "stopped" in log


def test_sigint_stops_cleanly(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0], site="onprem")
    d.signal(signal.SIGINT)
    assert d.wait_exit() == 0


def test_restarts_after_sigkill_over_a_stale_socket(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    path, cfg = hosts["onprem"]
    d = straitd_factory(path, site="onprem")
    d.kill()
    assert os.path.exists(cfg["control"]["socket"])     # left behind
    d2 = straitd_factory(path, site="onprem")
    assert d2.status()["pid"] == d2.pid


def test_notifies_systemd_when_ready(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(sock_path)
        s.settimeout(15)
        d = straitd_factory(hosts["onprem"][0], site="onprem",
                            env={"NOTIFY_SOCKET": sock_path}, start=False).start()
        assert s.recv(4096).startswith(b"READY=1")
        d.reload()
        assert s.recv(4096) == b"RELOADING=1"
        assert s.recv(4096) == b"READY=1"
        d.stop()
        assert s.recv(4096) == b"STOPPING=1"


def test_logs_for_journald_with_priorities(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0], site="onprem", env={"JOURNAL_STREAM": "8:1234"})
    d.stop()
    lines = [l for l in d.log_text().splitlines() if l]
    assert lines and all(l[0] == "<" and l[2] == ">" for l in lines), lines[:3]
    assert any(l.startswith("<6>info: straitd") for l in lines)


def test_log_level_filters(tmp_path):
    hosts = two_site_cluster(tmp_path)
    d = harness.Straitd(hosts["onprem"][0], site="onprem")
    d.log_level = "warning"
    d.start()
    try:
        d.stop()
        assert "ready" not in d.log_text()
    finally:
        d.kill()


def test_status_json_is_one_document(tmp_path, straitd_factory):
    hosts = two_site_cluster(tmp_path)
    d = straitd_factory(hosts["onprem"][0], site="onprem")
    out = d.ctl("status", "--json").stdout
    assert out.count("\n") == 1
    json.loads(out)


def test_straitctl_reports_an_absent_daemon(tmp_path):
    res = run([harness.STRAITCTL, "--socket", str(tmp_path / "nothing.sock"), "status"],
              check=False)
    assert res.returncode == 3
    assert "is straitd running?" in res.stderr
