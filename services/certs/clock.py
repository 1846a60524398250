"""Time as the domain sees it: injectable so schedules can be tested without waiting."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

# Re-check the wall clock at least this often while sleeping, so a suspended
# host or a stepped clock never makes a renewal late by more than this.
_MAX_NAP = 30.0


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once now() >= deadline (or later; never earlier)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        while (remaining := deadline - time.time()) > 0:
            await asyncio.sleep(min(remaining, _MAX_NAP))
