"""The cache's behaviour, independent of where objects come from: answer from
the cache, wait a bounded time for an object that has not arrived yet, then
ask the source live; check pod UIDs; bound network-status writes; emit the
events that come with a write in the background, at most as many per pod as
upstream's event recorder lets through (event_filter.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from services.cache import metrics
from services.cache.errors import NadNotFound, PodNotFound, StalePod
from services.cache.event_filter import EventSpamFilter
from services.cache.objects import NAD, POD, CachedNad, CachedPod, Key, uid_mismatch
from services.cache.source import ClusterSource, PodEvent, StatusWrite
from services.cache.status_writer import StatusWriter, WriteResult
from services.cache.store import KindStats
from services.common import cni
from services.common.logs import get_logger
from services.common.selection import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION, parse_networks_annotation

log = get_logger(__name__)

# A NAD missing from a synced cache is almost always really missing (a config
# error): wait only briefly for one created at the same moment as the pod.
DEFAULT_NAD_WAIT_MS = 500


@dataclass(frozen=True)
class Bounds:
    pod_wait_ms: int = 3000
    nad_wait_ms: int = DEFAULT_NAD_WAIT_MS
    status_wait_ms: int = 2000


def named_networks(pod: CachedPod, multus_namespace: str) -> list[Key]:
    """(namespace, name) of every NAD the pod's default-network and networks
    annotations name, as the gateway will resolve them; a malformed annotation
    names none (the gateway parses it again and reports the error)."""
    keys: list[Key] = []
    for annotation, default_namespace in (
        (DEFAULT_NETWORK_ANNOTATION, multus_namespace),
        (NETWORKS_ANNOTATION, pod.namespace),
    ):
        text = pod.annotations.get(annotation, "").strip()
        if not text:
            continue
        try:
            elements = parse_networks_annotation(text, default_namespace)
        except cni.CniError:
            continue
        keys.extend((e.namespace, e.name) for e in elements if (e.namespace, e.name) not in keys)
    return keys


class Cache:
    def __init__(
        self, source: ClusterSource, writer: StatusWriter, bounds: Bounds, multus_namespace: str = "kube-system"
    ) -> None:
        self.source = source
        self.writer = writer
        self.bounds = bounds
        self.multus_namespace = multus_namespace
        self._events: set[asyncio.Task[None]] = set()
        self.spam_filter = EventSpamFilter()

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

    def cached_networks(self, pod: CachedPod) -> list[CachedNad]:
        """The NADs the pod's annotations name that are cached now (a prefetch for the
        ADD path: one missing here is asked for with get_nad, which waits and reads live)."""
        found = (self.source.nads.get(key) for key in named_networks(pod, self.multus_namespace))
        return [nad for nad in found if nad is not None]

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

    async def update_network_status(
        self, write: StatusWrite, wait_ms: int = 0, events: Sequence[PodEvent] = ()
    ) -> WriteResult:
        """Write (or queue) the status; then, whatever came of it, emit `events` in the background."""
        try:
            return await self.writer.submit(write, (wait_ms or self.bounds.status_wait_ms) / 1000)
        finally:
            if events:
                task = asyncio.create_task(self._emit_quietly(events))
                self._events.add(task)  # referenced until it has run
                task.add_done_callback(self._events.discard)

    async def _emit_quietly(self, events: Sequence[PodEvent]) -> None:
        for event in events:
            try:
                await self.emit_event(event)
            except Exception as exc:  # best effort, as upstream's event recorder
                log.warning("cannot emit pod event", reason=event.reason, error=str(exc))

    async def drain_events(self) -> None:
        if self._events:
            await asyncio.gather(*self._events, return_exceptions=True)

    async def emit_event(self, event: PodEvent) -> None:
        """Send the event unless its pod used up its share (dropped silently, counted, as upstream)."""
        if not self.spam_filter.allow((event.namespace, event.name, event.uid), time.monotonic()):
            metrics.EVENTS_DROPPED.inc()
            return
        await self.source.emit_event(event)

    def stats(self) -> list[KindStats]:
        return [self.source.pods.stats(), self.source.nads.stats()]
