"""The bench's output: the comparison table (stdout and OUT/results.txt),
every measured number (OUT/results.json), the lag over time (OUT/lag.png for
the clean link, OUT/lag-PHASE.png for each WAN phase, both systems on one
chart, drawn by gnuplot from OUT/lag-*.dat) and the headline ratios as a bar
chart (OUT/ratios.png).

Each row gives the median over the repetitions with [min-max], the ratio
strait / native of the medians, the target and whether it was met. Nothing
is left out: a phase that could not be measured says why."""

import json
import os
import statistics
import subprocess
import time

MIB = 1024 * 1024
# The targets of the WAN phases: strait's sustained tps on each thin link as
# a multiple of native's; its catch-up rate on the far and lossy links
THIN_TARGETS = {"thin": 5, "thin512": 12}
CATCHUP_TARGET = 1.5
# A chart per WAN phase: its lag series (bench.series), one panel each
WAN_PLOTS = {"thin": ("thin-fixed", "thin-sustained"),
             "thin512": ("thin512-fixed", "thin512-sustained"),
             "far": ("far", "far_catchup"), "lossy": ("lossy", "lossy_catchup")}
COLORS = {"native": ["#1f4e9c", "#4a7fd1", "#8fb3ea"],
          "strait": ["#b3261e", "#e0533f", "#f29b8c"]}


def _values(runs, phase, key, cond=None):
    """The phase's value of key (a dotted path into the phase's result)
    in each run that has it, and passes cond."""
    out = []
    for r in runs:
        v = (r.get(phase) or {})
        if cond and not cond(v):
            continue
        for part in key.split("."):
            v = (v or {}).get(part)
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


def _results(bench, phase):
    """{system: runs} that hold phase: the repetitions, or for the clean
    catch-up its own runs after them (Bench.run_catchup)."""
    if phase == "catchup":
        return {s: [{"catchup": c, "rep": c.get("rep", i)}
                    for i, c in enumerate(bench.catchup_results[s])]
                for s in ("native", "strait")}
    return bench.results


def _paired_ratios(bench, phase, key, cond=None):
    """strait / native of key in each repetition both have (and pass cond)."""
    res = _results(bench, phase)
    by_rep = {}
    for name in ("native", "strait"):
        for r in res[name]:
            v = _values([r], phase, key, cond)
            if v:
                by_rep.setdefault(r.get("rep"), {})[name] = v[0]
    return [v["strait"] / v["native"] for v in by_rep.values()
            if v.get("native") and "strait" in v]


def _compare(bench, metric, phase, key, unit, digits, target, test, cond=None, why_na=None):
    """A row of native against strait: median [min-max] of key in phase,
    the ratio of the medians, and test(native, strait, ratio) as met or
    MISSED (None: a number to report, no target)."""
    res = _results(bench, phase)
    nat, st = res["native"], res["strait"]
    nv, sv = _values(nat, phase, key, cond), _values(st, phase, key, cond)
    nm, sm = _med(nv), _med(sv)
    r = _ratio(nm, sm)
    if nm is None or sm is None:
        result = why_na or "n/a"
    elif test is None:
        result = "-"
    else:
        result = "met" if test(nm, sm, r) else "MISSED"
    return Row(metric, _cell(nv, unit, digits), _cell(sv, unit, digits), _rfmt(r), target,
               result)


def _catchup_na(bench, phase):
    """Why a catch-up row has no strait number, if strait's hold never held."""
    st = _results(bench, phase)["strait"]
    if st and not any((r.get(phase) or {}).get("supported") for r in st):
        return "n/a (not supported yet)"
    return None


