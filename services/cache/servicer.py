"""multus.cache.v1.Cache: protobuf <-> domain translation and the one table
mapping cache errors to gRPC status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import grpc

from services.api import cache_pb2, cache_pb2_grpc
from services.cache.cache import Cache
from services.cache.errors import (
    CacheError,
    NadNotFound,
    PodGone,
    PodNotFound,
    SourceForbidden,
    SourceUnavailable,
    StalePod,
)
from services.cache.objects import CachedNad, CachedPod
from services.cache.pod_stream import watch_pods
from services.cache.source import PodEvent, StatusWrite

T = TypeVar("T")

# Most specific first.
_ERROR_STATUS: tuple[tuple[type[CacheError], grpc.StatusCode], ...] = (
    (PodNotFound, grpc.StatusCode.NOT_FOUND),
    (NadNotFound, grpc.StatusCode.NOT_FOUND),
    (PodGone, grpc.StatusCode.NOT_FOUND),
    (StalePod, grpc.StatusCode.FAILED_PRECONDITION),
    (SourceForbidden, grpc.StatusCode.PERMISSION_DENIED),
    (SourceUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_for(error: CacheError) -> grpc.StatusCode:
    for kind, code in _ERROR_STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def pod_message(pod: CachedPod, networks: Sequence[CachedNad] = ()) -> cache_pb2.Pod:
    return cache_pb2.Pod(
        namespace=pod.namespace,
        name=pod.name,
        uid=pod.uid,
        node_name=pod.node_name,
        annotations=dict(pod.annotations),
        labels=dict(pod.labels),
        resource_version=pod.resource_version,
        deleting=pod.deleting,
        networks=[nad_message(nad) for nad in networks],
    )


def nad_message(nad: CachedNad) -> cache_pb2.NetworkAttachmentDefinition:
    return cache_pb2.NetworkAttachmentDefinition(
        namespace=nad.namespace,
        name=nad.name,
        config=nad.config,
        annotations=dict(nad.annotations),
        resource_version=nad.resource_version,
    )


class CacheServicer(cache_pb2_grpc.CacheServicer):  # type: ignore[misc]
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def _run(self, work: Awaitable[T], context: Any) -> T:
        try:
            return await work
        except CacheError as exc:
            await context.abort(status_for(exc), str(exc))
            raise  # unreachable: abort raises

    @staticmethod
    async def _require(context: Any, **fields: str) -> None:
        missing = [name for name, value in fields.items() if not value]
        if missing:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"missing {', '.join(missing)}")

    async def GetPod(self, request: cache_pb2.GetPodRequest, context: Any) -> cache_pb2.Pod:
        await self._require(context, namespace=request.namespace, name=request.name)
        pod = await self._run(
            self.cache.get_pod(request.namespace, request.name, request.uid, request.wait_ms), context
        )
        return pod_message(pod, self.cache.cached_networks(pod) if request.with_networks else ())

    async def GetNetworkAttachmentDefinition(
        self, request: cache_pb2.GetNetworkAttachmentDefinitionRequest, context: Any
    ) -> cache_pb2.NetworkAttachmentDefinition:
        await self._require(context, namespace=request.namespace, name=request.name)
        nad = await self._run(self.cache.get_nad(request.namespace, request.name, request.wait_ms), context)
        return nad_message(nad)

    async def UpdateNetworkStatus(
        self, request: cache_pb2.UpdateNetworkStatusRequest, context: Any
    ) -> cache_pb2.UpdateNetworkStatusResponse:
        await self._require(context, namespace=request.namespace, name=request.name)
        write = StatusWrite(request.namespace, request.name, request.uid, request.network_status_json)
        events = [
            PodEvent(request.namespace, request.name, request.uid, e.type or "Normal", e.reason, e.message)
            for e in request.events
            if e.reason
        ]
        result = await self._run(self.cache.update_network_status(write, request.wait_ms, events), context)
        return cache_pb2.UpdateNetworkStatusResponse(delivered=result.delivered, message=result.message)

    async def EmitPodEvent(
        self, request: cache_pb2.EmitPodEventRequest, context: Any
    ) -> cache_pb2.EmitPodEventResponse:
        await self._require(context, namespace=request.namespace, name=request.name, reason=request.reason)
        event = PodEvent(
            request.namespace,
            request.name,
            request.uid,
            request.type or "Normal",
            request.reason,
            request.message,
        )
        await self._run(self.cache.emit_event(event), context)
        return cache_pb2.EmitPodEventResponse()

    async def Stats(self, request: cache_pb2.StatsRequest, context: Any) -> cache_pb2.StatsResponse:
        kinds = [
            cache_pb2.KindStats(
                kind=s.kind,
                count=s.count,
                resource_version=s.resource_version,
                last_sync_unix=s.last_sync_unix,
                watch_restarts=s.watch_restarts,
                synced=s.synced,
            )
            for s in self.cache.stats()
        ]
        return cache_pb2.StatsResponse(kinds=kinds, source=self.cache.source.description)

    async def WatchPods(self, request: cache_pb2.WatchPodsRequest, context: Any) -> AsyncIterator[cache_pb2.PodChange]:
        async for change in watch_pods(self.cache.source.pods):
            kind = change.kind  # the enum's value names
            if change.pod is not None:
                yield cache_pb2.PodChange(kind=kind, pod=pod_message(change.pod))
            else:
                namespace, name = change.key
                yield cache_pb2.PodChange(kind=kind, pod=cache_pb2.Pod(namespace=namespace, name=name))
