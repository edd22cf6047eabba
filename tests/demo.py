"""make demo: two strait sites on this machine, a pgbench workload on the
primary, and the replica catching up, on screen.

As root the sites are network namespaces joined by a veth pair through a
bridge (192.0.2.0/24, TEST-NET-1); otherwise they share the loopback. Each
site has its own PostgreSQL 15 and its own straitd; everything is stopped and
removed at the end, also on Ctrl-C.
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))

import harness  # noqa: E402

SCALE = int(os.environ.get("DEMO_SCALE", "5"))
SECONDS = int(os.environ.get("DEMO_SECONDS", "20"))
CLIENTS = 4


def say(text=""):
    print(text, flush=True)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def counts(pg):
    return pg.sql("SELECT (SELECT count(*) FROM pgbench_history), "
                  "(SELECT sum(abalance) FROM pgbench_accounts), "
                  "(SELECT sum(bbalance) FROM pgbench_branches), "
                  "(SELECT sum(tbalance) FROM pgbench_tellers)")[0]


def stream_row(d, role):
    return next(r for r in d.status()["replication"] if r["role"] == role)


def main():
    base = tempfile.mkdtemp(prefix="strait-demo-")
    os.chmod(base, 0o755)
    cleanup = []
    try:
        say("strait demo: two sites on this machine\n")
        net = None
        if harness.IS_ROOT:
            net = harness.SiteNetwork(2, tag=f"d{os.getpid() % 10000}")
            cleanup.append(net.cleanup)
            say(f"  sites: network namespaces {net.sites[0].ns} (onprem, {net.sites[0].wan_ip}) "
                f"and {net.sites[1].ns} (cloud, {net.sites[1].wan_ip})")
        else:
            say("  sites: both on the loopback (not root: no network namespaces)")

        pgs = []
        for name in ("onprem", "cloud"):
            pg = harness.PgServer(name)
            cleanup.append(pg.cleanup)
            pgs.append(pg.start())
        src, dst = pgs
        say(f"  PostgreSQL 15: onprem on port {src.port}, cloud on port {dst.port}")

        say(f"  seeding onprem with pgbench -i -s {SCALE}; cloud gets the schema only "
            "(pg_dump --schema-only): strait copies the rows")
        src.pgbench("-i", "-s", str(SCALE), "-q")
        dump = harness.run(["pg_dump", "-h", src.sockdir, "-p", str(src.port), "-U", "postgres",
                            "--schema-only", "--no-publications", "postgres"])
        harness.run(["psql", "-h", dst.sockdir, "-p", str(dst.port), "-U", "postgres", "-X", "-q",
                     "-v", "ON_ERROR_STOP=1", "postgres"], input=dump.stdout)

        if net:
            sites = harness.tunnel_sites(pgs, net.sites)
            backend = "userspace"
        else:
            sites = harness.loopback_sites(pgs)
            backend = "none"
        stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
                  "initial_sync": True, "compression": {"codec": "zstd", "level": 3}}
        cluster = harness.Cluster(os.path.join(base, "cluster"), sites, [stream], backend=backend)
        daemons = {}
        for i, name in enumerate(("onprem", "cloud")):
            d = harness.Straitd(cluster.path(name), site=name,
                                netns=net.sites[i].ns if net else None, log_level="info")
            cleanup.append(d.kill)
            d.start()
            daemons[name] = d
        if net:
            say("  straitd running at both sites: WireGuard tunnel 10.77.0.1 <-> 10.77.0.2 "
                "(wireguard-go), TLS 1.3 relay link inside it\n")
        else:
            say("  straitd running at both sites: TLS 1.3 relay link over the loopback\n")
        t_sync = time.monotonic()
        harness.wait_until(lambda: stream_row(daemons["onprem"], "source")["streaming"], 300,
                           interval=0.2, what="the initial sync and the stream to start")
        say(f"  initial sync: "
            f"pgbench tables copied to cloud in {time.monotonic() - t_sync:.1f} s; streaming\n")

        say(f"pgbench -c {CLIENTS} -T {SECONDS} on onprem:")
        bench = threading.Thread(target=lambda: src.pgbench("-c", str(CLIENTS), "-T", str(SECONDS)))
        bench.start()
        wan0 = net.sites[0].counters() if net else None
        say(f"  {'time':>5} {'onprem txns':>12} {'cloud txns':>11} {'batches':>8} "
            f"{'raw':>10} {'compressed':>11} {'ratio':>6}")
        t0 = time.monotonic()
        while bench.is_alive() or counts(src)[0] != counts(dst)[0]:
            if time.monotonic() - t0 > SECONDS + 60:
                say("  the replica did not catch up in time; see the logs")
                break
            s = stream_row(daemons["onprem"], "source")
            ratio = s["bytes_raw"] / s["bytes_wire"] if s["bytes_wire"] else 0
            arrived = counts(dst)[0]      # the replica first: it never looks ahead
            say(f"  {time.monotonic() - t0:5.1f} {counts(src)[0]:12d} {arrived:11d} "
                f"{s['batches_sent']:8d} {human(s['bytes_raw']):>10} {human(s['bytes_wire']):>12} "
                f"{ratio:5.1f}x")
            time.sleep(1)
        bench.join()

        a, b = counts(src), counts(dst)
        if net:
            wan1 = net.sites[0].counters()
            wan = wan1[0] - wan0[0] + wan1[1] - wan0[1]
            say(f"\n  WAN traffic (the veth under the tunnel, both ways): {human(wan)}, "
                f"{wan / max(a[0], 1):.0f} bytes per transaction")
        say("\nside by side:")
        say(f"  {'':24} {'onprem':>14} {'cloud':>14}")
        for label, x, y in zip(("pgbench_history rows", "sum(abalance)", "sum(bbalance)",
                                "sum(tbalance)"), a, b):
            say(f"  {label:24} {x:>14} {y:>14}")
        equal = all(harness.table_dump(src, t) == harness.table_dump(dst, t)
                    for t in ("pgbench_accounts", "pgbench_branches", "pgbench_tellers",
                              "pgbench_history"))
        say(f"\n  tables identical row by row: {'yes' if equal else 'NO'}")
        return 0 if equal else 1
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception as exc:  # keep cleaning up
                say(f"  cleanup: {exc}")
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    sys.exit(main())