def rows(bench):
    st = bench.results["strait"]
    p = bench.p
    out = []

    def compare(*args, **kw):
        out.append(_compare(bench, *args, **kw))

    if "steady" in p["phases"]:
        compare(f"WAN bytes/txn, both ways (pgbench -c 4 -T {p['steady']})", "steady",
                "bytes_per_txn", "", 0, "strait <= 0.15x", lambda n, s, r: r <= 0.15)
    if "sync" in p["phases"]:
        compare(f"initial sync, pgbench -i -s {p['scale']} (s)", "sync", "seconds", "", 2,
                "strait <= native", lambda n, s, r: s <= n)
    if "catchup" in p["phases"]:
        why = _catchup_na(bench, "catchup")
        done = lambda v: v.get("supported") and not v.get("timed_out")   # noqa: E731
        pairs = _paired_ratios(bench, "catchup", "rows_per_s", done)
        # the medians 1.5x apart, and strait 1.2x native in the worst run: each
        # run is one backlog both drain from the same tables, one after the
        # other, so its ratio is the fair one (the rates of both drift from
        # run to run with the database's state, together)
        compare(f"catch-up of {p['catchup_txns']:,} transactions held (rows/s)", "catchup",
                "rows_per_s", "", 0, "strait >= 1.5x, min >= 1.2x",
                lambda n, s, r: r >= 1.5 and bool(pairs) and min(pairs) >= 1.2, cond=done,
                why_na=why)
        if why:
            out[-1].cols[2] = "n/a (not supported yet)"
        out.append(Row("catch-up: strait / native in each run (same backlog)", "",
                       _cell(pairs), "", "min >= 1.2x",
                       "-" if not pairs else "met" if min(pairs) >= 1.2 else "MISSED"))
        compare("catch-up: apply CPU on the target per 1,000 transactions (s)", "catchup",
                "apply_cpu_per_1000_txns", "", 3, "(report)", None, cond=done)
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
    out += wan_rows(bench)
    return out


def thin_rows(bench, phase):
    """A thin link: the sustained tps against its target, what the link
    carries at the measured bytes per transaction, the lag at the fixed load.

    A sustained rate whose lag stayed bounded is a lower bound (the load
    offered no more): a ratio with strait's lower bound
    over native's link-bound rate is a lower bound too, met if it reaches
    the target and inconclusive if not; the other way round it is an upper
    bound, MISSED if under the target."""
    nat, st = bench.results["native"], bench.results["strait"]
    label = f"{bench.thin_links[phase]['label']} WAN"
    k = THIN_TARGETS[phase]
    nv, sv = _values(nat, phase, "sustained_tps"), _values(st, phase, "sustained_tps")

    def lower_bound(runs):
        return any((r.get(phase) or {}).get("bounded") for r in runs)

    def cell(runs, vals):
        if not vals:
            return "n/a"
        c = _cell(vals, "", 0)
        if lower_bound(runs):
            est = _med(_values(runs, phase, "link_capacity_estimate_tps"))
            c = ">=" + c + (f" (link ~{est:.0f})" if est else "")
        return c
    r = _ratio(_med(nv), _med(sv))
    ratio = _rfmt(r)
    nlow, slow = lower_bound(nat), lower_bound(st)
    if r is None:
        verdict = "n/a"
    elif nlow and slow:
        verdict = "inconclusive: neither link-bound"
    elif slow:
        ratio = ">=" + ratio
        verdict = "met" if r >= k else "inconclusive: strait not link-bound"
    elif nlow:
        ratio = "<=" + ratio
        verdict = "MISSED" if r < k else "inconclusive: native not link-bound"
    else:
        verdict = "met" if r >= k else "MISSED"
    out = [Row(f"{label}: sustained tps (lag bounded)", cell(nat, nv), cell(st, sv), ratio,
               f"strait >= {k}x", verdict)]
    ne = _values(nat, phase, "link_capacity_estimate_tps")
    se = _values(st, phase, "link_capacity_estimate_tps")
    out.append(Row(f"{label}: tps the link carries at the measured B/txn", _cell(ne, "", 0),
                   _cell(se, "", 0), _rfmt(_ratio(_med(ne), _med(se))), "(estimate)", "-"))
    rate = bench.thin_rate(phase)
    for q in ("p50", "p99"):
        out.append(_compare(bench, f"{label}: lag {q} at {rate} tps (s)", phase,
                            f"fixed.lag_{q}", "", 3, "(report)", None))
    return out


