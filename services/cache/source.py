"""What a cluster source (the Kubernetes API, or a directory of YAML) offers the cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.cache.objects import CachedNad, CachedPod, Key
from services.cache.store import ObjectStore


@dataclass(frozen=True)
class StatusWrite:
    """Set a pod's network-status annotation ("" removes it)."""

    namespace: str
    name: str
    uid: str
    network_status_json: str

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class PodEvent:
    namespace: str
    name: str
    uid: str
    type: str  # Normal or Warning
    reason: str
    message: str


class ClusterSource(Protocol):
    description: str
    pods: ObjectStore[CachedPod]
    nads: ObjectStore[CachedNad]

    async def start(self) -> None:
        """Begin loading; returns without waiting for the initial sync."""

    async def wait_synced(self) -> None:
        """Return once every kind has been listed once."""

    async def stop(self) -> None: ...

    async def live_pod(self, namespace: str, name: str) -> CachedPod | None:
        """Ask the source itself, bypassing the cache; None when it does not exist.
        Raises SourceUnavailable when the source cannot answer."""

    async def live_nad(self, namespace: str, name: str) -> CachedNad | None: ...

    async def write_network_status(self, write: StatusWrite) -> None:
        """Deliver one write. Raises PodGone (drop it) or SourceUnavailable (retry)."""

    async def emit_event(self, event: PodEvent) -> None: ...
