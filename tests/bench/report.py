"""The bench's output: the comparison table (stdout and OUT/results.txt),
every measured number (OUT/results.json) and the lag over time (OUT/lag.png,
drawn by gnuplot from OUT/lag-*.dat).

Each row gives the median over the repetitions with [min-max], the ratio
strait / native of the medians, the target and whether it was met. Nothing
is left out: a phase that could not be measured says why."""

import json
import os
import statistics
import subprocess
import time

MIB = 1024 * 1024


def _values(runs, phase, key, cond=None):
    out = []
    for r in runs:
        v = (r.get(phase) or {})
        if cond and not cond(v):
            continue
        v = v.get(key)
        if v is not None:
            out.append(v)
    return out


def _cell(values, unit="", digits=2):
    if not values:
        return "n/a"
    med = statistics.median(values)
    s = f"{med:.{digits}f}{unit}"
    if len(values) > 1:
        s += f" [{min(values):.{digits}f}-{max(values):.{digits}f}]"
    return s


def _med(values):
    return statistics.median(values) if values else None


class Row:
    def __init__(self, metric, native, strait, ratio, target, result):
        self.cols = [metric, native, strait, ratio, target, result]


def _ratio(n, s):
    if n is None or s is None:
        return None
    if n == 0:
        return None
    return s / n


def _rfmt(r):
    return "n/a" if r is None else f"{r:.2f}"


def rows(bench):
    nat, st = bench.results["native"], bench.results["strait"]
    p = bench.p
    out = []

    def compare(metric, phase, key, unit, digits, target, test, cond=None, why_na=None):
        nv, sv = _values(nat, phase, key, cond), _values(st, phase, key, cond)
        nm, sm = _med(nv), _med(sv)
        r = _ratio(nm, sm)
        if nm is None or sm is None:
            result = why_na or "n/a"
        elif test is None:
            result = "-"
        else:
            result = "met" if test(nm, sm, r) else "MISSED"
        out.append(Row(metric, _cell(nv, unit, digits), _cell(sv, unit, digits), _rfmt(r),
                       target, result))

    if "steady" in p["phases"]:
        compare(f"WAN bytes/txn, both ways (pgbench -c 4 -T {p['steady']})", "steady",
                "bytes_per_txn", "", 0, "strait <= 0.15x", lambda n, s, r: r <= 0.15)
    if "sync" in p["phases"]:
        compare(f"initial sync, pgbench -i -s {p['scale']} (s)", "sync", "seconds", "", 2,
                "strait <= native", lambda n, s, r: s <= n)
    if "catchup" in p["phases"]:
        supported = [r.get("catchup", {}).get("supported") for r in st]
        why = None
        if st and not any(supported):
            why = "n/a (not supported yet)"
        compare(f"catch-up after {p['backlog']}s held (rows/s)", "catchup", "rows_per_s", "", 0,
                "strait >= 1.5x", lambda n, s, r: r >= 1.5,
                cond=lambda v: v.get("supported") and not v.get("timed_out"), why_na=why)
        if why:
            out[-1].cols[2] = "n/a (not supported yet)"
    if "steady" in p["phases"]:
        compare("lag under load, median (s)", "steady", "lag_p50", "", 3,
                "strait <= native", lambda n, s, r: s <= n)
        compare("lag under load, p99 (s)", "steady", "lag_p99", "", 3,
                "strait <= native", lambda n, s, r: s <= n)
        compare("pgbench tps while replicating", "steady", "tps", "", 0, "(report)", None)
        compare("WAN packets/txn, both ways", "steady", "packets_per_txn", "", 2,
                "(report)", None)
        compare("replication CPU s per 1000 txn", "steady", "replication_cpu_per_1k_txn", "",
                3, "(report)", None)
    # straitd memory and CPU: one value per daemon per repetition
    rss = [v["peak_rss"] / MIB for r in st for v in (r.get("straitd") or {}).values()
           if v.get("peak_rss")]
    cpu = [v["cpu_s"] for r in st for v in (r.get("straitd") or {}).values()
           if v.get("cpu_s") is not None]
    out.append(Row("straitd peak RSS (MiB), each daemon", "-", _cell(rss, "", 1), "-",
                   "< 64 MiB", "n/a" if not rss else ("met" if max(rss) < 64 else "MISSED")))
    out.append(Row("straitd CPU s per repetition, each daemon", "-", _cell(cpu, "", 2), "-",
                   "(report)", "-"))
    out += bigtxn_rows(bench)
    out += sync_scale_rows(bench)
    out.append(spool_row(bench))
    if "thin" in p["phases"]:
        nv = _values(nat, "thin", "sustained_tps")
        sv = _values(st, "thin", "sustained_tps")

        def lower_bound(runs):
            return any((r.get("thin") or {}).get("bounded") for r in runs)
        def cell(runs, vals):
            if not vals:
                return "n/a"
            c = _cell(vals, "", 0)
            if lower_bound(runs):
                est = _med(_values(runs, "thin", "link_capacity_estimate_tps"))
                c = ">=" + c + (f" (link ~{est:.0f})" if est else "")
            return c
        ncell, scell = cell(nat, nv), cell(st, sv)
        if not nv or not sv:
            verdict = "n/a"
        elif lower_bound(nat) and lower_bound(st):
            # two lower bounds: only the load generator was measured
            verdict = "inconclusive: neither link-bound"
        elif lower_bound(st) and _med(sv) >= _med(nv):
            verdict = "met"
        else:
            verdict = "met" if _med(sv) >= _med(nv) else "MISSED"
        out.append(Row("10 Mbit/s WAN: sustained tps (lag bounded)", ncell, scell,
                       _rfmt(_ratio(_med(nv), _med(sv))), "strait >= native", verdict))
        ne = _values(nat, "thin", "link_capacity_estimate_tps")
        se = _values(st, "thin", "link_capacity_estimate_tps")
        out.append(Row("10 Mbit/s WAN: tps the link carries at the measured B/txn",
                       _cell(ne, "", 0), _cell(se, "", 0), _rfmt(_ratio(_med(ne), _med(se))),
                       "(estimate)", "-"))
    return out


