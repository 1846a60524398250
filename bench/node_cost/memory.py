"""What a long-running process costs the node, from /proc: RSS, PSS (shared
pages divided among the processes that map them, so the sum over processes is
what the node pays), anonymous PSS, its thread count and the CPU time it has
used so far."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import processes


@dataclass(frozen=True)
class Footprint:
    rss_kib: int
    pss_kib: int
    pss_anon_kib: int
    threads: int
    cpu_ms: float

    @staticmethod
    def zero() -> Footprint:
        return Footprint(0, 0, 0, 0, 0.0)

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(
            self.rss_kib + other.rss_kib,
            self.pss_kib + other.pss_kib,
            self.pss_anon_kib + other.pss_anon_kib,
            self.threads + other.threads,
            self.cpu_ms + other.cpu_ms,
        )


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """`Key:   123 kB` lines of /proc/<pid>/smaps_rollup, in KiB."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields


def footprint(pid: int) -> Footprint:
    proc = Path("/proc", str(pid))
    fields = parse_smaps_rollup((proc / "smaps_rollup").read_text())
    threads = sum(1 for _ in (proc / "task").iterdir())
    return Footprint(fields.get("Rss", 0), fields.get("Pss", 0), fields.get("Pss_Anon", 0), threads, cpu_ms(pid))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """User + system CPU time of the process (all its threads; children not included)."""
    stat = Path("/proc", str(pid), "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS


def service_children(parent: int) -> dict[str, int]:
    """Direct children of `parent` that run a service (`-m services.<name>`, or the
    profiling wrapper `-m bench.node_cost.trace <name>`), by service name."""
    found: dict[str, int] = {}
    for proc in processes():
        if proc.ppid != parent or b"-m" not in proc.cmdline:
            continue
        args = proc.cmdline[proc.cmdline.index(b"-m") + 1 :]
        if args and args[0].startswith(b"services."):
            found[args[0].removeprefix(b"services.").decode()] = proc.pid
        elif len(args) > 1 and args[0] == b"bench.node_cost.trace":
            found[args[1].decode()] = proc.pid
    return found
