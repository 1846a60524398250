"""Jittered exponential backoff, so many nodes reconnecting after an API
server outage do not arrive in lockstep, and nothing retries in a busy loop."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): uniform in [ceiling/2, ceiling],
    ceiling = min(cap, base * 2**(attempt-1)). Never zero, never above cap."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)
