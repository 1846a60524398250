"""What the CNI logic needs from the outside world, as protocols and plain
values, so the domain code stays free of gRPC, aiohttp and the OS (the
adapters satisfy them, and the in-process tests fake them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class NadView:
    """What the CNI logic reads of a NetworkAttachmentDefinition."""

    namespace: str
    name: str
    config: str = ""  # spec.config, "" when the NAD has none
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodView:
    """What the CNI logic reads of a pod (the cache's trimmed copy)."""

    namespace: str
    name: str
    uid: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The NADs its annotations name, as the cache held them when it answered for the
    # pod, by (namespace, name): the resolver asks the cache only for the others.
    networks: Mapping[tuple[str, str], NadView] = field(default_factory=dict)
    deleting: bool = False  # metadata.deletionTimestamp is set

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodEventView:
    """An event about a pod, as upstream emits them (AddedInterface, NoNetworkFound)."""

    type: str  # Normal or Warning
    reason: str
    message: str


class Cluster(Protocol):
    """The cache service: pods and NADs, network-status write-back, pod events.

    Failures are CniErrors from services.common.errors: PodNotFound and
    NetworkNotFound for unknown objects, PodGone when the pod of a status write
    is gone, PeerUnavailable when the cache (or the API behind it) is down."""

    async def get_pod(
        self, namespace: str, name: str, uid: str = "", *, wait_ms: int = 0, timeout: float
    ) -> PodView: ...

    async def get_network_attachment_definition(
        self, namespace: str, name: str, *, wait_ms: int = 0, timeout: float
    ) -> NadView: ...

    async def update_network_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        network_status_json: str,
        *,
        wait_ms: int = 0,
        timeout: float,
        events: Sequence[PodEventView] = (),
    ) -> bool:
        """True when written, False when queued in the cache for background retry.
        `events` are emitted by the cache in the background once the write was tried."""
        ...

    async def emit_pod_event(
        self, namespace: str, name: str, uid: str, event_type: str, reason: str, message: str, *, timeout: float
    ) -> None: ...


class RouteEditor(Protocol):
    """Default-route changes inside a pod's netns (the executor's netlink)."""

    async def replace_default_routes(
        self, netns: str, ifname: str, drop_v4: bool, drop_v6: bool, gateways: tuple[str, ...]
    ) -> None: ...


class DeviceInfoSource(Protocol):
    """Device IDs allocated to a pod per resource name (kubelet PodResources, checkpoint fallback)."""

    async def device_ids(self, pod_namespace: str, pod_name: str, pod_uid: str) -> Mapping[str, list[str]]: ...