def bigtxn_rows(bench):
    """The big transaction: commit to applied for both, and the peak RSS
    of straitd over the phase (the larger daemon, per repetition)."""
    if "bigtxn" not in bench.p["phases"]:
        return []
    nat, st = bench.results["native"], bench.results["strait"]
    done = lambda v: not v.get("timed_out")        # noqa: E731
    nv = _values(nat, "bigtxn", "commit_to_applied_s", done)
    sv = _values(st, "bigtxn", "commit_to_applied_s", done)
    rows = f"{bench.p['big_rows']:,}"
    out = [Row(f"big transaction, {rows} rows: commit to applied (s)", _cell(nv, "", 2),
               _cell(sv, "", 2), _rfmt(_ratio(_med(nv), _med(sv))), "(report)", "-")]
    peaks = [max(v for v in r["bigtxn"]["peak_rss"].values() if v) / MIB for r in st
             if (r.get("bigtxn") or {}).get("peak_rss")
             and any((r["bigtxn"]["peak_rss"]).values())]
    result = "n/a" if not peaks else ("met" if max(peaks) < 64 else "MISSED")
    if peaks and any(not r["bigtxn"].get("peak_rss_reset") for r in st if r.get("bigtxn")):
        result += " (VmHWM not reset: includes earlier phases)"
    out.append(Row(f"big transaction, {rows} rows: straitd peak RSS (MiB), larger daemon", "-",
                   _cell(peaks, "", 1), "-", "< 64 MiB", result))
    return out


def _scale_name(bench, workload):
    if workload == "manytables":
        return f"initial sync, {bench.p['sync_tables']:,} tables"
    return f"initial sync, one table of {bench.p['sync_big_rows']:,} rows"


