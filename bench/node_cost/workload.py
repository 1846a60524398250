"""The workload, the same for every runner: interleaved ADD/DEL latency per
network count, the storm (many pods at once, ADD then DEL), and plain cycles
that age the long-running processes. Runners alternate so that machine noise
falls on all of them alike."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.node_cost.clusters import PodRef
from bench.node_cost.products import CallFailed, Runner

VERBS = ("ADD", "DEL")


def rotated(items: Sequence[Runner], shift: int) -> list[Runner]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def cycle(runner: Runner, pod: PodRef, netns_path: str) -> tuple[float, float]:
    """One ADD then DEL of a fresh container; (ADD seconds, DEL seconds)."""
    cid = uuid.uuid4().hex
    t0 = time.perf_counter()
    try:
        runner.call("ADD", pod, netns_path, cid)
    except CallFailed:
        with contextlib.suppress(CallFailed):  # as the runtime does: a failed ADD is DELeted
            runner.call("DEL", pod, netns_path, cid)
        raise
    t1 = time.perf_counter()
    runner.call("DEL", pod, netns_path, cid)
    return t1 - t0, time.perf_counter() - t1


@dataclass
class Latency:
    """Samples in seconds by (runner, verb, networks)."""

    samples: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)

    def add(self, runner: str, verb: str, size: int, seconds: float) -> None:
        self.samples.setdefault((runner, verb, size), []).append(seconds)


def latency(
    runners: Sequence[Runner], pods: dict[int, PodRef], netns: dict[str, str], rounds: int, counts: dict[str, int]
) -> Latency:
    """`rounds` samples of each (runner, size), runners rotating each round; one
    uncounted warm-up cycle each first."""
    out = Latency()
    for runner in runners:
        for pod in pods.values():
            cycle(runner, pod, netns[runner.label])
            counts[runner.label] += 1
    for i in range(rounds):
        for size, pod in pods.items():
            for runner in rotated(runners, i + size):
                add, delete = cycle(runner, pod, netns[runner.label])
                counts[runner.label] += 1
                out.add(runner.label, "ADD", size, add)
                out.add(runner.label, "DEL", size, delete)
    return out


@dataclass
class StormPhase:
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def pods_per_second(self) -> float:
        return (len(self.latencies) + len(self.failures)) / self.wall if self.wall else 0.0


@dataclass
class Storm:
    add: list[StormPhase] = field(default_factory=list)
    delete: list[StormPhase] = field(default_factory=list)


def _timed(runner: Runner, verb: str, pod: PodRef, netns_path: str, cid: str) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        runner.call(verb, pod, netns_path, cid)
        return time.perf_counter() - start, ""
    except CallFailed as exc:
        return time.perf_counter() - start, str(exc)


def storm_once(
    runner: Runner, pods: Sequence[PodRef], netns_paths: Sequence[str], concurrency: int
) -> tuple[StormPhase, StormPhase]:
    """Every pod ADDed with `concurrency` calls in flight, then every pod DELeted likewise
    (a DEL follows a failed ADD too, as the runtime would)."""
    cids = [uuid.uuid4().hex for _ in pods]
    phases = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for verb in VERBS:
            phase = StormPhase()
            start = time.perf_counter()
            calls = [(runner, verb, pods[i], netns_paths[i], cids[i]) for i in range(len(pods))]
            results = list(pool.map(lambda c: _timed(*c), calls))
            phase.wall = time.perf_counter() - start
            for seconds, error in results:
                if error:
                    phase.failures.append(error)
                else:
                    phase.latencies.append(seconds)
            phases.append(phase)
    return phases[0], phases[1]


def storm(
    runners: Sequence[Runner],
    pods: Sequence[PodRef],
    netns_paths: Sequence[str],
    concurrency: int,
    rounds: int,
    counts: dict[str, int],
) -> dict[str, Storm]:
    out = {r.label: Storm() for r in runners}
    for i in range(rounds):
        for runner in rotated(runners, i):
            add, delete = storm_once(runner, pods, netns_paths, concurrency)
            out[runner.label].add.append(add)
            out[runner.label].delete.append(delete)
            counts[runner.label] += len(pods)
    return out


def age(runners: Sequence[Runner], pod: PodRef, netns: dict[str, str], until: int, counts: dict[str, int]) -> list[str]:
    """Plain ADD/DEL cycles, alternating runners, until each has made `until` cycles
    in all (the phases before count too). Returns failures (each also counted)."""
    failures = []
    while any(counts[r.label] < until for r in runners):
        for runner in runners:
            if counts[runner.label] >= until:
                continue
            try:
                cycle(runner, pod, netns[runner.label])
            except CallFailed as exc:
                failures.append(str(exc))
                if len(failures) > 20:
                    raise
            counts[runner.label] += 1
    return failures
