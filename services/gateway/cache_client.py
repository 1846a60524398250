"""The gateway's client for the cache service: one long-lived channel, every
call with a deadline, and NOT_FOUND turned into the CNI error the runtime
should see (pod unknown: code 11, so it retries; NAD unknown: code 7)."""

from __future__ import annotations

import grpc

from services.api import cache_pb2, cache_pb2_grpc
from services.common import cni
from services.common.grpc_client import call, cni_error_from_rpc, unix_channel
from services.common.logs import context_metadata

PEER = "cache"


class CacheClient:
    def __init__(self, socket_path: str) -> None:
        self._channel = unix_channel(socket_path)
        self._stub = cache_pb2_grpc.CacheStub(self._channel)

    async def get_pod(
        self, namespace: str, name: str, uid: str = "", *, wait_ms: int = 0, timeout: float
    ) -> cache_pb2.Pod:
        """The pod, waiting up to wait_ms for one not cached yet. A pod the API does
        not know is CNI code 11 (try again later), never a made-up success."""
        request = cache_pb2.GetPodRequest(namespace=namespace, name=name, uid=uid, wait_ms=wait_ms)
        try:
            pod: cache_pb2.Pod = await self._stub.GetPod(
                request, timeout=timeout, wait_for_ready=True, metadata=context_metadata()
            )
            return pod
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise cni.CniError(
                    cni.TRY_AGAIN_LATER, f"pod {namespace}/{name} not found", err.details() or ""
                ) from err
            raise cni_error_from_rpc(PEER, err) from err

    async def get_network_attachment_definition(
        self, namespace: str, name: str, *, wait_ms: int = 0, timeout: float
    ) -> cache_pb2.NetworkAttachmentDefinition:
        """The NAD; an unknown one is CNI code 7 (invalid config) naming namespace/name."""
        request = cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace=namespace, name=name, wait_ms=wait_ms)
        try:
            nad: cache_pb2.NetworkAttachmentDefinition = await self._stub.GetNetworkAttachmentDefinition(
                request, timeout=timeout, wait_for_ready=True, metadata=context_metadata()
            )
            return nad
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise cni.CniError(
                    cni.INVALID_CONFIG,
                    f"NetworkAttachmentDefinition {namespace}/{name} not found",
                    err.details() or "",
                ) from err
            raise cni_error_from_rpc(PEER, err) from err

    async def update_network_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        network_status_json: str,
        *,
        wait_ms: int = 0,
        timeout: float,
    ) -> cache_pb2.UpdateNetworkStatusResponse:
        """Write network-status; `delivered` is false when the cache queued it for
        background retry (the ADD still succeeds: the interfaces are attached)."""
        request = cache_pb2.UpdateNetworkStatusRequest(
            namespace=namespace, name=name, uid=uid, network_status_json=network_status_json, wait_ms=wait_ms
        )
        return await call(PEER, self._stub.UpdateNetworkStatus, request, timeout)

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

    async def stats(self, *, timeout: float) -> cache_pb2.StatsResponse:
        return await call(PEER, self._stub.Stats, cache_pb2.StatsRequest(), timeout)

    async def close(self) -> None:
        await self._channel.close()
