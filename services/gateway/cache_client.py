"""The gateway's client for the cache service: one long-lived channel, every
call with a deadline, protobuf turned into the CNI logic's plain views, and
NOT_FOUND turned into the typed error the CNI logic decides on (pod unknown:
PodNotFound, code 11, so the runtime retries; NAD unknown: NetworkNotFound,
code 7; pod of a status write gone: PodGone)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from services.api import cache_pb2, cache_pb2_grpc
from services.common.errors import NetworkNotFound, PodGone, PodNotFound
from services.common.grpc_client import call, unix_channel
from services.gateway.ports import NadView, PodEventView, PodView

PEER = "cache"


def nad_view(nad: cache_pb2.NetworkAttachmentDefinition) -> NadView:
    return NadView(nad.namespace, nad.name, nad.config, dict(nad.annotations))


def pod_view(pod: cache_pb2.Pod) -> PodView:
    networks = {(nad.namespace, nad.name): nad_view(nad) for nad in pod.networks}
    return PodView(pod.namespace, pod.name, pod.uid, dict(pod.annotations), networks, deleting=pod.deleting)


class CacheClient:
    def __init__(self, socket_path: str) -> None:
        self._channel = unix_channel(socket_path)
        self._stub = cache_pb2_grpc.CacheStub(self._channel)

    async def get_pod(self, namespace: str, name: str, uid: str = "", *, wait_ms: int = 0, timeout: float) -> PodView:
        """The pod, waiting up to wait_ms for one not cached yet, with the cached NADs its
        annotations name (one call where there were 1 + N). A pod the API does not
        know is CNI code 11 (try again later), never a made-up success."""
        request = cache_pb2.GetPodRequest(namespace=namespace, name=name, uid=uid, wait_ms=wait_ms, with_networks=True)
        not_found = {
            grpc.StatusCode.NOT_FOUND: lambda details: PodNotFound(f"pod {namespace}/{name} not found", details)
        }
        pod: cache_pb2.Pod = await call(PEER, self._stub.GetPod, request, timeout, not_found)
        return pod_view(pod)

    async def get_network_attachment_definition(
        self, namespace: str, name: str, *, wait_ms: int = 0, timeout: float
    ) -> NadView:
        """The NAD; an unknown one is NetworkNotFound (code 7) naming namespace/name, as upstream words it."""
        request = cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace=namespace, name=name, wait_ms=wait_ms)
        not_found = {
            grpc.StatusCode.NOT_FOUND: lambda details: NetworkNotFound(
                f"cannot find a network-attachment-definition ({name}) in namespace ({namespace})", details
            )
        }
        nad: cache_pb2.NetworkAttachmentDefinition = await call(
            PEER, self._stub.GetNetworkAttachmentDefinition, request, timeout, not_found
        )
        return nad_view(nad)

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
        """Write network-status; False when the cache could not deliver it in time and
        queued it for background retry (the ADD still succeeds: the interfaces are attached).
        The cache emits `events` afterwards, in the background."""
        request = cache_pb2.UpdateNetworkStatusRequest(
            namespace=namespace,
            name=name,
            uid=uid,
            network_status_json=network_status_json,
            wait_ms=wait_ms,
            events=[cache_pb2.PodEvent(type=e.type, reason=e.reason, message=e.message) for e in events],
        )
        gone = {grpc.StatusCode.NOT_FOUND: lambda details: PodGone(f"pod {namespace}/{name} is gone", details)}
        response: cache_pb2.UpdateNetworkStatusResponse = await call(
            PEER, self._stub.UpdateNetworkStatus, request, timeout, gone
        )
        return response.delivered

    async def emit_pod_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        event_type: str,
        reason: str,
        message: str,
        *,
        timeout: float,
    ) -> None:
        """A pod event as upstream emits them (AddedInterface, NoNetworkFound)."""
        request = cache_pb2.EmitPodEventRequest(
            namespace=namespace, name=name, uid=uid, type=event_type, reason=reason, message=message
        )
        await call(PEER, self._stub.EmitPodEvent, request, timeout)

    async def watch_pods(self) -> AsyncIterator[tuple[str, PodView]]:
        """This node's pods as they change: ("SNAPSHOT", pod)..., ("SYNCED", -), then
        ("UPDATED", pod) / ("DELETED", pod with namespace and name only). Ends with the
        stream (grpc.aio.AioRpcError when the cache goes away); no deadline: it is long-lived."""
        stream = self._stub.WatchPods(cache_pb2.WatchPodsRequest(), wait_for_ready=True)
        try:
            async for change in stream:
                yield cache_pb2.PodChange.Kind.Name(change.kind), pod_view(change.pod)
        finally:
            stream.cancel()

    async def close(self) -> None:
        await self._channel.close()
