"""The one backoff: jittered exponential, so many nodes reconnecting after an
API server outage do not arrive in lockstep, and nothing retries in a busy
loop. Used by the cache's informers and status writer and by every retry
loop of the certs service."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, jitter: float | None = None) -> float:
    """Delay before retry number `attempt` (1-based): in [ceiling/2, ceiling],
    ceiling = min(cap, base * 2**(attempt-1)); `jitter` in [0, 1] picks the point
    (random when None). Never zero, never above cap."""
    ceiling: float = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    point = random.random() if jitter is None else min(max(jitter, 0.0), 1.0)
    return ceiling * (0.5 + 0.5 * point)