def impaired_rows(bench, phase):
    """far or lossy: the lag at the fixed load (p99 against native's) and
    the catch-up after the hold."""
    p = bench.p
    label = f"{phase} WAN ({bench.wan_links[phase]['label']})"
    key = f"{phase}_catchup"
    why = _catchup_na(bench, key)
    out = [_compare(bench, f"{label}: lag p50 at {p['wan_rate']} tps (s)", phase, "lag_p50",
                    "", 3, "(report)", None),
           _compare(bench, f"{label}: lag p99 at {p['wan_rate']} tps (s)", phase, "lag_p99",
                    "", 3, "strait <= native", lambda n, s, r: s <= n),
           _compare(bench, f"{label}: catch-up after {p['hold']}s held at {p['wan_rate']} tps "
                    "(rows/s)", key, "rows_per_s", "", 0, f"strait >= {CATCHUP_TARGET}x",
                    lambda n, s, r: r >= CATCHUP_TARGET,
                    cond=lambda v: v.get("supported") and not v.get("timed_out"), why_na=why)]
    if why:
        out[-1].cols[2] = why
    return out


def wan_rows(bench):
    """The rows of the WAN phases the run has: thin, thin512, far, lossy,
    farsync."""
    ph = bench.p["phases"]
    out = []
    for phase in ("thin", "thin512"):
        if phase in ph:
            out += thin_rows(bench, phase)
    for phase in ("far", "lossy"):
        if phase in ph:
            out += impaired_rows(bench, phase)
    if "farsync" in ph:
        out.append(_compare(bench, f"far WAN ({bench.wan_links['far']['label']}): initial "
                            f"sync, pgbench -i -s {bench.p['scale']} (s)", "farsync", "seconds",
                            "", 2, "strait <= native", lambda n, s, r: s <= n))
    return out


def headlines(bench):
    """Every targeted comparison of the run as strait's advantage, the way
    round where more is better (tps and catch-up rates: strait / native;
    bytes, lag and sync time: native / strait), with its target: (label,
    advantage, target, bound), bound ">=" when strait's thin-link rate
    was not link-bound and native's was (the ratio is a lower bound)."""
    ph = bench.p["phases"]
    done = lambda v: v.get("supported") and not v.get("timed_out")   # noqa: E731
    specs = []     # label, phase, key, more is better, target, cond
    if "steady" in ph:
        specs += [("bytes/txn", "steady", "bytes_per_txn", False, 1 / 0.15, None),
                  ("lag p99", "steady", "lag_p99", False, 1, None)]
    if "sync" in ph:
        specs.append(("sync", "sync", "seconds", False, 1, None))
    if "catchup" in ph:
        specs.append(("catch-up", "catchup", "rows_per_s", True, CATCHUP_TARGET, done))
    for phase in ("thin", "thin512"):
        if phase in ph:
            specs.append((f"{bench.thin_links[phase]['label']} tps", phase, "sustained_tps",
                          True, THIN_TARGETS[phase], None))
    for phase in ("far", "lossy"):
        if phase in ph:
            specs += [(f"{phase} lag p99", phase, "lag_p99", False, 1, None),
                      (f"{phase} catch-up", f"{phase}_catchup", "rows_per_s", True,
                       CATCHUP_TARGET, done)]
    if "farsync" in ph:
        specs.append(("far sync", "farsync", "seconds", False, 1, None))
    def bounded(runs, phase):
        return any((r.get(phase) or {}).get("bounded") for r in runs)
    out = []
    for label, phase, key, more, target, cond in specs:
        res = _results(bench, phase)
        nat, st = res["native"], res["strait"]
        n, s = _med(_values(nat, phase, key, cond)), _med(_values(st, phase, key, cond))
        adv = _ratio(n, s) if more else _ratio(s, n)
        bound = ">=" if bounded(st, phase) and not bounded(nat, phase) else ""
        if adv:
            out.append((label, adv, target, bound))
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