def sync_scale_rows(bench):
    """manytables and bigtable: strait against native with each number of
    table-sync workers, time to equal and WAN bytes."""
    out = []
    for workload, entry in (bench.sync_scale_result or {}).items():
        runs = entry.get("runs", {})
        done = lambda v: v.get("equal")            # noqa: E731
        st = runs.get("strait", [])
        for native in sorted(k for k in runs if k.startswith("native_w")):
            nat, workers = runs[native], native[len("native_w"):]
            for metric, key, scale, digits in (("time to equal (s)", "seconds", 1, 1),
                                               ("WAN MiB, both ways", "wan_bytes", MIB, 1)):
                nv = [r[key] / scale for r in nat if done(r)]
                sv = [r[key] / scale for r in st if done(r)]
                out.append(Row(f"{_scale_name(bench, workload)}: {metric}, native "
                               f"{workers} sync workers", _cell(nv, "", digits),
                               _cell(sv, "", digits), _rfmt(_ratio(_med(nv), _med(sv))),
                               "(report)", "-" if nv and sv else "n/a"))
    return out


def sync_scale_lines(bench):
    """Each run of manytables and bigtable, and what did not end equal."""
    lines = []
    for workload, entry in (bench.sync_scale_result or {}).items():
        src = entry.get("source") or {}
        head = f"  {_scale_name(bench, workload)}"
        if src:
            head += (f" ({src['tables']} tables, {src['rows']:,} rows, "
                     f"{src['source_bytes'] / MIB:.0f} MiB at the source)")
        lines.append(head + (f": {entry['error']}" if entry.get("error") else ":"))
        for system, runs in entry.get("runs", {}).items():
            for i, r in enumerate(runs):
                if r.get("error"):
                    lines.append(f"    {system:9} rep {i + 1}: {r['error']}")
                    continue
                secs = (f"{r['seconds']:.1f} s" if r["seconds"] is not None
                        else f"not equal within {r['timeout_s']:.0f} s")
                lines.append(f"    {system:9} rep {i + 1}: {secs}; veth to target "
                             f"{r['wan_bytes_to_target'] / MIB:.1f} MiB, to source "
                             f"{r['wan_bytes_to_source'] / MIB:.1f} MiB; equal {r['equal']}; "
                             f"CPU bench {r['cpu']['ours']:.1f} s, other {r['cpu']['other']:.1f} s")
    return lines


def bigtxn_lines(bench):
    """Each repetition's big transaction, both systems."""
    lines = []
    for system in ("native", "strait"):
        for r in bench.results[system]:
            b = r.get("bigtxn")
            if not b or "insert_s" not in b:
                continue
            applied = (f"applied {b['commit_to_applied_s']:.2f} s after its commit"
                       if b.get("commit_to_applied_s") is not None
                       else f"not applied within {b['timeout_s']:.0f} s of its commit")
            line = (f"  {system:6} rep {r['rep'] + 1}: {b['rows']} rows, "
                    f"{b['wal_bytes'] / MIB:.0f} MiB of WAL, inserted in {b['insert_s']:.1f} s, "
                    f"{applied}; veth to target {b['wan_bytes_to_target'] / MIB:.0f} MiB "
                    f"({b.get('wan_bytes_to_target_by_commit', 0) / MIB:.0f} MiB by the "
                    f"commit), to source {b['wan_bytes_to_source'] / MIB:.1f} MiB")
            if b.get("native_streaming"):
                line += f"; subscription streaming = {b['native_streaming']}"
            peak = {k: v / MIB for k, v in (b.get("peak_rss") or {}).items() if v}
            if peak:
                line += "; straitd peak RSS " + ", ".join(f"{k} {v:.1f} MiB"
                                                          for k, v in sorted(peak.items()))
            lines.append(line)
    return lines


