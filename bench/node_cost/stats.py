"""Summaries of timing samples: pure functions, no I/O."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(q * 1000 * len(ordered)) // 1000)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """Latency summary in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float


def summarize(seconds: Sequence[float]) -> Summary:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return Summary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    return Summary(len(ms), statistics.median(ms), percentile(ms, 0.9), percentile(ms, 0.99), max(ms))


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs > 0 else float("nan")


def median_or_nan(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