def _over(w):
    """How many lag samples were 50 ms and 100 ms or more behind, of all."""
    if w.get("lag_over_50ms") is None:
        return "samples behind n/a"
    return (f"samples >= 50 ms {w['lag_over_50ms']}, >= 100 ms {w['lag_over_100ms']} "
            f"of {w['lag_samples']}")


def catchup_lines(bench, key="catchup"):
    """Each repetition's catch-up (key: catchup, far_catchup or
    lossy_catchup): one load for both systems, drained one after the
    other, so the order and the waits are on record."""
    reps = {}
    for system in ("native", "strait"):
        for r in _results(bench, key)[system]:
            c = r.get(key) or {}
            if c.get("supported"):
                reps.setdefault(r["rep"], []).append((c["released"], system, c))
    lines = []
    for rep in sorted(reps):
        parts = []
        for released, system, c in sorted(reps[rep]):
            drain = f"{c['drain_s']:.1f} s" if c.get("drain_s") is not None else "did not finish"
            cpu = c.get("apply_cpu_per_1000_txns")
            par = c.get("parallel")
            parts.append(f"{system} released {released}{'st' if released == 1 else 'nd'} "
                         f"({c['released_after_load_s']:.1f} s after the load), drained in "
                         f"{drain} ({c['rows_per_s']:.0f} rows/s"
                         + (f", apply CPU {cpu:.2f} s per 1,000 txn" if cpu is not None else "")
                         + (f", {par['workers']} apply sessions: {par['side_by_side_segments']} "
                            f"of {par['segments']} segments side by side, the rest on one "
                            f"session (hot rows)" if par else "")
                         + ")")
        c0 = reps[rep][0][2]
        lines.append(f"  rep {rep + 1}: {c0['backlog_txns']} txn ({c0['backlog_rows']} rows, "
                     f"{c0['backlog_wal_bytes'] / MIB:.0f} MiB of WAL) at "
                     f"{c0['load_tps'] or 0:.0f} tps; " + "; ".join(parts))
    return lines


