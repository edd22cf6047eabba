"""The etcd client (gateway/witness/etcd.c) against real etcd members,
through tests/tools/etcd_driver: leases that live while kept alive and
expire when not, create-if-absent as the witness's claim, the walk over the
endpoints when members are down, and a bounded failure without quorum.

Members come from tests/integration/etcd.py, on loopback. Every wait polls
a condition with a deadline; every driver run is checked for sanitizer
reports.
"""

import contextlib
import os
import socket
import subprocess
import time

import pytest

import etcd
import harness

DRIVER = os.path.join(harness.BUILD, "tools", "etcd_driver")
ATTEMPT_MS = 1000


@pytest.fixture(scope="module", autouse=True)
def driver_built():
    if not os.access(DRIVER, os.X_OK):
        pytest.exit(f"{DRIVER} is missing: run make tools first", returncode=2)


class Run:
    """One driver run: its exit code, result line and the line's key=value fields."""

    def __init__(self, res, elapsed):
        self.rc = res.returncode
        self.out = res.stdout
        self.err = res.stderr
        self.elapsed = elapsed
        self.lines = res.stdout.splitlines()
        self.line = self.lines[-1] if self.lines else ""
        self.ok = self.line.startswith("ok")
        self.fields = {}
        for word in self.line.split()[1:]:
            key, eq, value = word.partition("=")
            if eq:
                self.fields.setdefault(key, value)
        for marker in ("Sanitizer", "runtime error:"):
            assert marker not in res.stderr, f"sanitizer report:\n{res.stderr[-4000:]}"

    def __repr__(self):
        return (f"Run(rc={self.rc}, {self.elapsed:.2f}s, stdout={self.out[-2000:]!r}, "
                f"stderr={self.err[-2000:]!r})")


def drive(endpoints, *cmd, timeout_ms=ATTEMPT_MS, interval_ms=None, timeout=60):
    args = [DRIVER, "--timeout-ms", str(timeout_ms)]
    if interval_ms:
        args += ["--interval-ms", str(interval_ms)]
    start = time.monotonic()
    res = subprocess.run(args + list(endpoints) + ["--"] + [str(c) for c in cmd],
                         capture_output=True, text=True, timeout=timeout)
    return Run(res, time.monotonic() - start)


def drive_ok(endpoints, *cmd, **kw):
    r = drive(endpoints, *cmd, **kw)
    assert r.rc == 0 and r.ok, r
    return r


@pytest.fixture
def etcd_cluster(tmp_path, request):
    """etcd_cluster(n) -> a started EtcdCluster of n members on loopback."""
    clusters = []

    def make(n):
        cluster = etcd.EtcdCluster(tmp_path, [(f"e{i}", None, "127.0.0.1") for i in range(n)])
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        if getattr(request.node, "call_failed", False):
            print(cluster.log_tails())
        cluster.cleanup()


def dead_url():
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{harness.allocate_port()}"


@contextlib.contextmanager
def silent_listener():
    """A loopback URL that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", harness.allocate_port()))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def get_value(endpoints, key):
    """The key's value, or None when it is absent."""
    r = drive_ok(endpoints, "get", key)
    return r.fields["value"] if int(r.fields["count"]) else None


def leader_of(cluster, names, among=None):
    """The leader's member id as the running members names see it, once they
    agree on one (and it is one of the ids among, when given)."""
    def agreed():
        ids = {drive_ok([cluster.client_url(n)], "status").fields["leader"] for n in names}
        leader = ids.pop() if len(ids) == 1 else "0"
        return leader if leader != "0" and (among is None or leader in among) else None
    return harness.wait_until(agreed, 15, interval=0.2, what="one leader for " + ", ".join(names))


# --------------------------------------------------------------------------

