"""Metrics, health checks, roles and epochs against real straitd processes:
/metrics in the Prometheus text format (checked with promtool), the
Patroni-style checks /primary, /replica (with ?lag=) and /health, the role and
epoch persisted in the state directory, a primary that hears a higher epoch
stepping down to fenced, `straitctl lag`, and the lag figures compared with
PostgreSQL's own view of the slot."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

import harness
from harness import run, wait_until
from test_replication import start_pair, stream_status, wait_equal, wait_streaming

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http_get(d, path, method="GET"):
    """(status, headers, body) of one request to straitd d's metrics listener."""
    with open(d.config_path) as f:
        import yaml
        host, port = yaml.safe_load(f)["metrics"]["listen"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def scrape(d):
    """{(name, frozenset(labels)): value} of d's /metrics, and the raw text."""
    status, headers, body = http_get(d, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable line {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, text


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def promtool_check(text):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (tests/install-deps.sh installs prometheus)")
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def check(d, path):
    status, headers, body = http_get(d, path)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def link_up(d, peer):
    return any(p["site"] == peer and p["state"] == "up" for p in d.status()["relay"]["peers"])


def two_sites(tmp_path, straitd_factory, states=None, start=("onprem", "cloud")):
    """Two sites without databases; states = {site: state file text} written first."""
    sites = harness.loopback_sites([None, None])
    streams = [{"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app"}]
    cluster = harness.Cluster(tmp_path, sites, streams)
    for name, text in (states or {}).items():
        state_dir = cluster.host(name)[1]["state_dir"]
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        with open(os.path.join(state_dir, "role"), "w") as f:
            f.write(text)
    daemons = {n: straitd_factory(cluster.path(n), site=n) for n in start}
    return cluster, daemons


def state_text(site, role, epoch, cluster="acme-dr"):
    return f"format=1\ncluster={cluster}\nsite={site}\nrole={role}\nepoch={epoch}\n"


def read_state(cluster, site):
    with open(os.path.join(cluster.host(site)[1]["state_dir"], "role")) as f:
        return f.read()


# ---------------------------------------------------------------------------


def test_metrics_parse_and_name_what_the_alert_rules_use(tmp_path, straitd_factory):
    cluster, d = two_sites(tmp_path, straitd_factory)
    wait_until(lambda: link_up(d["onprem"], "cloud"), 20, what="the relay link")
    for name, peer in (("onprem", "cloud"), ("cloud", "onprem")):
        samples, text = scrape(d[name])
        promtool_check(text)
        assert value(samples, "strait_up") == 1
        assert value(samples, "strait_build_info", version=open(
            os.path.join(harness.REPO, "VERSION")).read().strip()) == 1
        role = "primary" if name == "onprem" else "replica"
        for r in ("primary", "replica", "fenced"):
            assert value(samples, "strait_site_role", role=r) == (r == role)
        assert value(samples, "strait_site_epoch") == 1
        assert value(samples, "strait_peer_epoch", peer=peer) == 1
        states = {s: value(samples, "strait_stream_state", stream="app", to="cloud", state=s)
                  for s in ("starting", "syncing", "streaming", "held", "backpressure",
                            "error", "stopped")}
        assert sum(states.values()) == 1, states
        for metric in ("strait_stream_lag_bytes", "strait_stream_lag_seconds",
                       "strait_stream_applied_lsn"):
            assert value(samples, metric, stream="app", to="cloud") >= 0
        assert value(samples, "strait_relay_up", peer=peer) == 1
        assert value(samples, "strait_relay_connects_total", peer=peer) >= 1
        assert value(samples, "strait_relay_bytes_sent_total", peer=peer) > 0
        assert value(samples, "strait_relay_bytes_received_total", peer=peer) > 0
        assert value(samples, "strait_relay_frames_sent_total", peer=peer) > 0
        # tunnel backend none: the family is described, with no peers
        assert "# TYPE strait_tunnel_last_handshake_seconds gauge" in text
    samples, _ = scrape(d["onprem"])
    assert value(samples, "strait_spool_bytes", stream="app") == 0
    assert value(samples, "strait_spool_max_bytes", stream="app") == 10 * 1024 ** 3
    assert value(samples, "strait_stream_held", stream="app", to="cloud") == 0
    assert value(samples, "strait_stream_rate_limit_bytes_per_second", stream="app",
                 to="cloud") == float("inf")
    assert value(samples, "strait_disk_warning_level", stream="app") == 0
    for metric in ("strait_stream_bytes_raw_total", "strait_stream_bytes_compressed_total"):
        assert (metric, frozenset({("stream", "app"), ("to", "cloud")})) in samples
    assert value(samples, "strait_stream_info", stream="app", role="source", peer="cloud") == 1
    samples, _ = scrape(d["cloud"])
    assert value(samples, "strait_stream_info", stream="app", role="sink", peer="onprem") == 1
    # the shipped alert rules only use names the daemon serves (a family with
    # no sample yet, such as a verify's before the first one, is declared)
    rules = open(os.path.join(harness.REPO, "packaging", "prometheus", "strait-alerts.yml")).read()
    texts = [scrape(d[site])[1] for site in ("onprem", "cloud")]
    served = {n for n, _ in samples} | {n for n, _ in scrape(d["onprem"])[0]} | {
        "strait_tunnel_last_handshake_seconds"} | {
        n for t in texts for n in re.findall(r"^# TYPE (\S+) ", t, re.M)}
    used = set(re.findall(r"\b(strait_[a-z_]+)\b", rules))
    assert used and used <= served, used - served


def test_checks_primary_health_and_refusals(tmp_path, straitd_factory):
    cluster, d = two_sites(tmp_path, straitd_factory)
    onprem, cloud = d["onprem"], d["cloud"]
    status, body = check(onprem, "/primary")
    assert status == 200 and body["role"] == "primary" and body["epoch"] == 1
    assert body["reason"] is None
    status, body = check(cloud, "/primary")
    assert status == 503 and "this site is replica" in body["reason"]
    assert check(onprem, "/replica")[0] == 503
    for x in (onprem, cloud):
        assert check(x, "/health")[0] == 200
    # HEAD: the same answer without a body
    status, headers, body = http_get(onprem, "/primary", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert http_get(cloud, "/primary", method="HEAD")[0] == 503
    assert http_get(onprem, "/metrics", method="HEAD")[0] == 200
    # unknown paths, other methods, a bad threshold, oversized requests
    assert http_get(onprem, "/nope")[0] == 404
    assert http_get(onprem, "/primary/extra")[0] == 404
    assert http_get(onprem, "/metrics", method="POST")[0] == 405
    assert http_get(onprem, "/replica?lag=lots")[0] == 400
    assert http_get(onprem, "/replica?lag=16%20MB")[0] == 400
    assert http_get(onprem, "/" + "x" * 20000)[0] in (400, 413, 414, 431)
    with open(onprem.config_path) as f:
        import yaml
        host, port = yaml.safe_load(f)["metrics"]["listen"].rsplit(":", 1)
    import socket
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"a" * 100000 + b"\r\n\r\n")
        try:
            reply = s.recv(100)
        except ConnectionResetError:
            reply = b""
        assert reply == b"" or not reply.startswith(b"HTTP/1.1 200")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n")
        try:
            s.recv(100)
        except ConnectionResetError:
            pass
    assert onprem.alive() and check(onprem, "/health")[0] == 200


def test_role_and_epoch_persist_across_restart(tmp_path, straitd_factory):
    cluster, d = two_sites(tmp_path, straitd_factory, start=("onprem",))
    st = d["onprem"].status()
    assert st["role"] == "primary" and st["epoch"] == 1
    assert "role=primary\nepoch=1\n" in read_state(cluster, "onprem")
    mode = os.stat(os.path.join(cluster.host("onprem")[1]["state_dir"], "role")).st_mode
    assert mode & 0o777 == 0o600
    assert d["onprem"].stop() == 0
    # the state file wins over the config's role (as after a failover)
    path = os.path.join(cluster.host("onprem")[1]["state_dir"], "role")
    with open(path, "w") as f:
        f.write(state_text("onprem", "replica", 4))
    again = straitd_factory(cluster.path("onprem"), site="onprem")
    st = again.status()
    assert st["role"] == "replica" and st["epoch"] == 4
    assert st["relay"]["epoch"] == 4
    text = again.ctl("status", "--verbose").stdout
    assert "role: replica" in text and "epoch: 4" in text
    assert check(again, "/primary")[0] == 503
    samples, _ = scrape(again)
    assert value(samples, "strait_site_epoch") == 4
    assert value(samples, "strait_site_role", role="replica") == 1
    assert again.stop() == 0
    assert read_state(cluster, "onprem") == state_text("onprem", "replica", 4)


@pytest.mark.parametrize("text,message", [
    (state_text("onprem", "boss", 1), 'unknown role "boss"'),
    (state_text("onprem", "primary", 0), 'invalid epoch "0"'),
    ("garbage\n", "expected key=value"),
    (state_text("cloud", "primary", 3), 'belongs to site "cloud"'),
])
def test_a_corrupt_state_file_is_refused(tmp_path, straitd_factory, text, message):
    cluster, _ = two_sites(tmp_path, straitd_factory, start=())
    state_dir = cluster.host("onprem")[1]["state_dir"]
    os.makedirs(state_dir, mode=0o700)
    with open(os.path.join(state_dir, "role"), "w") as f:
        f.write(text)
    d = straitd_factory(cluster.path("onprem"), site="onprem", start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert message in d.log_text()
    with open(os.path.join(state_dir, "role")) as f:
        assert f.read() == text            # left as it was for the operator


def test_a_primary_that_hears_a_higher_epoch_is_fenced(tmp_path, straitd_factory):
    """cloud was promoted at epoch 5 while onprem was away; onprem comes back
    believing it is primary at epoch 1, hears epoch 5 and steps down."""
    cluster, d = two_sites(tmp_path, straitd_factory,
                           states={"cloud": state_text("cloud", "primary", 5)})
    onprem, cloud = d["onprem"], d["cloud"]
    wait_until(lambda: onprem.status()["role"] == "fenced", 20, what="onprem to step down")
    st = onprem.status()
    assert st["epoch"] == 5 and st["relay"]["epoch"] == 5
    sites = {s["name"]: s for s in st["sites"]}
    assert sites["onprem"]["role"] == "fenced" and sites["onprem"]["configured_role"] == "primary"
    wait_until(lambda: {s["name"]: s for s in onprem.status()["sites"]}["cloud"]["role"] ==
               "primary", 20, what="cloud's heartbeat")
    assert "stepping down from primary to fenced" in onprem.log_text()
    assert "role=fenced\nepoch=5\n" in read_state(cluster, "onprem")
    assert check(onprem, "/primary")[0] == 503
    assert check(onprem, "/replica")[0] == 503
    assert check(onprem, "/health")[0] == 200
    assert check(cloud, "/primary")[0] == 200
    samples, _ = scrape(onprem)
    assert value(samples, "strait_site_role", role="fenced") == 1
    assert value(samples, "strait_site_role", role="primary") == 0
    # the cloud side keeps its role and epoch
    assert cloud.status()["role"] == "primary" and cloud.status()["epoch"] == 5
    # fenced survives a restart
    assert onprem.stop() == 0
    again = straitd_factory(cluster.path("onprem"), site="onprem")
    assert again.status()["role"] == "fenced" and again.status()["epoch"] == 5


def test_straitctl_lag(tmp_path, straitd_factory):
    cluster, d = two_sites(tmp_path, straitd_factory, start=("onprem",))
    onprem = d["onprem"]
    out = onprem.ctl("lag").stdout
    assert out.startswith("site onprem, role primary, epoch 1\n")
    assert re.search(r"^STREAM +ROLE +PEER +STATE +LAG_BYTES +LAG_SECONDS +APPLIED_LSN$", out, re.M)
    assert re.search(r"^app +source +cloud +\w+ +\d+ +[\d.]+ +[0-9A-F]+/[0-9A-F]+$", out, re.M)
    doc = json.loads(onprem.ctl("lag", "--json").stdout)
    assert doc["role"] == "primary" and doc["epoch"] == 1
    assert doc["lag"][0]["stream"] == "app" and doc["lag"][0]["role"] == "source"
    # refreshed: a bounded run prints one table per refresh
    res = onprem.ctl("lag", "--watch", "0.1", "--count", "3")
    assert res.stdout.count("STREAM ") == 3 and res.stdout.count("straitctl lag") == 3
    res = onprem.ctl("lag", "--json", "--count", "2", "--watch=0.1")
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(docs) == 2 and all(x["lag"][0]["stream"] == "app" for x in docs)
    # the status shows the same lag
    assert onprem.status()["lag"][0]["stream"] == "app"
    for bad in (["--watch", "0"], ["--count", "0"], ["--count", "x"], ["extra"]):
        assert onprem.ctl("lag", *bad, check=False).returncode == 2
    assert "--watch" in run([harness.STRAITCTL, "lag", "--help"]).stdout
    # a daemon that goes away ends the watch with exit 3
    res = run([harness.STRAITCTL, "--socket", str(tmp_path / "none.sock"), "lag", "--watch", "0.1"],
              check=False, timeout=10)
    assert res.returncode == 3


# ---------------------------------------------------------------------------
# With PostgreSQL


def pg_lag(src):
    """PostgreSQL's own view: current WAL minus the slot's confirmed flush position."""
    return src.sql("SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots "
                   "WHERE slot_name = 'strait_app'")[0][0]


def test_replica_checks_with_a_real_stream(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory,
        schema=lambda pg: pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)"))
    wait_streaming(onprem)
    wait_until(lambda: check(cloud, "/replica")[0] == 200, 30, what="a healthy replica")
    src.sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g")
    wait_equal(src, dst, ["t"])
    for q in ("", "?lag=16MB", "?lag=16777216", "?lag=0"):
        wait_until(lambda: check(cloud, "/replica" + q)[0] == 200, 30, what=f"/replica{q}")
    assert check(cloud, "/primary")[0] == 503
    assert check(onprem, "/primary")[0] == 200 and check(onprem, "/replica")[0] == 503
    assert check(cloud, "/replica?lag=16XB")[0] == 400
    samples, text = scrape(cloud)
    promtool_check(text)
    assert value(samples, "strait_stream_state", stream="app", to="cloud", state="streaming") == 1
    assert value(samples, "strait_stream_applied_lsn", stream="app", to="cloud") > 0
    samples, _ = scrape(onprem)
    assert value(samples, "strait_stream_bytes_raw_total", stream="app", to="cloud") > \
        value(samples, "strait_stream_bytes_compressed_total", stream="app", to="cloud") > 0
    assert value(samples, "strait_stream_applied_lsn", stream="app", to="cloud") > 0

    # the target goes away: the sink stops, and the replica is not healthy,
    # whatever the threshold
    dst.stop()
    src.sql("INSERT INTO t VALUES (5000, 'while the target is down')")
    wait_until(lambda: check(cloud, "/replica?lag=1TB")[0] == 503, 30,
               what="the replica to turn unhealthy")
    status, body = check(cloud, "/replica")
    assert "stopped" in body["reason"]
    samples, _ = scrape(cloud)
    assert value(samples, "strait_stream_state", stream="app", to="cloud", state="error") == 1
    assert check(cloud, "/health")[0] == 200
    dst.start()
    wait_equal(src, dst, ["t"], timeout=60)
    wait_until(lambda: check(cloud, "/replica?lag=0")[0] == 200, 30, what="the replica back")


def lag_metrics(d):
    samples, _ = scrape(d)
    return (value(samples, "strait_stream_lag_bytes", stream="app", to="cloud"),
            value(samples, "strait_stream_lag_seconds", stream="app", to="cloud"))


def test_lag_follows_postgres(tmp_path, pg_factory, straitd_factory):
    """Lag at the source is 0 when caught up, also while unrelated WAL moves,
    and > 0 (bytes and seconds) while the sink is stopped — at most what
    PostgreSQL's slot shows."""
    src = pg_factory("onprem")
    dst = pg_factory("cloud")
    for pg in (src, dst):
        pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    src.createdb("other")
    # durability remote: the slot then moves only with what the sink applied,
    # so PostgreSQL's view of it bounds strait's lag
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False, "durability": "remote"}
    # heartbeats far apart, so a stopped sink is not declared dead during the test
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream],
                              extra={"failover": {"health_interval": "10s"}})
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")
    wait_streaming(onprem)
    src.sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
    wait_equal(src, dst, ["t"])
    wait_until(lambda: lag_metrics(onprem) == (0, 0), 30, what="no lag when caught up")

    # unrelated WAL (another database) moves on: no lag
    for i in range(20):
        src.sql(f"CREATE TABLE IF NOT EXISTS u{i} AS SELECT generate_series(1, 1000) g",
                dbname="other")
    assert lag_metrics(onprem) == (0, 0)

    cloud.signal(signal.SIGSTOP)
    try:
        src.sql("INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(101, 3000) g")
        src.sql("INSERT INTO t VALUES (3001, 'last')")
        wait_until(lambda: lag_metrics(onprem)[0] > 0 and lag_metrics(onprem)[1] > 0.5, 20,
                   what="lag while the sink is stopped")
        lag_bytes, lag_seconds = lag_metrics(onprem)
        assert 0 < lag_bytes <= pg_lag(src)
        out = onprem.ctl("lag").stdout
        assert re.search(rf"^app +source +cloud +\w+ +{int(lag_bytes)} ", out, re.M) or \
            re.search(r"^app +source +cloud +\w+ +[1-9]\d* ", out, re.M)
    finally:
        cloud.signal(signal.SIGCONT)
    wait_equal(src, dst, ["t"])
    wait_until(lambda: lag_metrics(onprem) == (0, 0), 30, what="the lag back to 0")
    wait_until(lambda: lag_metrics(cloud) == (0, 0), 30, what="the sink's lag back to 0")


@pytest.mark.skipif(not harness.IS_ROOT, reason="needs root (namespaces, WireGuard)")
def test_tunnel_handshake_metric(tmp_path, netns_sites, straitd_factory):
    """Two namespace sites joined by a WireGuard tunnel (wireguard-go): each
    exports the time of its latest handshake with the other."""
    if shutil.which("wireguard-go") is None:
        pytest.skip("wireguard-go is not installed")
    ns = netns_sites(2)
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app"}
    cluster = harness.Cluster(tmp_path, harness.tunnel_sites([None, None], ns), [stream],
                              backend="userspace")
    d = {name: straitd_factory(cluster.path(name), site=name, netns=site.ns)
         for name, site in zip(("onprem", "cloud"), ns)}

    def handshake(name):
        peers = d[name].status()["tunnel"]["peers"]
        return all(p["last_handshake"] for p in peers) and peers[0]["last_handshake"]
    wait_until(lambda: handshake("onprem") and handshake("cloud"), 60, what="a handshake")
    for (name, peer), site in zip((("onprem", "cloud"), ("cloud", "onprem")), ns):
        url = "http://" + cluster.host(name)[1]["metrics"]["listen"] + "/metrics"
        text = site.run(["curl", "-sS", "--max-time", "10", url]).stdout
        promtool_check(text)
        m = re.search(r'^strait_tunnel_last_handshake_seconds\{peer="%s"\} (\d+)$' % peer, text,
                      re.M)
        assert m, text
        assert abs(int(m.group(1)) - handshake(name)) <= 300


SYNC_ROWS = {"wide": 400000, "mid": 3000, "few": 10, "none": 0}


def sync_metrics(d):
    samples, text = scrape(d)
    names = ("running", "tables", "tables_done", "eta_seconds", "rows_total", "bytes_total")
    labels = frozenset({("stream", "app"), ("to", "cloud")})
    return {n: samples.get((f"strait_initial_sync_{n}", labels))
            for n in names}, text


def test_initial_sync_progress_metrics(tmp_path, pg_factory, straitd_factory):
    """The source exports its initial sync's progress: tables in the plan and
    done, rows and bytes read, time left, and whether a round runs — during
    the copy (the sink stopped, so the source waits on its window) and once
    the stream streams."""
    src, dst = harness.on_each(pg_factory, ("onprem", "cloud"))
    for pg in (src, dst):
        for name in SYNC_ROWS:
            pg.sql(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v text)")
    for name, n in SYNC_ROWS.items():
        src.sql(f"INSERT INTO {name} SELECT g, repeat('x', 80) FROM generate_series(1, {n}) g")
    src.sql("VACUUM ANALYZE")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": True}
    # heartbeats far apart: the sink stopped for a moment does not lose the link
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([src, dst]), [stream],
                              extra={"failover": {"health_interval": "10s"}})
    onprem = straitd_factory(cluster.path("onprem"), site="onprem")
    cloud = straitd_factory(cluster.path("cloud"), site="cloud")

    # the round runs: stop the sink so the copy waits for its acknowledgements
    wait_until(lambda: (sync_metrics(onprem)[0]["rows_total"] or 0) > 0, 60, interval=0.02,
               what="the copy to start")
    cloud.signal(signal.SIGSTOP)
    try:
        def held():
            m = sync_metrics(onprem)[0]
            first = held.last
            held.last = m["rows_total"]
            return first == m["rows_total"]
        held.last = None
        wait_until(held, 30, interval=0.5, what="the copy to wait for the stopped sink")
        m, text = sync_metrics(onprem)
        promtool_check(text)
        assert m["running"] == 1, m
        assert m["tables"] == len(SYNC_ROWS), m
        assert 0 <= m["tables_done"] < len(SYNC_ROWS), m
        assert 0 < m["rows_total"] < sum(SYNC_ROWS.values()), m
        assert m["bytes_total"] > 0, m
        assert m["eta_seconds"] is None or m["eta_seconds"] > 0, m
        # the sink exports none of these: the source has the figures
        assert sync_metrics(onprem)[0]["running"] == 1
    finally:
        cloud.signal(signal.SIGCONT)

    wait_until(lambda: sync_metrics(onprem)[0]["running"] == 0, 120, interval=0.2,
               what="the initial sync to end")
    assert harness.tables_equal(src, dst, list(SYNC_ROWS))
    published = src.sql("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'strait_app'")
    m, text = sync_metrics(onprem)
    promtool_check(text)
    assert m["tables"] == published[0][0] == len(SYNC_ROWS), m
    assert m["tables_done"] == m["tables"], m
    assert m["rows_total"] == sum(SYNC_ROWS.values()), m
    assert m["eta_seconds"] == 0, m
    copy = next(r for r in onprem.status()["replication"] if r["role"] == "source")["initial_sync"]
    assert m["bytes_total"] == copy["bytes"], (m, copy)
    assert sync_metrics(cloud)[0]["running"] is None