def _f(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def _relay(stats):
    """The relay's statistics in a few words."""
    if not stats:
        return "relay: no statistics"
    lost = stats["dropped_loss"] / stats["received"] * 100 if stats["received"] else 0
    return (f"relay: {stats['received']} datagrams, {stats['dropped_loss']} dropped for loss "
            f"({lost:.2f}%), {stats['dropped_queue']} for its queue")


def wan_lines(bench):
    """Each repetition's WAN phases: what the thin links carried, the
    round trip and the loss the relay made, the far-link syncs."""
    lines = []
    for phase, link in bench.thin_links.items():
        for system in ("native", "strait"):
            for r in bench.results[system]:
                t = r.get(phase)
                if not t:
                    continue
                f = t["fixed"]
                per = t.get("busier_direction_bytes_per_txn")
                lines.append(f"  {link['label']:10} {system:6} rep {r['rep'] + 1}: at {f['rate']} "
                             f"tps ({f['transactions']} txn) lag p50 {_f(f['lag_p50'])} s, p99 "
                             f"{_f(f['lag_p99'])} s, max {_f(f['lag_max'])} s; then: "
                             f"offered {t['offered_tps']:.0f} tps, arrived "
                             f"{t['arrived_tps']:.0f} tps, lag at the end {_f(t['lag_end_s'], 1)} s"
                             + (f", {per:.0f} B/txn the busier way" if per else ""))
    for phase in bench.wan_links:
        for system in ("native", "strait"):
            for r in bench.results[system]:
                w = r.get(phase)
                if not w:
                    continue
                lines.append(f"  {phase:10} {system:6} rep {r['rep'] + 1}: ping "
                             f"{_f(w['rtt_ms'], 0)} ms; at {w['rate']} tps ({w['transactions']} "
                             f"txn) lag p50 {_f(w['lag_p50'])} s, p99 {_f(w['lag_p99'])} s, max "
                             f"{_f(w['lag_max'])} s, {_over(w)}; {_relay(w.get('relay'))} "
                             "(both tunnels, the whole phase)")
        cu = catchup_lines(bench, f"{phase}_catchup")
        if cu:
            lines += [f"  {phase} catch-up:"] + ["  " + line for line in cu]
    for system in ("native", "strait"):
        for r in bench.results[system]:
            fs = r.get("farsync")
            if fs:
                lines.append(f"  far sync   {system:6} rep {r['rep'] + 1}: "
                             f"{_f(fs['seconds'], 2)} s; ping {_f(fs['rtt_ms'], 0)} ms after it; "
                             f"{_relay(fs.get('relay'))}")
    return lines


def noise_rows(bench):
    """CPU used by processes other than the bench's, per phase (median s)."""
    lines = []
    for system in ("native", "strait"):
        for phase in ("sync", "farsync", "steady", "catchup", "thin", "thin512", "far",
                      "far_catchup", "lossy", "lossy_catchup", "bigtxn"):
            vals = [(r.get(phase) or {}).get("cpu") for r in _results(bench, phase)[system]]
            vals = [v for v in vals if v]
            if not vals:
                continue
            other = [v["other"] for v in vals]
            ours = [v["ours"] for v in vals]
            wall = [v["wall"] for v in vals]
            lines.append(f"  {system:6} {phase:13} wall {_cell(wall, 's', 1):>22}   "
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


def _lag_plot(bench, out, name, panels):
    """One PNG of lag over time, a panel per (series phase, title), every
    system and repetition in each (native blue, strait red, a shade per
    repetition); the samples go to lag-<system>-<phase>-r<rep>.dat. The
    PNG's path, or None when there was nothing to draw or gnuplot failed."""
    files = []
    for system, rep, phase, samples in bench.series:
        if phase not in dict(panels):
            continue
        path = os.path.join(out, f"lag-{system}-{phase}-r{rep + 1}.dat")
        with open(path, "w") as f:
            for t, v in samples:
                f.write(f"{t:.3f} {v:.4f}\n")
        files.append((system, rep, phase, path))
    panels = [(ph, title) for ph, title in panels if any(f[2] == ph for f in files)]
    if not panels:
        return None
    png = os.path.join(out, name)
    script = [f"set terminal pngcairo size 1100,{420 * len(panels)} font 'sans,10'",
              f"set output '{png}'", f"set multiplot layout {len(panels)},1",
              "set grid", "set xlabel 'seconds since the phase started'",
              "set ylabel 'lag (s)'", "set key top left"]
    for ph, title in panels:
        plots = [f"'{path}' using 1:2 with lines lw 1.5 lc rgb '{COLORS[system][rep % 3]}' "
                 f"title '{system} rep {rep + 1}'"
                 for system, rep, phase, path in files if phase == ph]
        script.append(f"set title \"{title}\"")
        script.append("plot " + ", ".join(plots))
    script.append("unset multiplot")
    gp = os.path.join(out, os.path.splitext(name)[0] + ".gnuplot")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    res = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    return png if res.returncode == 0 else None


def plot(bench, out):
    """lag.png: the clean link's steady phase and catch-up."""
    p = bench.p
    return _lag_plot(bench, out, "lag.png", [
        ("steady", f"lag under pgbench -c 4 -T {p['steady']} (sampled every 250 ms)"),
        ("catchup", f"catch-up: both links held {p['backlog']} s under one load, "
                    "then released one after the other")])


def wan_plots(bench, out):
    """lag-<phase>.png for each WAN phase of the run: {phase: path}."""
    p = bench.p
    titles = {}
    for phase, link in bench.thin_links.items():
        titles[f"{phase}-fixed"] = (f"{link['label']} (tc tbf each way): lag at a fixed "
                                    f"{bench.thin_rate(phase)} tps")
        titles[f"{phase}-sustained"] = (f"{link['label']}: lag under {link['offer']} tps "
                                        f"for {p['thin']} s (rising: the link is the limit)")
    for phase, link in bench.wan_links.items():
        titles[phase] = (f"{phase} WAN ({link['label']}), both systems at once: lag at "
                         f"{p['wan_rate']} tps")
        titles[f"{phase}_catchup"] = (f"{phase} WAN: both held {p['hold']} s under "
                                      f"{p['wan_rate']} tps, then released one after the other")
    pngs = {}
    for phase, series in WAN_PLOTS.items():
        if phase in p["phases"]:
            pngs[phase] = _lag_plot(bench, out, f"lag-{phase}.png",
                                    [(s, titles[s]) for s in series])
    return pngs


def ratio_plot(bench, out):
    """ratios.png: the headline ratios as bars (strait's advantage, more
    is better, log scale): green where the target is met, red where it is
    missed, grey where a lower bound falls short of it (inconclusive);
    each target a mark. Its path or None."""
    heads = headlines(bench)
    if not heads:
        return None
    dat = os.path.join(out, "ratios.dat")
    with open(dat, "w") as f:
        for label, adv, target, bound in heads:
            color = 0x2e7d32 if adv >= target else (0x9e9e9e if bound else 0xb3261e)
            label += f" ({bound})" if bound else ""
            f.write(f"\"{label}\" {adv:.4f} {target:.4f} {color}\n")
    values = [v for h in heads for v in h[1:3]]
    png = os.path.join(out, "ratios.png")
    script = [f"set terminal pngcairo size {max(760, 100 * len(heads))},560 font 'sans,10'",
              f"set output '{png}'", "set logscale y", "set grid ytics",
              f"set yrange [{min(values + [1]) / 1.6}:{max(values) * 1.6}]",
              "set style fill solid 0.75 border -1", "set boxwidth 0.6",
              "set xtics rotate by -30 scale 0", "set key top left",
              "set ylabel \"strait's advantage (x)\"",
              "set title \"headline ratios, medians of the runs, more is better\\n"
              "tps and catch-up: strait/native; bytes, lag, sync time: native/strait\\n"
              "green: target met; red: missed; grey: a lower bound (>=) short of it\"",
              f"set xrange [-0.6:{len(heads) - 0.4}]",
              f"plot '{dat}' using 0:2:4:xtic(1) with boxes lc rgb variable notitle, "
              f"'' using 0:2:(sprintf('%.2f', $2)) with labels offset 0,0.8 notitle, "
              f"'' using 0:3 with points pt 9 ps 2 lc rgb 'black' title 'target', "
              f"1 with lines dt 2 lc rgb '#555555' title 'parity'"]
    gp = os.path.join(out, "ratios.gnuplot")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    res = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    return png if res.returncode == 0 else None


def write(bench, out, failed=None):
    os.makedirs(out, exist_ok=True)
    rs = rows(bench)
    png = plot(bench, out)
    pngs = wan_plots(bench, out)
    ratios_png = ratio_plot(bench, out)
    p = bench.p
    lines = [f"strait vs native logical replication — {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"profile {bench.args.profile}, {p['reps']} repetition(s), "
             f"{os.cpu_count()} CPUs",
             "values: median [min-max] over repetitions; ratio = strait / native of the medians",
             "", table(rs), "",
             "how: lag = age of the oldest source WAL not yet applied at the target (the target's "
             "replication origin against the source's WAL position sampled every 50 ms, 10 ms in the "
             "fixed-rate lag windows of the thin, far and lossy links); strait's "
             "initial sync time includes starting both straitd and their tunnel, native's tunnel "
             "is up before; sustained tps marked >= was not limited by the link (lag stayed "
             "under 2 s, on the thin links under a tenth of the window), so it measures the load "
             "offered, not the link"
             + ("; the clean phases (sync, steady, catchup, bigtxn) ran in "
                f"{min(p['clean_reps'], p['reps'])} of the repetitions, the WAN phases in each; "
                "thin links: tc tbf on both veth ends, each system alone; far and lossy: both "
                "tunnels through tests/tools/udp_impair (delay and loss each way), both systems "
                "at once; farsync: the far link from the system's start"
                if set(WAN_PLOTS) & set(p["phases"]) or "farsync" in p["phases"] else ""), ""]
    lines.append("CPU during each phase (bench = our servers, daemons, tunnels and pgbench; "
                 "other = the rest of the machine):")
    lines += noise_rows(bench)
    diag = diagnostics(bench)
    if diag:
        lines += ["", "where the steady phase's bytes and CPU went (medians):"] + diag
    cu = catchup_lines(bench)
    if cu:
        lines += ["", f"catch-up: both held while {p['catchup_txns']:,} tpcb-like transactions "
                  "commit (generated inside the source server), then released one after the "
                  "other, the order alternating (each drain timed alone from its own release "
                  "while the other stays held; apply CPU: the target's apply worker, or the "
                  "sink's straitd and its target sessions):"] + cu
    if bench.catchup_error:
        lines += [f"  catch-up stopped: {bench.catchup_error}"]
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
    wl = wan_lines(bench)
    if wl:
        lines += ["", "WAN phases, each repetition (catch-ups: both held under the fixed load, "
                  "released one after the other):"] + wl
    errors = [f"  {s} rep {r['rep'] + 1}: {r['error']}" for s in ("native", "strait")
              for r in bench.results[s] if r.get("error")]
    for s in ("native", "strait"):
        for r in bench.results[s]:
            for phase, lag_err in (("steady", (r.get("steady") or {}).get("lag_error")),
                                   ("thin", ((r.get("thin") or {}).get("fixed") or {})
                                    .get("lag_error")),
                                   ("thin512", ((r.get("thin512") or {}).get("fixed") or {})
                                    .get("lag_error")),
                                   ("far", (r.get("far") or {}).get("lag_error")),
                                   ("lossy", (r.get("lossy") or {}).get("lag_error"))):
                if lag_err:
                    errors.append(f"  {s} rep {r['rep'] + 1}: {phase} lag sampler: {lag_err}")
            for key in ("far_catchup", "lossy_catchup"):
                c = r.get(key) or {}
                name = key.replace("_", " ").replace("catchup", "catch-up")
                if c and not c.get("supported"):
                    errors.append(f"  {s} rep {r['rep'] + 1}: {name} not measured: "
                                  f"{c.get('why')}")
                elif c.get("timed_out"):
                    errors.append(f"  {s} rep {r['rep'] + 1}: {name} did not finish in time "
                                  "(rate is what was applied)")
            if (r.get("bigtxn") or {}).get("timed_out"):
                errors.append(f"  {s} rep {r['rep'] + 1}: the big transaction was not applied "
                              f"within {r['bigtxn']['timeout_s']:.0f} s")
    errors += [f"  skipped {s}" for s in bench.skipped]
    if errors:
        lines += ["", "notes:"] + errors
    if failed:
        lines += ["", f"THE BENCH DID NOT FINISH: {failed}"]
    lines += [""] + [f"{what}: {path}" if path else
                     f"{what}: not drawn (no samples or gnuplot failed)"
                     for what, path in ([("lag plot", png)] if {"steady", "catchup"}
                                        & set(p["phases"]) else [])
                     + [(f"lag plot, {phase}", path) for phase, path in pngs.items()]
                     + ([("headline ratios", ratios_png)] if headlines(bench) else [])]
    lines.append(f"elapsed: {(time.monotonic() - bench.started) / 60:.1f} min")
    text = "\n".join(lines)
    with open(os.path.join(out, "results.txt"), "w") as f:
        f.write(text + "\n")
    doc = {"profile": bench.args.profile, "parameters": {k: v for k, v in p.items()},
           "failed": failed, "table": [dict(zip(["metric", "native", "strait", "ratio", "target",
                                                 "result"], r.cols)) for r in rs],
           "runs": bench.results, "spool": bench.spool_result,
           "sync_scale": bench.sync_scale_result, "lag_png": png, "wan_pngs": pngs,
           "ratios_png": ratios_png,
           "elapsed_s": time.monotonic() - bench.started}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=2, default=str)
    return text