def test_keys_status_and_members_on_one_member(etcd_cluster):
    cluster = etcd_cluster(1)
    urls = cluster.client_urls
    r = drive_ok(urls, "put", "/strait/a", "one")
    assert r.fields["endpoint"] == urls[0]
    rev = int(r.fields["revision"])
    r = drive_ok(urls, "get", "/strait/a")
    assert (r.fields["count"], r.fields["value"], r.fields["lease"]) == ("1", "one", "0")
    assert int(r.fields["create"]) == int(r.fields["mod"]) == rev
    drive_ok(urls, "put", "/strait/b", "two words")
    r = drive_ok(urls, "get-prefix", "/strait/")
    assert r.fields["count"] == "2" and "value=two\\x20words" in r.line, r
    assert drive_ok(urls, "delete", "/strait/a").fields["deleted"] == "1"
    assert drive_ok(urls, "delete", "/strait/a").fields["deleted"] == "0"
    assert get_value(urls, "/strait/a") is None

    status = drive_ok(urls, "status").fields
    assert status["leader"] == status["member"] != "0"
    assert status["version"].startswith("3.")
    members = drive_ok(urls, "members").fields
    assert members["count"] == "1" and members["name"] == "e0" and members["urls"] == urls[0]
    assert members["id"] == status["member"]


