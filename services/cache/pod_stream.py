"""The stream of this node's pod changes (multus.cache.v1.Cache/WatchPods) that
the gateway's dynamic-networks reconciler reads.

Level-triggered by construction: a subscriber is told *which* pods changed
(keys, coalesced while it is busy), and each is sent as it is in the store at
send time, so a burst of edits reaches the reader as the last state, a reader
that falls behind never queues stale copies, and one that reconnects starts
with a full snapshot. Informer threads only add a key to a set; the sending
happens on the subscriber's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from services.cache.objects import CachedPod, Key
from services.cache.store import ObjectStore


@dataclass(frozen=True)
class PodChange:
    kind: str  # "SNAPSHOT", "SYNCED", "UPDATED" or "DELETED"
    key: Key = ("", "")
    pod: CachedPod | None = None  # None for SYNCED and DELETED


class _Subscriber:
    """Keys changed since the reader last looked; written from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: dict[Key, None] = {}  # insertion-ordered set
        self.wakeup = asyncio.Event()

    def changed(self, key: Key) -> None:
        with self._lock:
            self._pending[key] = None
        with contextlib.suppress(RuntimeError):  # the reader's loop is closed: it is gone
            self._loop.call_soon_threadsafe(self.wakeup.set)

    def take(self) -> list[Key]:
        with self._lock:
            keys, self._pending = list(self._pending), {}
        return keys


async def watch_pods(pods: ObjectStore[CachedPod]) -> AsyncGenerator[PodChange, None]:
    """Every cached pod, a SYNCED marker, then changes until the caller stops iterating."""
    subscriber = _Subscriber(asyncio.get_running_loop())
    # Subscribe before the snapshot: a change racing it is sent again (harmless).
    pods.add_listener(subscriber.changed)
    try:
        while not pods.synced:  # a snapshot of a half-listed store would read as deletions
            subscriber.wakeup.clear()
            if pods.synced:
                break
            try:
                await asyncio.wait_for(subscriber.wakeup.wait(), 1.0)
            except TimeoutError:
                continue
        for pod in pods.values():
            yield PodChange("SNAPSHOT", pod.key, pod)
        yield PodChange("SYNCED")
        while True:
            subscriber.wakeup.clear()
            keys = subscriber.take()
            if not keys:
                await subscriber.wakeup.wait()
                continue
            for key in keys:
                current = pods.get(key)
                yield PodChange("UPDATED", key, current) if current is not None else PodChange("DELETED", key)
    finally:
        pods.remove_listener(subscriber.changed)
