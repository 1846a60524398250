"""What a node pays for the meta-plugin: ADD/DEL latency through the shim for
1, 2 and 4 networks interleaved with the same delegates called directly, a
storm of pods, and the memory of every long-running process idle and after
`--cycles` ADD/DEL cycles; against the real kube-apiserver from ../shared/kube
and the file-backed cluster. With MULTUS_DAEMON_BIN and MULTUS_SHIM_BIN set to
upstream Multus binaries, upstream runs the same workload in the same run
(kube source), alternating with ours, and ours/upstream ratios are printed.

    .venv/bin/python -m bench.node_cost                    # both sources, defaults below
    MULTUS_DAEMON_BIN=... MULTUS_SHIM_BIN=... .venv/bin/python -m bench.node_cost --sources kube

Run as root from the repository root (network namespaces, links, the executor).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.node_cost import report
from bench.node_cost.clusters import FileCluster, KubeCluster, PodRef, workload_pods
from bench.node_cost.host import links_and_cluster
from bench.node_cost.networks import SIZES
from bench.node_cost.products import DirectRunner, ProductNode, Runner, our_node, upstream_node
from bench.node_cost.workload import age, latency, storm
from tests.support.netns import netns

STORM_SIZE = 2  # networks per storm pod: the cluster network + macvlan
SETTLE_SECONDS = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.node_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", default="files,kube", help="comma-separated: files, kube (default both)")
    parser.add_argument("--rounds", type=int, default=30, help="latency samples per runner, verb and network count")
    parser.add_argument("--storm-pods", type=int, default=64)
    parser.add_argument("--storm-concurrency", type=int, default=8)
    parser.add_argument("--storm-rounds", type=int, default=3, help="storms per runner, alternating; medians reported")
    parser.add_argument(
        "--cycles", type=int, default=1000, help="ADD/DEL cycles per product before the last memory snapshot"
    )
    parser.add_argument("--json", type=Path, help="also write every sample and snapshot here")
    args = parser.parse_args(argv)
    args.sources = [s for s in args.sources.split(",") if s]
    if unknown := set(args.sources) - {"files", "kube"}:
        parser.error(f"unknown sources: {', '.join(sorted(unknown))}")
    daemon, shim = os.environ.get("MULTUS_DAEMON_BIN", ""), os.environ.get("MULTUS_SHIM_BIN", "")
    if bool(daemon) != bool(shim):
        parser.error("set both MULTUS_DAEMON_BIN and MULTUS_SHIM_BIN for the peer run, or neither")
    args.upstream = (Path(daemon), Path(shim)) if daemon else None
    for path in args.upstream or ():
        if not os.access(path, os.X_OK):
            parser.error(f"{path}: not an executable file")
    return args


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def progress(source: str, message: str) -> None:
    print(f"[{source}] {message}", file=sys.stderr, flush=True)


def verify_status(cluster: KubeCluster, node: ProductNode, pod: PodRef, netns_path: str) -> None:
    """An ADD through the product has written network-status, every attachment in it, when it returns."""
    cid = uuid.uuid4().hex
    node.runner.call("ADD", pod, netns_path, cid)
    try:
        status = cluster.network_status(pod)
        if len(status) != pod.size:
            raise RuntimeError(f"{node.runner.label}: network-status has {len(status)} entries, not {pod.size}")
    finally:
        node.runner.call("DEL", pod, netns_path, cid)


@dataclass
class Bench:
    """One source's node: the cluster, the products running on it, and the namespaces used."""

    source: str
    cluster: KubeCluster | FileCluster
    nodes: dict[str, ProductNode]
    runners: list[Runner]
    own_netns: dict[str, str]
    storm_netns: list[str]


