"""The cache's behaviour, independent of where objects come from: answer from
the cache, wait a bounded time for an object that has not arrived yet, then
ask the source live; check pod UIDs; bound network-status writes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.cache import metrics
from services.cache.errors import NadNotFound, PodNotFound, StalePod
from services.cache.objects import NAD, POD, CachedNad, CachedPod, uid_mismatch
from services.cache.source import ClusterSource, PodEvent, StatusWrite
from services.cache.status_writer import StatusWriter, WriteResult
from services.cache.store import KindStats

# A NAD missing from a synced cache is almost always really missing (a config
# error): wait only briefly for one created at the same moment as the pod.
DEFAULT_NAD_WAIT_MS = 500


@dataclass(frozen=True)
class Bounds:
    pod_wait_ms: int = 3000
    nad_wait_ms: int = DEFAULT_NAD_WAIT_MS
    status_wait_ms: int = 2000


class Cache:
    def __init__(self, source: ClusterSource, writer: StatusWriter, bounds: Bounds) -> None:
        self.source = source
        self.writer = writer
        self.bounds = bounds

    async def get_pod(self, namespace: str, name: str, uid: str = "", wait_ms: int = 0) -> CachedPod:
        started = time.monotonic()
        try:
            return await self._get_pod(namespace, name, uid, (wait_ms or self.bounds.pod_wait_ms) / 1000)
        finally:
            metrics.GET_POD_SECONDS.observe(time.monotonic() - started)

    async def _get_pod(self, namespace: str, name: str, uid: str, wait: float) -> CachedPod:
        key = (namespace, name)
        pod = self.source.pods.get(key)
        if pod is not None and not uid_mismatch(pod, uid):
            return pod
        # Not cached yet (ADD raced the watch), or cached as an older incarnation.
        pod = await self.source.pods.wait_for(key, wait, lambda p: not uid_mismatch(p, uid))
        if pod is not None:
            return pod
        live = await self.source.live_pod(namespace, name)
        metrics.LIVE_LOOKUPS.labels(POD, "found" if live else "not_found").inc()
        if live is None:
            raise PodNotFound(namespace, name, wait)
        if uid_mismatch(live, uid):
            raise StalePod(namespace, name, live.uid, uid)
        return live

    async def get_nad(self, namespace: str, name: str, wait_ms: int = 0) -> CachedNad:
        key = (namespace, name)
        nad = self.source.nads.get(key)
        if nad is not None:
            return nad
        nad = await self.source.nads.wait_for(key, (wait_ms or self.bounds.nad_wait_ms) / 1000)
        if nad is not None:
            return nad
        live = await self.source.live_nad(namespace, name)
        metrics.LIVE_LOOKUPS.labels(NAD, "found" if live else "not_found").inc()
        if live is None:
            raise NadNotFound(namespace, name)
        return live

    async def update_network_status(self, write: StatusWrite, wait_ms: int = 0) -> WriteResult:
        return await self.writer.submit(write, (wait_ms or self.bounds.status_wait_ms) / 1000)

    async def emit_event(self, event: PodEvent) -> None:
        await self.source.emit_event(event)

    def stats(self) -> list[KindStats]:
        return [self.source.pods.stats(), self.source.nads.stats()]