def spool_row(bench):
    """straitd's peak RSS with a 1 GiB spool: the larger daemon, in the
    larger of the hold (the reader filling the spool) and the drain."""
    metric = "straitd peak RSS with 1 GiB spool backlog (MiB)"
    r = bench.spool_result
    if "spool" not in bench.p["phases"]:
        return Row(metric, "-", "n/a (spool phase not run)", "-", "< 64 MiB", "n/a")
    if not r or not r.get("supported"):
        why = (r or {}).get("error") or (r or {}).get("why") or "not measured"
        return Row(metric, "-", f"n/a ({why})", "-", "< 64 MiB", "n/a")
    if r["spool_bytes"] < 1024 * MIB:
        return Row(metric, "-", f"n/a (the spool reached {r['spool_bytes'] / MIB:.0f} MiB)", "-",
                   "< 64 MiB", "n/a")
    hold = {k: v / MIB for k, v in r["peak_rss_hold"].items() if v}
    drain = {k: v / MIB for k, v in r["peak_rss_drain"].items() if v}
    peak = max(list(hold.values()) + list(drain.values()))
    cell = (f"{peak:.1f} (hold: source {hold.get('source', 0):.1f}, sink {hold.get('sink', 0):.1f}; "
            f"drain: source {drain.get('source', 0):.1f}, sink {drain.get('sink', 0):.1f})")
    result = "met" if peak < 64 else "MISSED"
    if r.get("drain_s") is None:
        result += " (drain timed out)"
    return Row(metric, "-", cell, "-", "< 64 MiB", result)


def spool_lines(bench):
    r = bench.spool_result
    if not r or not r.get("supported"):
        return []
    drain = f"{r['drain_s']:.1f} s ({r['drain_mib_per_s']:.0f} MiB/s)" if r.get("drain_s") \
        else "did not finish in time"
    lines = [f"  wrote {r['written_bytes'] / MIB:.0f} MiB in {r['transactions']} transactions "
             f"({r['write_s']:.1f} s); the spool held {r['spool_bytes'] / MIB:.0f} MiB in "
             f"{r['spool_records']} records after {r['hold_s']:.1f} s; drained in {drain}",
             "  straitd RSS at the end of the hold: " + ", ".join(
                 f"{k} {v / MIB:.1f} MiB" for k, v in r["rss_end_of_hold"].items() if v)]
    if not r.get("peak_rss_reset"):
        lines.append("  (the kernel did not reset VmHWM: the drain peak includes the hold's)")
    return lines


def catchup_lines(bench):
    """Each repetition's catch-up: one load for both systems, drained one
    after the other, so the order and the waits are on record."""
    reps = {}
    for system in ("native", "strait"):
        for r in bench.results[system]:
            c = r.get("catchup") or {}
            if c.get("supported"):
                reps.setdefault(r["rep"], []).append((c["released"], system, c))
    lines = []
    for rep in sorted(reps):
        parts = []
        for released, system, c in sorted(reps[rep]):
            drain = f"{c['drain_s']:.1f} s" if c.get("drain_s") is not None else "did not finish"
            parts.append(f"{system} released {released}{'st' if released == 1 else 'nd'} "
                         f"({c['released_after_load_s']:.1f} s after the load), drained in "
                         f"{drain} ({c['rows_per_s']:.0f} rows/s)")
        c0 = reps[rep][0][2]
        lines.append(f"  rep {rep + 1}: {c0['backlog_txns']} txn ({c0['backlog_rows']} rows, "
                     f"{c0['backlog_wal_bytes'] / MIB:.0f} MiB of WAL) at "
                     f"{c0['load_tps'] or 0:.0f} tps; " + "; ".join(parts))
    return lines


def noise_rows(bench):
    """CPU used by processes other than the bench's, per phase (median s)."""
    lines = []
    for system in ("native", "strait"):
        for phase in ("sync", "steady", "catchup", "thin", "bigtxn"):
            vals = [(r.get(phase) or {}).get("cpu") for r in bench.results[system]]
            vals = [v for v in vals if v]
            if not vals:
                continue
            other = [v["other"] for v in vals]
            ours = [v["ours"] for v in vals]
            wall = [v["wall"] for v in vals]
            lines.append(f"  {system:6} {phase:8} wall {_cell(wall, 's', 1):>22}   "
                         f"bench CPU {_cell(ours, 's', 1):>22}   other CPU {_cell(other, 's', 1):>22}")
    return lines


