"""What the CNI logic needs from the outside world, as protocols, so the domain
code stays free of gRPC, aiohttp and the OS (the adapters satisfy them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class PodView(Protocol):
    namespace: str
    name: str
    uid: str

    @property
    def annotations(self) -> Mapping[str, str]: ...


class NadView(Protocol):
    namespace: str
    name: str
    config: str

    @property
    def annotations(self) -> Mapping[str, str]: ...


class Cluster(Protocol):
    """The cache service: pods and NADs, network-status write-back, pod events."""

    async def get_pod(self, namespace: str, name: str, uid: str = "", *, wait_ms: int = 0, timeout: float) -> Any: ...

    async def get_network_attachment_definition(
        self, namespace: str, name: str, *, wait_ms: int = 0, timeout: float
    ) -> Any: ...

    async def update_network_status(
        self, namespace: str, name: str, uid: str, network_status_json: str, *, wait_ms: int = 0, timeout: float
    ) -> Any: ...

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
