"""A thread-safe store of cached objects of one kind, with waiters.

Informer threads write, the asyncio servicer reads and waits for a key to
appear; a waiter is woken through its own event loop (call_soon_threadsafe),
so neither side blocks the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from services.cache import metrics
from services.cache.objects import Key


class Keyed(Protocol):
    @property
    def key(self) -> Key: ...


T = TypeVar("T", bound=Keyed)


@dataclass(frozen=True)
class KindStats:
    kind: str
    count: int
    resource_version: str
    last_sync_unix: float
    watch_restarts: int
    synced: bool


class ObjectStore(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._items: dict[Key, T] = {}
        self._waiters: dict[Key, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._resource_version = ""
        self._last_sync = 0.0
        self._watch_restarts = 0
        self._synced = threading.Event()
        # Called with each changed key, in the writing thread, under the store's lock
        # (so a listener sees changes in order); listeners must only record the key.
        self._listeners: list[Callable[[Key], None]] = []
        metrics.OBJECTS.labels(kind).set(0)

    def add_listener(self, listener: Callable[[Key], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Key], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # --- reads ---
    def get(self, key: Key) -> T | None:
        return self._items.get(key)  # a dict read is atomic under the GIL

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._items)

    def values(self) -> list[T]:
        with self._lock:
            return list(self._items.values())

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def resource_version(self) -> str:
        return self._resource_version

    def stats(self) -> KindStats:
        return KindStats(
            self.kind, len(self._items), self._resource_version, self._last_sync, self._watch_restarts, self.synced
        )

    # --- writes (any thread) ---
    def upsert(self, obj: T, resource_version: str = "") -> None:
        with self._lock:
            self._items[obj.key] = obj
            if resource_version:
                self._resource_version = resource_version
            self._wake(obj.key)
        metrics.OBJECTS.labels(self.kind).set(len(self._items))

    def delete(self, key: Key, resource_version: str = "") -> None:
        with self._lock:
            self._items.pop(key, None)
            if resource_version:
                self._resource_version = resource_version
            self._wake(key)
        metrics.OBJECTS.labels(self.kind).set(len(self._items))

    def replace(self, objs: Iterable[T], resource_version: str) -> None:
        """A full list: the store becomes exactly `objs` (deletions missed while
        the watch was down disappear here), and the kind counts as synced."""
        fresh = {o.key: o for o in objs}
        with self._lock:
            changed = {k for k, v in fresh.items() if self._items.get(k) is not v} | (self._items.keys() - fresh)
            self._items = fresh
            self._resource_version = resource_version
            self._last_sync = time.time()
            for key in changed if self._listeners else changed & self._waiters.keys():
                self._wake(key)
        self._synced.set()
        metrics.OBJECTS.labels(self.kind).set(len(fresh))

    def mark_synced(self) -> None:
        """The kind's initial load is complete (sources that load without a list call)."""
        self._last_sync = time.time()
        self._synced.set()

    def set_resource_version(self, resource_version: str) -> None:
        self._resource_version = resource_version

    def count_watch_restart(self) -> None:
        self._watch_restarts += 1
        metrics.WATCH_RESTARTS.labels(self.kind).inc()

    def _wake(self, key: Key) -> None:
        for listener in self._listeners:
            listener(key)
        for loop, event in self._waiters.get(key, ()):
            loop.call_soon_threadsafe(event.set)

    # --- waiting (asyncio) ---
    async def wait_for(self, key: Key, timeout: float, accept: Callable[[T], bool] = lambda _: True) -> T | None:
        """The object under `key` once it exists and `accept`s, or None after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        deadline = loop.time() + timeout
        with self._lock:
            self._waiters.setdefault(key, []).append(entry)
        try:
            while True:
                event.clear()
                obj = self._items.get(key)
                if obj is not None and accept(obj):
                    return obj
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            with self._lock:
                waiters = self._waiters.get(key, [])
                if entry in waiters:
                    waiters.remove(entry)
                if not waiters:
                    self._waiters.pop(key, None)