def diagnostics(bench):
    """Where the bytes and the CPU of the steady phase went (medians)."""
    lines = []
    for system in ("native", "strait"):
        runs = [r["steady"] for r in bench.results[system] if r.get("steady")]
        if not runs:
            continue
        def med(f):
            vals = [f(r) for r in runs]
            vals = [v for v in vals if v is not None]
            return _med(vals)
        to_t = med(lambda r: r["wan_bytes_to_target"] / r["transactions"] if r["transactions"] else None)
        to_s = med(lambda r: r["wan_bytes_to_source"] / r["transactions"] if r["transactions"] else None)
        pk_t = med(lambda r: r["packets_to_target"] / r["transactions"] if r["transactions"] else None)
        pk_s = med(lambda r: r["packets_to_source"] / r["transactions"] if r["transactions"] else None)
        if to_t is not None:
            lines.append(f"  {system:6} per txn on the veth: to target {to_t:.0f} B in {pk_t:.2f} "
                         f"packets, to source {to_s:.0f} B in {pk_s:.2f} packets")
        labels = sorted({k for r in runs for k in (r.get("replication_cpu_by_process") or {})})
        parts = []
        for k in labels:
            v = med(lambda r: r["replication_cpu_by_process"].get(k, 0) / r["transactions"] * 1000
                    if r["transactions"] else None)
            parts.append(f"{k} {v:.3f}")
        if parts:
            lines.append(f"  {system:6} CPU s per 1000 txn: " + ", ".join(parts))
        if system == "strait":
            b = med(lambda r: (r.get("link") or {}).get("batches_sent"))
            raw = med(lambda r: ((r.get("link") or {}).get("per_txn") or {}).get("bytes_raw"))
            wire = med(lambda r: ((r.get("link") or {}).get("per_txn") or {}).get("bytes_wire"))
            tx = med(lambda r: r["transactions"])
            if b and raw and wire:
                lines.append(f"  strait batches: {tx / b:.1f} txn per batch, {raw:.0f} B/txn of "
                             f"pgoutput compressed to {wire:.0f} B/txn ({raw / wire:.1f}x)")
    return lines


def table(rs):
    head = ["metric", "native", "strait", "ratio", "target", "result"]
    allrows = [head] + [r.cols for r in rs]
    widths = [max(len(str(r[i])) for r in allrows) for i in range(len(head))]

    def line(r):
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep] + [line(r.cols) for r in rs])


def plot(bench, out):
    """lag-<system>-<phase>-r<rep>.dat and lag.png; returns the PNG path or None."""
    files = []
    for system, rep, phase, samples in bench.series:
        if phase not in ("steady", "catchup"):
            continue
        path = os.path.join(out, f"lag-{system}-{phase}-r{rep + 1}.dat")
        with open(path, "w") as f:
            for t, v in samples:
                f.write(f"{t:.3f} {v:.4f}\n")
        files.append((system, rep, phase, path))
    if not files:
        return None
    png = os.path.join(out, "lag.png")
    colors = {"native": ["#1f4e9c", "#4a7fd1", "#8fb3ea"],
              "strait": ["#b3261e", "#e0533f", "#f29b8c"]}
    phases = [ph for ph in ("steady", "catchup") if any(f[2] == ph for f in files)]
    script = [f"set terminal pngcairo size 1100,{420 * len(phases)} font 'sans,10'",
              f"set output '{png}'", f"set multiplot layout {len(phases)},1",
              "set grid", "set xlabel 'seconds since the phase started'",
              "set ylabel 'lag (s)'", "set key top left"]
    titles = {"steady": f"lag under pgbench -c 4 -T {bench.p['steady']} (sampled every 250 ms)",
              "catchup": f"catch-up: both links held {bench.p['backlog']} s under one load, "
                         "then released one after the other"}
    for ph in phases:
        plots = []
        for system, rep, phase, path in files:
            if phase != ph:
                continue
            c = colors[system][rep % 3]
            plots.append(f"'{path}' using 1:2 with lines lw 1.5 lc rgb '{c}' "
                         f"title '{system} rep {rep + 1}'")
        script.append(f"set title \"{titles[ph]}\"")
        script.append("plot " + ", ".join(plots))
    script.append("unset multiplot")
    gp = os.path.join(out, "lag.gnuplot")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    res = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if res.returncode != 0:
        return None
    return png