def test_keepalive_keeps_a_lease_and_it_expires_without(etcd_cluster):
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    r = drive_ok(urls, "grant", 2)
    lease, granted = r.fields["id"], time.monotonic()
    assert r.fields["ttl"] == "2"
    drive_ok(urls, "put", "/strait/leader", "onprem", lease)
    # keepalives every 0.5 s for 5 s, from another process, while this one reads
    keep = subprocess.Popen([DRIVER, "--timeout-ms", str(ATTEMPT_MS), "--interval-ms", "500"]
                            + urls + ["--", "keep", lease, "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while time.monotonic() - granted < 4.5:
            assert get_value(urls, "/strait/leader") == "onprem", \
                f"the key went {time.monotonic() - granted:.1f}s after the grant"
            time.sleep(0.3)
        out, err = keep.communicate(timeout=30)
    finally:
        if keep.poll() is None:
            keep.kill()
            keep.wait()
    stopped = time.monotonic()
    assert keep.returncode == 0, (out, err)
    assert "Sanitizer" not in err, err
    lines = out.splitlines()
    assert lines[-1].startswith("ok kept=") and int(lines[-1].split("=")[1]) >= 8, out
    assert all(line.endswith("ttl=2") for line in lines[:-1]), out
    assert time.monotonic() - granted > 4.0

    # no more keepalives: the lease runs out 2 s after the last one
    harness.wait_until(lambda: get_value(urls, "/strait/leader") is None, 10, interval=0.1,
                       what="the key to go with its lease")
    gone_after = time.monotonic() - stopped
    assert 0.8 < gone_after < 6.0, f"the key went {gone_after:.1f}s after the keepalives stopped"
    assert drive_ok(urls, "keepalive", lease).fields["ttl"] == "0"


def test_create_if_absent_wins_once_and_revoke_frees_it_at_once(etcd_cluster):
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    first = drive_ok(urls, "grant", 30).fields["id"]
    second = drive_ok(urls, "grant", 30).fields["id"]
    assert first != second

    r = drive(urls, "create-if-absent", "/strait/claim", "onprem", first)
    assert r.rc == 0 and "created" in r.line, r
    r = drive(urls, "create-if-absent", "/strait/claim", "cloud", second)
    assert r.rc == 3 and " held " in r.line, r
    assert (r.fields["value"], r.fields["lease"]) == ("onprem", first)

    drive_ok(urls, "revoke", first)
    assert get_value(urls, "/strait/claim") is None      # at once, not at the ttl's end
    r = drive(urls, "revoke", first)
    assert r.rc == 1 and "code=5 http=404" in r.line and "lease not found" in r.line, r
    r = drive(urls, "create-if-absent", "/strait/claim", "cloud", second)
    assert r.rc == 0 and "created" in r.line, r
    assert get_value(urls, "/strait/claim") == "cloud"


def test_dead_first_endpoints_are_passed_over(etcd_cluster):
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    # a port nothing listens on
    r = drive_ok([dead_url()] + urls, "status")
    assert r.fields["endpoint"] == urls[0]
    # a stopped member
    cluster.stop_member("e0")
    r = drive_ok(urls, "put", "/strait/k", "v")
    assert r.fields["endpoint"] == urls[1]
    # a member that accepts and never answers: one attempt's timeout, then the next
    with silent_listener() as silent:
        r = drive_ok([silent, urls[2]], "get", "/strait/k")
    assert r.fields["endpoint"] == urls[2] and r.fields["value"] == "v"
    assert ATTEMPT_MS / 1000 <= r.elapsed < ATTEMPT_MS / 1000 + 5, r


def test_every_endpoint_dead_is_a_clear_error_within_the_bound(etcd_cluster):
    cluster = etcd_cluster(1)
    cluster.stop_member("e0")
    with silent_listener() as silent:
        endpoints = [dead_url(), cluster.client_urls[0], silent]
        r = drive(endpoints, "grant", 5)
    assert r.rc == 1 and r.line.startswith("error "), r
    assert "etcd lease grant failed at every endpoint" in r.line, r
    for url in endpoints:
        assert url in r.line, r
    assert f"{silent}: no answer within {ATTEMPT_MS} ms" in r.line, r
    assert "could not connect" in r.line, r
    # refused at once twice, one attempt's timeout once
    assert r.elapsed < 3 * ATTEMPT_MS / 1000 + 5, r


def test_one_member_down_of_three_still_serves(etcd_cluster):
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    names = ["e0", "e1", "e2"]
    ids = {m["id"]: m["name"] for m in members_of(urls)}
    leader = ids[leader_of(cluster, names)]
    # the leader goes; the others elect another and go on
    cluster.stop_member(leader)
    alive = [n for n in names if n != leader]
    leader_of(cluster, alive, among={i for i, n in ids.items() if n in alive})
    down_first = [cluster.client_url(leader)] + [cluster.client_url(n) for n in alive]
    lease = drive_ok(down_first, "grant", 10).fields["id"]
    r = drive_ok(down_first, "create-if-absent", "/strait/claim", "onprem", lease)
    assert r.fields["endpoint"] != cluster.client_url(leader)
    assert drive_ok(down_first, "keepalive", lease).fields["ttl"] == "10"
    assert get_value(down_first, "/strait/claim") == "onprem"

    # back: it catches up and answers itself
    cluster.start_member(leader)
    r = drive_ok([cluster.client_url(leader)], "get", "/strait/claim")
    assert r.fields["value"] == "onprem"


def wait_no_leader(url):
    """Until the member knows it has no leader: a leader that lost its quorum
    steps down only one to two election timeouts later, and until then
    renews leases on its own."""
    harness.wait_until(lambda: drive_ok([url], "status").fields["leader"] == "0", 15,
                       interval=0.2, what=f"{url} to see no leader")


def members_of(urls):
    r = drive_ok(urls, "members")
    words = r.line.split()
    return [dict(w.split("=", 1) for w in words[i:i + 3])
            for i, w in enumerate(words) if w.startswith("name=")]


def test_without_quorum_a_request_fails_within_the_attempt_bound(etcd_cluster):
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    lease = drive_ok(urls, "grant", 30).fields["id"]
    drive_ok(urls, "put", "/strait/k", "v", lease)
    cluster.stop_member("e1")
    cluster.stop_member("e2")
    wait_no_leader(urls[0])
    # the survivor first: it accepts and holds the request, the others refuse
    for cmd in (("get", "/strait/k"), ("keepalive", lease), ("put", "/strait/k", "w")):
        r = drive(urls, *cmd)
        assert r.rc == 1, r
        assert f"{urls[0]}: no answer within {ATTEMPT_MS} ms" in r.line, r
        assert r.elapsed < 3 * ATTEMPT_MS / 1000 + 5, r
    # status and member list are a member's own: served without quorum, no leader
    status = drive_ok(urls, "status")
    assert status.fields["endpoint"] == urls[0] and status.fields["leader"] == "0"
    assert drive_ok(urls, "members").fields["count"] == "3"

    # quorum back: served again
    cluster.start_member("e1")
    harness.wait_until(lambda: drive(urls, "get", "/strait/k").ok, 20, interval=0.2,
                       what="a read once two of three members run")
    assert get_value(urls, "/strait/k") == "v"


def test_a_member_without_quorum_answers_after_its_own_timeout(etcd_cluster):
    """With an attempt timeout longer than etcd's request timeout (5 s + 2 x
    the election timeout), the member's own answer comes: 503 or 500, and
    the next endpoint is tried."""
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    lease = drive_ok(urls, "grant", 30).fields["id"]
    cluster.stop_member("e1")
    cluster.stop_member("e2")
    wait_no_leader(urls[0])
    runs = [subprocess.Popen([DRIVER, "--timeout-ms", "12000", urls[0], "--"] + cmd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cmd in (["get", "/strait/k"], ["keepalive", lease])]
    outs = []
    for p in runs:
        out, err = p.communicate(timeout=60)
        assert "Sanitizer" not in err, err
        outs.append((p.returncode, out.strip()))
    for rc, line in outs:
        assert rc == 1 and f"{urls[0]}: HTTP 5" in line, outs


def test_status_and_members_report_the_cluster(etcd_cluster):
    cluster = etcd_cluster(3)
    urls = cluster.client_urls
    members = members_of(urls)
    assert sorted(m["name"] for m in members) == ["e0", "e1", "e2"]
    by_name = {m["name"]: m for m in members}
    for name in ("e0", "e1", "e2"):
        assert by_name[name]["urls"] == cluster.client_url(name)
    leader = leader_of(cluster, ["e0", "e1", "e2"])
    assert leader in {m["id"] for m in members}
    for name in ("e0", "e1", "e2"):
        status = drive_ok([cluster.client_url(name)], "status").fields
        assert status["member"] == by_name[name]["id"]
        assert status["leader"] == leader


def test_concurrent_requests_and_a_client_freed_in_its_callback(etcd_cluster):
    cluster = etcd_cluster(1)
    urls = cluster.client_urls
    drive_ok(urls, "put", "/strait/k", "v")
    assert drive_ok(urls, "get-many", 100, "/strait/k").fields["answered"] == "100"
    # the first answer frees the client with the other requests in every stage
    with silent_listener() as silent:
        r = drive_ok([silent] + urls, "abandon", 40, "/strait/k")
    assert r.fields == {"answered": "1", "dropped": "39"}, r


def test_driver_usage_and_refused_endpoints():
    for args, want in (([], "usage"), (["http://127.0.0.1:1"], "usage"),
                       (["http://127.0.0.1:1", "--", "explode"], "usage"),
                       (["https://127.0.0.1:2379", "--", "status"], "https is not supported"),
                       (["http://etcd1:2379", "--", "status"], "must be an IP address"),
                       (["http://127.0.0.1:99999", "--", "status"], "port out of range"),
                       (["http://127.0.0.1:2379/v3", "--", "status"], "nothing may follow"),
                       (["127.0.0.1:2379", "--", "status"], "not an http://host:port URL")):
        res = subprocess.run([DRIVER] + args, capture_output=True, text=True, timeout=30)
        assert res.returncode == 2 and want in res.stderr, (args, res)
    res = subprocess.run([DRIVER, "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "usage" in res.stdout


def test_members_in_namespace_sites(netns_sites, tmp_path):
    """etcd.py's members inside namespace sites, on their WAN addresses: the
    client in one site reaches them all over the bridge, and past a member
    that is down."""
    sites = netns_sites(3)
    cluster = etcd.EtcdCluster(tmp_path, [(f"e{i}", s.ns, s.wan_ip) for i, s in enumerate(sites)])
    try:
        cluster.start()
        urls = cluster.client_urls
        assert urls[1].startswith(f"http://{sites[1].wan_ip}:")

        def drive_in(site, *cmd):
            start = time.monotonic()
            res = site.run([DRIVER, "--timeout-ms", str(ATTEMPT_MS)] + urls + ["--"]
                           + [str(c) for c in cmd], check=False, timeout=60)
            return Run(res, time.monotonic() - start)

        r = drive_in(sites[2], "put", "/strait/k", "v")
        assert r.rc == 0 and r.fields["endpoint"] == urls[0], r
        cluster.stop_member("e0")
        r = drive_in(sites[2], "get", "/strait/k")
        assert r.rc == 0 and r.fields["value"] == "v" and r.fields["endpoint"] == urls[1], r
        cluster.start_member("e0")
        assert cluster.member("e0").healthy()
    finally:
        cluster.cleanup()
