"""Where the time of an ADD and a DEL goes, span by span, on the real API server
(or the file-backed cluster): the four services run under the tracing wrapper
(bench/node_cost/trace.py; the product is unchanged), calls go one at a time
through the installed shim, interleaved with the same delegates called
directly, and every span is attributed to the call it started in.

    .venv/bin/python -m bench.node_cost.profile --source kube --calls 40 --networks 2
    .venv/bin/python -m bench.node_cost.profile --source kube --py-spy   # + sampled stacks per service

With --py-spy (needs py-spy on PATH or in .venv/bin), each service is sampled
without stopping it (--nonblocking) and the top frames by share of samples
are printed; take span timings from a run without it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.node_cost.host import links_and_cluster, traced_node
from bench.node_cost.memory import cpu_ms
from bench.node_cost.products import LOCAL_SUPERVISOR, DirectRunner, ShimRunner
from shim import multus_shim
from tests.support.netns import netns

# Derived rows: (label, minuend span, subtrahend span) on per-call medians.
DERIVED = (
    ("gRPC hop gateway->executor (per call)", "ExecutorClient.exec_plugin", "ExecutorServicer.ExecPlugin"),
    ("executor around the plugin process", "ExecutorServicer.ExecPlugin", "runner.run_plugin_process"),
    ("gRPC hop gateway->executor (batch)", "ExecutorClient.exec_plugins", "ExecutorServicer.ExecPlugins"),
    ("executor around the plugin processes (batch)", "ExecutorServicer.ExecPlugins", "runner.run_plugin_process"),
    ("gRPC hop gateway->cache GetPod", "CacheClient.get_pod", "CacheServicer.GetPod"),
    ("gRPC hop gateway->cache status", "CacheClient.update_network_status", "CacheServicer.UpdateNetworkStatus"),
    ("status: cache queue + thread hop", "CacheServicer.UpdateNetworkStatus", "KubeSource._write_network_status"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.node_cost.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", choices=("kube", "files"), default="kube")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--networks", type=int, default=2, choices=(1, 2, 4))
    parser.add_argument(
        "--gap",
        type=float,
        default=0.3,
        help="seconds between cycles (0: back to back as the benchmark runs them; background work then overlaps)",
    )
    parser.add_argument("--py-spy", action="store_true", help="also sample every service's stacks")
    parser.add_argument("--out", type=Path, help="keep the spans and py-spy's raw stacks in this directory")
    return parser.parse_args(argv)


def spans(trace_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in trace_dir.glob("*.jsonl"):
        out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def attribute(
    all_spans: list[dict[str, Any]], windows: list[tuple[str, int, int]]
) -> dict[str, dict[str, list[float]]]:
    """per verb, per span name: one total (ms) per call, spans attributed to the call they started in."""
    per_call: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for verb, start, end in windows:
        totals: Counter[str] = Counter()
        for s in all_spans:
            if start <= s["t0"] <= end:
                totals[s["name"]] += s["us"] / 1000
        for name, ms in totals.items():
            per_call[verb][name].append(ms)
        per_call[verb]["(shim call, wall)"].append((end - start) / 1e6)
        handler = next((s for s in all_spans if s["name"] == "Dispatcher.cni" and start <= s["t0"] <= end), None)
        if handler is not None:
            # before: shim start, readiness probe, request sent and parsed; after: answer, shim exit
            per_call[verb]["(before the handler)"].append((handler["t0"] - start) / 1e6)
            per_call[verb]["(after the handler)"].append((end - handler["t0"] - handler["us"] * 1000) / 1e6)
    return per_call


def render(per_call: dict[str, dict[str, list[float]]], direct: dict[str, list[float]], calls: int) -> list[str]:
    lines = []
    for verb in ("ADD", "DEL"):
        table = per_call.get(verb, {})
        med = {name: statistics.median(xs + [0.0] * (calls - len(xs))) for name, xs in table.items()}
        lines.append(f"-- {verb}: per-call medians over {calls} calls (ms); n/call = spans per call")
        lines.append(f"{'delegates called directly (same networks)':48} {statistics.median(direct[verb]):8.2f}")
        for name, value in sorted(med.items(), key=lambda kv: -kv[1]):
            per = len(table[name]) and sum(1 for _ in table[name]) / calls
            lines.append(f"{name:48} {value:8.2f}   n/call {per:.2f}")
        for label, a, b in DERIVED:
            if a in med and b in med:
                lines.append(f"{'= ' + label:48} {med[a] - med[b]:8.2f}")
        if "Dispatcher.cni" in med:
            outside = med["(shim call, wall)"] - med["Dispatcher.cni"]
            lines.append(f"{'= outside the gateway handler (shim, HTTP)':48} {outside:8.2f}")
            over = med["(shim call, wall)"] - statistics.median(direct[verb])
            lines.append(f"{'= over the delegates (wall - direct)':48} {over:8.2f}")
    return lines


def shim_costs(runner: ShimRunner, repeat: int = 30) -> dict[str, float]:
    """Process start + VERSION (no daemon contact), and one readiness probe to the gateway."""
    env = {"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}
    version, probe = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([str(runner.shim)], input=runner.conf, env=env, capture_output=True, check=True)
        version.append((time.perf_counter() - t0) * 1000)
    socket_path = str(Path(json.loads(runner.conf)["daemonSocketDir"]) / "multus.sock")
    for _ in range(repeat):
        t0 = time.perf_counter()
        status, _ = multus_shim.http_exchange(socket_path, "GET", "/readyz", None, 5.0)
        if status != 200:
            raise RuntimeError(f"GET /readyz answered {status}")
        probe.append((time.perf_counter() - t0) * 1000)
    return {
        "shim process, VERSION (start, imports, exit)": statistics.median(version),
        "GET /readyz from Python (one HTTP exchange)": statistics.median(probe),
    }


def py_spy_summary(path: Path, top: int = 25) -> list[str]:
    """Share of samples per frame (inclusive), from py-spy's raw (collapsed) output."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            inclusive[frame] += n
    return [f"  {100 * n / total:5.1f}%  {frame[:150]}" for frame, n in inclusive.most_common(top)] if total else []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pods = [("prof", args.networks)]
    with tempfile.TemporaryDirectory(prefix="multus-node-profile-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        links, cluster = links_and_cluster(stack, args.source, root, pods, "np")
        node, trace_dir = traced_node(stack, root, cluster, links)
        pod = cluster.pods["prof"]
        ns_ours, ns_direct = stack.enter_context(netns("npo")).path, stack.enter_context(netns("npd")).path
        direct_runner = DirectRunner(links)
        for _ in range(5):  # warm-up, not attributed
            for runner, ns in ((node.runner, ns_ours), (direct_runner, ns_direct)):
                cid = uuid.uuid4().hex
                runner.call("ADD", pod, ns, cid)
                runner.call("DEL", pod, ns, cid)
        time.sleep(1)
        samplers: dict[str, subprocess.Popen[bytes]] = {}
        if args.py_spy:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            for name, pid in node.pids().items():
                if name == LOCAL_SUPERVISOR:
                    continue
                out = root / f"{name}.pyspy.txt"
                samplers[name] = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "500",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            time.sleep(1)
        cpu_before = {name: cpu_ms(pid) for name, pid in node.pids().items()}
        start_ns = time.time_ns()
        windows: list[tuple[str, int, int]] = []
        direct: dict[str, list[float]] = {"ADD": [], "DEL": []}
        for _ in range(args.calls):
            cid = uuid.uuid4().hex
            t0 = time.time_ns()
            node.runner.call("ADD", pod, ns_ours, cid)
            t1 = time.time_ns()
            node.runner.call("DEL", pod, ns_ours, cid)
            t2 = time.time_ns()
            windows += [("ADD", t0, t1), ("DEL", t1, t2)]
            cid = uuid.uuid4().hex
            d0 = time.perf_counter()
            direct_runner.call("ADD", pod, ns_direct, cid)
            d1 = time.perf_counter()
            direct_runner.call("DEL", pod, ns_direct, cid)
            direct["ADD"].append((d1 - d0) * 1000)
            direct["DEL"].append((time.perf_counter() - d1) * 1000)
            time.sleep(args.gap)  # let background work (events) finish inside this call's window
        cpu_used = {name: cpu_ms(pid) - cpu_before[name] for name, pid in node.pids().items()}
        for proc in samplers.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        shim_parts = shim_costs(node.runner)
        recorded = [s for s in spans(trace_dir) if s["t0"] >= start_ns]
        lines = [f"profile: {args.source} ({cluster.server_version}), {args.networks} networks, {args.calls} calls"]
        lines += render(attribute(recorded, windows), direct, args.calls)
        lines.append("-- CPU time per ADD+DEL cycle, by process (ms; the delegates' own processes not included)")
        lines += [f"{name:48} {ms / args.calls:8.2f}" for name, ms in cpu_used.items()]
        lines.append("-- the shim's part, measured apart (medians, ms)")
        lines += [f"{name:48} {ms:8.2f}" for name, ms in shim_parts.items()]
        for name in samplers:
            lines.append(f"-- py-spy {name}: inclusive share of samples (idle included)")
            lines += py_spy_summary(root / f"{name}.pyspy.txt")
        print("\n".join(lines), flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for path in [*trace_dir.glob("*.jsonl"), *root.glob("*.pyspy.txt")]:
                shutil.copy(path, args.out / path.name)
            (args.out / "windows.json").write_text(json.dumps(windows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