def write(bench, out, failed=None):
    os.makedirs(out, exist_ok=True)
    rs = rows(bench)
    png = plot(bench, out)
    p = bench.p
    lines = [f"strait vs native logical replication — {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"profile {bench.args.profile}, {p['reps']} repetition(s), "
             f"{os.cpu_count()} CPUs",
             "values: median [min-max] over repetitions; ratio = strait / native of the medians",
             "", table(rs), "",
             "how: lag = age of the oldest source WAL not yet applied at the target (the target's "
             "replication origin against the source's WAL position sampled every 50 ms); strait's "
             "initial sync time includes starting both straitd and their tunnel, native's tunnel "
             "is up before; sustained tps marked >= was not limited by the link (lag stayed "
             "under 2 s), so it measures pgbench on this machine, not the link", ""]
    lines.append("CPU during each phase (bench = our servers, daemons, tunnels and pgbench; "
                 "other = the rest of the machine):")
    lines += noise_rows(bench)
    diag = diagnostics(bench)
    if diag:
        lines += ["", "where the steady phase's bytes and CPU went (medians):"] + diag
    cu = catchup_lines(bench)
    if cu:
        lines += ["", f"catch-up: both held during one load of {p['backlog']} s, then released "
                  "one after the other (each drain timed alone from its own release while the "
                  "other stays held):"] + cu
    bt = bigtxn_lines(bench)
    if bt:
        lines += ["", "big transaction (one INSERT, each system alone; commit to applied: from "
                  "the INSERT returning on the source until the target has every row):"] + bt
    ss = sync_scale_lines(bench)
    if ss:
        lines += ["", "initial sync at scale (once after the repetitions, each system alone with "
                  "a fresh target; time from its start until the target has every table's "
                  "rows; native with 2 and with 4 table-sync workers):"] + ss
    sp = spool_lines(bench)
    if sp:
        lines += ["", "spool phase (strait only, once):"] + sp
    errors = [f"  {s} rep {r['rep'] + 1}: {r['error']}" for s in ("native", "strait")
              for r in bench.results[s] if r.get("error")]
    for s in ("native", "strait"):
        for r in bench.results[s]:
            lag_err = (r.get("steady") or {}).get("lag_error")
            if lag_err:
                errors.append(f"  {s} rep {r['rep'] + 1}: lag sampler: {lag_err}")
            c = r.get("catchup") or {}
            if c and not c.get("supported"):
                errors.append(f"  {s} rep {r['rep'] + 1}: catch-up not measured: {c.get('why')}")
            elif c.get("timed_out"):
                errors.append(f"  {s} rep {r['rep'] + 1}: catch-up did not finish in time "
                              "(rate is what was applied)")
            if (r.get("bigtxn") or {}).get("timed_out"):
                errors.append(f"  {s} rep {r['rep'] + 1}: the big transaction was not applied "
                              f"within {r['bigtxn']['timeout_s']:.0f} s")
    errors += [f"  skipped {s}" for s in bench.skipped]
    if errors:
        lines += ["", "notes:"] + errors
    if failed:
        lines += ["", f"THE BENCH DID NOT FINISH: {failed}"]
    lines += ["", f"lag plot: {png}" if png else "lag plot: not drawn (no samples or gnuplot failed)",
              f"elapsed: {(time.monotonic() - bench.started) / 60:.1f} min"]
    text = "\n".join(lines)
    with open(os.path.join(out, "results.txt"), "w") as f:
        f.write(text + "\n")
    doc = {"profile": bench.args.profile, "parameters": {k: v for k, v in p.items()},
           "failed": failed, "table": [dict(zip(["metric", "native", "strait", "ratio", "target",
                                                 "result"], r.cols)) for r in rs],
           "runs": bench.results, "spool": bench.spool_result,
           "sync_scale": bench.sync_scale_result, "lag_png": png,
           "elapsed_s": time.monotonic() - bench.started}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=2, default=str)
    return text
