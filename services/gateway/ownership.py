"""One owner of a container's records at a time.

Every call that reads or changes a container's attachments (ADD, DEL, CHECK,
hot-plug, spool replay, GC of that container) holds its container's turn for
its whole run; calls for other containers never wait. A DEL or a new ADD for
a container whose ADD is still running supersedes that ADD: the runtime only
sends them after it gave up on the ADD (CRI serializes calls per sandbox), so
the running ADD is cancelled, rolls back whatever it attached, and the newer
call runs next (docs/reliability.md). Everything else waits its turn in
arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# Verbs that supersede an ADD in flight for the same container.
SUPERSEDING = frozenset({"ADD", "DEL"})


@dataclass
class _Turns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holders: int = 0  # calls holding or waiting for the lock
    adding: asyncio.Task[object] | None = None  # the ADD holding the lock, if any


class ContainerOwners:
    def __init__(self) -> None:
        self._turns: dict[str, _Turns] = {}
        self._superseded: set[asyncio.Task[object]] = set()

    def busy(self) -> int:
        """Containers with a call running or waiting (for tests and status)."""
        return len(self._turns)

    def was_superseded(self, task: asyncio.Task[object]) -> bool:
        return task in self._superseded

    def forget(self, task: asyncio.Task[object]) -> None:
        self._superseded.discard(task)

    @asynccontextmanager
    async def turn(self, container_id: str, command: str) -> AsyncIterator[None]:
        """Hold `container_id` for the current task; an empty ID (plugin verbs) owns nothing."""
        if not container_id:
            yield
            return
        turns = self._turns.setdefault(container_id, _Turns())
        turns.holders += 1
        try:
            adding = turns.adding
            if command in SUPERSEDING and adding is not None and not adding.done():
                self._superseded.add(adding)
                adding.cancel()
            async with turns.lock:
                me = asyncio.current_task()
                turns.adding = me if command == "ADD" else None
                try:
                    yield
                finally:
                    turns.adding = None
        finally:
            turns.holders -= 1
            if turns.holders == 0:
                del self._turns[container_id]


async def run_to_completion(work: Awaitable[T]) -> T:
    """Await `work` even if the current task is cancelled meanwhile (a rollback must
    finish), then re-raise the cancellation."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
