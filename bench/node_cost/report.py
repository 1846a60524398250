"""Printing the results as tables, with ratios ours/upstream and overhead over
the delegates called directly. Formatting only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.node_cost.memory import Footprint
from bench.node_cost.products import LOCAL_SUPERVISOR
from bench.node_cost.stats import median_or_nan, percentile, ratio, summarize
from bench.node_cost.workload import Latency, Storm, StormPhase

PRODUCTS = ("ours", "upstream")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def latency_table(lat: Latency, runners: Sequence[str], sizes: Sequence[int]) -> list[str]:
    head = f"{'verb':4} {'nets':>4} {'runner':9} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}"
    lines = [f"{head} {'over direct p50':>16}"]
    for verb in ("ADD", "DEL"):
        for size in sizes:
            direct = summarize(lat.samples.get(("direct", verb, size), []))
            for runner in runners:
                s = summarize(lat.samples.get((runner, verb, size), []))
                over = "" if runner == "direct" else f"{s.p50 - direct.p50:+16.1f}"
                lines.append(f"{verb:4} {size:4} {runner:9} {s.n:4} {s.p50:8.1f} {s.p90:8.1f} {s.max:8.1f} {over}")
    return lines


def latency_ratios(lat: Latency, sizes: Sequence[int]) -> list[str]:
    lines = []
    for verb in ("ADD", "DEL"):
        parts = []
        for size in sizes:
            ours = summarize(lat.samples.get(("ours", verb, size), []))
            theirs = summarize(lat.samples.get(("upstream", verb, size), []))
            direct = summarize(lat.samples.get(("direct", verb, size), []))
            overhead = ratio(ours.p50 - direct.p50, theirs.p50 - direct.p50)
            parts.append(f"{size} nets {ratio(ours.p50, theirs.p50):.2f} (overhead {overhead:.2f})")
        lines.append(f"ratio ours/upstream {verb} p50: " + "; ".join(parts))
    return lines


def _pooled(phases: Sequence[StormPhase]) -> tuple[float, float, int]:
    rates = [p.pods_per_second for p in phases]
    latencies = [x for p in phases for x in p.latencies]
    p99 = percentile([x * 1000 for x in latencies], 0.99) if latencies else float("nan")
    return median_or_nan(rates), p99, sum(len(p.failures) for p in phases)


def storm_table(storms: dict[str, Storm]) -> list[str]:
    per_verb = [f"{verb + ' pods/s':>10} {verb + ' p99 ms':>10} {'fail':>4}" for verb in ("ADD", "DEL")]
    lines = [f"{'runner':9} {' '.join(per_verb)}"]
    for label, st in storms.items():
        a_rate, a_p99, a_fail = _pooled(st.add)
        d_rate, d_p99, d_fail = _pooled(st.delete)
        lines.append(f"{label:9} {a_rate:10.1f} {a_p99:10.1f} {a_fail:4} {d_rate:10.1f} {d_p99:10.1f} {d_fail:4}")
    if all(p in storms for p in PRODUCTS):
        ours, theirs = storms["ours"], storms["upstream"]
        lines.append(
            f"ratio ours/upstream throughput: ADD {ratio(_pooled(ours.add)[0], _pooled(theirs.add)[0]):.2f}, "
            f"DEL {ratio(_pooled(ours.delete)[0], _pooled(theirs.delete)[0]):.2f} (>= 1 is better)"
        )
    first_failures = [f for st in storms.values() for p in (*st.add, *st.delete) for f in p.failures][:3]
    lines += [f"  failure: {f[:300]}" for f in first_failures]
    return lines


def total(prints: dict[str, Footprint]) -> Footprint:
    out = Footprint.zero()
    for name, fp in prints.items():
        if name != LOCAL_SUPERVISOR:
            out = out + fp
    return out


def memory_table(snapshots: dict[str, dict[str, Any]]) -> list[str]:
    """snapshots[product] = {"idle": {...}, "warm": {...}, "final": {...}, "warm_cycles": n, "final_cycles": n}."""
    columns = ("idle RSS", "idle PSS", "RSS", "PSS", "PSS anon")
    head = f"{'process':20} " + " ".join(f"{c:>8}" for c in columns)
    lines = [
        f"{head} {'thr':>4} {'anon growth/1000':>16} {'CPU ms/cycle':>12}"
        "   (MiB; RSS, PSS, threads after the last cycle; growth and CPU over the aging cycles)"
    ]
    totals: dict[str, tuple[Footprint, Footprint, float]] = {}
    for product, snap in snapshots.items():
        idle, warm, final = snap["idle"], snap["warm"], snap["final"]
        span = max(1, snap["final_cycles"] - snap["warm_cycles"])
        rows = [(f"{product}/{name}", idle.get(name), warm.get(name), final[name]) for name in final]
        rows.append((f"{product} total", total(idle), total(warm), total(final)))
        for name, i, w, f in rows:
            i = i or Footprint.zero()
            # Anonymous memory: file-backed PSS moves whenever other processes on the host map or
            # unmap the same files (the interpreter, shared libraries), leak or not.
            growth = (f.pss_anon_kib - w.pss_anon_kib) * 1000 / span / 1024 if w else float("nan")
            cpu = (f.cpu_ms - w.cpu_ms) / span if w else float("nan")
            lines.append(
                f"{name:20} {mib(i.rss_kib):>8} {mib(i.pss_kib):>8} {mib(f.rss_kib):>8} {mib(f.pss_kib):>8} "
                f"{mib(f.pss_anon_kib):>8} {f.threads:4} {growth:16.2f} {cpu:12.2f}"
            )
        totals[product] = (total(idle), total(final), (total(final).cpu_ms - total(warm).cpu_ms) / span)
        lines.append(
            f"  {product}: cycles at the warm snapshot {snap['warm_cycles']}, at the last {snap['final_cycles']}"
            + ("; (supervisor) is local-only and not in the total" if LOCAL_SUPERVISOR in final else "")
        )
    if all(p in totals for p in PRODUCTS):
        (oi, of, ocpu), (ui, uf, ucpu) = totals["ours"], totals["upstream"]
        pss = f"PSS {ratio(of.pss_kib, uf.pss_kib):.1f} (idle {ratio(oi.pss_kib, ui.pss_kib):.1f})"
        rss = f"RSS {ratio(of.rss_kib, uf.rss_kib):.1f} (idle {ratio(oi.rss_kib, ui.rss_kib):.1f})"
        lines.append(f"ratio ours/upstream memory: {pss}, {rss}; CPU per cycle {ratio(ocpu, ucpu):.1f}")
    return lines
