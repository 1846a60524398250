"""What each service's memory is made of, after warm-up cycles on a real node:
PSS by kind of mapping (interpreter and libpython, extension modules, malloc's
main heap and per-thread arenas, thread stacks, other anonymous memory), the
modules the service holds, and what importing exactly those modules costs in a
fresh interpreter, package by package (each package charged with what it
brings in first, in the order listed). Profiling only; the product is unchanged.

    .venv/bin/python -m bench.node_cost.memory_profile --source kube --cycles 100
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.node_cost.host import links_and_cluster, traced_node
from bench.node_cost.memory import parse_smaps_rollup
from bench.node_cost.products import LOCAL_SUPERVISOR
from tests.support.netns import netns

ARENA = 64 * 1024  # KiB: glibc's HEAP_MAX_SIZE on 64-bit, what each per-thread arena reserves
STACK = 8 * 1024  # KiB: the default thread stack (ulimit -s)

# Measures, in a fresh interpreter, the memory added by importing each group of modules.
IMPORT_COST = r"""
import importlib, json, sys
def snap():
    f = {}
    for line in open("/proc/self/smaps_rollup"):
        k, _, rest = line.partition(":")
        p = rest.split()
        if len(p) == 2: f[k] = int(p[0])
    return f.get("Rss", 0), f.get("Anonymous", 0)
groups = json.load(sys.stdin)
out = [["(interpreter)", *snap()]]
for name, modules in groups:
    for m in modules:
        try:
            importlib.import_module(m)
        except BaseException:
            pass
    out.append([name, *snap()])
print(json.dumps(out))
"""


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    path: str
    fields: dict[str, int]

    @property
    def size_kib(self) -> int:
        return (self.end - self.start) // 1024


def read_smaps(pid: int) -> list[Mapping]:
    maps: list[Mapping] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            maps.append(Mapping(lo, hi, head[1], head[5] if len(head) > 5 else "", {}))
        elif maps:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                maps[-1].fields[key] = int(parts[0])
    return maps


def classify(maps: list[Mapping]) -> Counter[str]:
    """PSS (KiB) by kind of mapping."""
    out: Counter[str] = Counter()
    for i, m in enumerate(maps):
        pss = m.fields.get("Pss", 0)
        nxt = maps[i + 1] if i + 1 < len(maps) else None
        prev = maps[i - 1] if i else None
        if m.path == "[heap]":
            kind = "anon: malloc main heap (brk)"
        elif m.path.startswith("[") or m.path.startswith("/memfd"):
            kind = f"special {m.path.split(' ')[0]}"
        elif m.path:
            name = os.path.basename(m.path)
            if "libpython" in name or name.startswith("python3"):
                kind = "file: interpreter + libpython"
            elif ".so" in name and ("site-packages" in m.path or "lib-dynload" in m.path):
                kind = f"file: {m.path.split('site-packages/')[-1].split('/')[0]} (extension)"
            elif ".so" in name:
                kind = "file: system libraries"
            else:
                kind = "file: other"
        elif (
            m.start % (ARENA * 1024) == 0
            and nxt is not None
            and nxt.perms.startswith("---")
            and nxt.start == m.end
            and m.size_kib + nxt.size_kib == ARENA
        ) or (m.start % (ARENA * 1024) == 0 and m.size_kib == ARENA):
            kind = "anon: malloc per-thread arenas"
        elif prev is not None and prev.perms.startswith("---") and prev.end == m.start and m.size_kib >= STACK - 8:
            kind = "anon: thread stacks (guarded mappings)"
        else:
            kind = "anon: other (obmalloc arenas, large allocations)"
        out[kind] += pss
    return out


def import_cost(state: dict[str, Any], groups_first: tuple[str, ...]) -> list[tuple[str, int, int]]:
    names = [n for n in state["module_names"] if not n.endswith("__main__") and not n.startswith("bench")]
    by_top: dict[str, list[str]] = {}
    for n in names:
        by_top.setdefault(n.split(".", 1)[0], []).append(n)
    order = [g for g in groups_first if g in by_top] + sorted(
        (g for g in by_top if g not in groups_first), key=lambda g: -len(by_top[g])
    )
    groups = [[g, by_top[g]] for g in order]
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_COST],
        input=json.dumps(groups).encode(),
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    snaps = json.loads(proc.stdout)
    out = [(snaps[0][0], snaps[0][1], snaps[0][2])]
    for (name, rss, anon), (_, prev_rss, prev_anon) in zip(snaps[1:], snaps[:-1], strict=True):
        out.append((name, rss - prev_rss, anon - prev_anon))
    return out


BIG_FIRST = ("kubernetes", "grpc", "google", "cryptography", "pyroute2", "aiohttp", "structlog", "prometheus_client")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node_cost.memory_profile", description=__doc__)
    parser.add_argument("--source", choices=("kube", "files"), default="kube")
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args(argv)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="multus-node-memory-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        links, cluster = links_and_cluster(stack, args.source, root, [("mem", 2)], "nm")
        node, trace_dir = traced_node(stack, root, cluster, links)
        ns = stack.enter_context(netns("nmo")).path
        for _ in range(args.cycles):
            cid = uuid.uuid4().hex
            node.runner.call("ADD", cluster.pods["mem"], ns, cid)
            node.runner.call("DEL", cluster.pods["mem"], ns, cid)
        time.sleep(2)
        lines.append(f"memory profile: {args.source}, after {args.cycles} ADD/DEL cycles (KiB of PSS unless said)")
        for name, pid in node.pids().items():
            if name == LOCAL_SUPERVISOR:
                continue
            os.kill(pid, signal.SIGUSR2)
            state_path = trace_dir / f"{name}.state.json"
            deadline = time.monotonic() + 10
            while not state_path.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            state = json.loads(state_path.read_text())
            rollup = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
            threads = Counter(t.split("-")[0] for t in state["threads"]).most_common()
            lines.append(
                f"== {name}: PSS {rollup['Pss']} RSS {rollup['Rss']} anon {rollup.get('Anonymous', 0)}; "
                f"{state['modules']} modules; {len(state['threads'])} Python threads {threads}; "
                f"gc objects {state['gc_objects']}"
            )
            for kind, kib in classify(read_smaps(pid)).most_common():
                if kib >= 256:
                    lines.append(f"   {kib:7d}  {kind}")
            lines.append(
                "   modules by package: " + ", ".join(f"{k} {v}" for k, v in list(state["by_package"].items())[:12])
            )
            lines.append("   importing the same modules in a fresh interpreter (RSS delta, anon delta), in order:")
            for group, rss, anon in import_cost(state, BIG_FIRST):
                if rss >= 512 or group == "(interpreter)":
                    lines.append(f"   {rss:7d} {anon:7d}  {group}")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