def set_up(stack: ExitStack, source: str, args: argparse.Namespace, root: Path) -> Bench:
    pods = workload_pods(SIZES, args.storm_pods, STORM_SIZE)
    links, cluster = links_and_cluster(stack, source, root, pods, "nc")
    nodes = {"ours": stack.enter_context(our_node(root / "ours", cluster, links))}
    if args.upstream and isinstance(cluster, KubeCluster):
        daemon, shim = args.upstream
        nodes["upstream"] = stack.enter_context(upstream_node(root / "upstream", cluster, links, daemon, shim))
    runners: list[Runner] = [DirectRunner(links), *(n.runner for n in nodes.values())]
    own_netns = {r.label: stack.enter_context(netns("ncl")).path for r in runners}
    storm_netns = [stack.enter_context(netns("ncs")).path for _ in range(args.storm_pods)]
    return Bench(source, cluster, nodes, runners, own_netns, storm_netns)


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    cluster, nodes, runners, source = bench.cluster, bench.nodes, bench.runners, bench.source
    progress(source, f"{cluster.server_version}; node {cluster.node}; runners {[r.label for r in runners]}")
    load_before = loadavg()
    time.sleep(SETTLE_SECONDS)
    snapshots: dict[str, dict[str, Any]] = {name: {"idle": n.footprints()} for name, n in nodes.items()}
    counts = {r.label: 0 for r in runners}
    if isinstance(cluster, KubeCluster):
        for name, n in nodes.items():
            verify_status(cluster, n, cluster.pods[f"lat-{max(SIZES)}"], bench.own_netns[name])
            counts[name] += 1
    progress(source, f"latency: {args.rounds} rounds")
    latency_pods = {size: cluster.pods[f"lat-{size}"] for size in SIZES}
    lat = latency(runners, latency_pods, bench.own_netns, args.rounds, counts)
    progress(source, f"storm: {args.storm_pods} pods, {args.storm_concurrency} at once, {args.storm_rounds} rounds")
    storm_pods = [cluster.pods[f"storm-{i:03d}"] for i in range(args.storm_pods)]
    storms = storm(runners, storm_pods, bench.storm_netns, args.storm_concurrency, args.storm_rounds, counts)
    for name, n in nodes.items():
        snapshots[name].update(warm=n.footprints(), warm_cycles=counts[name])
    progress(source, f"aging: up to {args.cycles} cycles per product")
    products = [r for r in runners if r.label in nodes]
    aging_failures = age(products, cluster.pods[f"lat-{STORM_SIZE}"], bench.own_netns, args.cycles, counts)
    time.sleep(SETTLE_SECONDS)
    for name, n in nodes.items():
        snapshots[name].update(final=n.footprints(), final_cycles=counts[name])
    return {
        "source": source,
        "server": cluster.server_version,
        "node": cluster.node,
        "runners": [r.label for r in runners],
        "load": [load_before, loadavg()],
        "latency": lat,
        "storm": storms,
        "memory": snapshots,
        "aging_failures": aging_failures,
    }


def render(m: dict[str, Any], args: argparse.Namespace) -> str:
    (before, after), runners = m["load"], m["runners"]
    lines = ["", f"== source: {m['source']} ({m['server']}); load average {before} -> {after} =="]
    lines.append(f"ADD/DEL through the shim vs. the delegates directly: {args.rounds} samples each, interleaved")
    lines += report.latency_table(m["latency"], runners, SIZES)
    if "upstream" in runners:
        lines += report.latency_ratios(m["latency"], SIZES)
    lines.append(
        f"storm: {args.storm_pods} pods x {STORM_SIZE} networks, {args.storm_concurrency} at once, ADD then DEL; "
        f"median pods/s of {args.storm_rounds} rounds, p99 over all calls"
    )
    lines += report.storm_table(m["storm"])
    lines.append("memory of the long-running processes")
    lines += report.memory_table(m["memory"])
    if m["aging_failures"]:
        lines.append(f"aging failures: {len(m['aging_failures'])}; first: {m['aging_failures'][0][:300]}")
    return "\n".join(lines)


def as_json(m: dict[str, Any]) -> dict[str, Any]:
    return {
        **m,
        "latency": {f"{r}/{v}/{s}": xs for (r, v, s), xs in m["latency"].samples.items()},
        "storm": {
            k: {"add": [asdict(p) for p in v.add], "delete": [asdict(p) for p in v.delete]}
            for k, v in m["storm"].items()
        },
        "memory": {
            product: {k: ({n: asdict(f) for n, f in v.items()} if isinstance(v, dict) else v) for k, v in snap.items()}
            for product, snap in m["memory"].items()
        },
    }


def run_source(source: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="multus-node-cost-") as tmp, ExitStack() as stack:
        measured = measure(set_up(stack, source, args, Path(tmp)), args)
    print(render(measured, args), flush=True)
    return as_json(measured)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = [run_source(source, args) for source in args.sources]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
