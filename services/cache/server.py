"""Wiring: choose the cluster source (a directory of YAML, or the Kubernetes
API), serve multus.cache.v1.Cache, and report SERVING once every kind synced."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

import grpc

from services.api import cache_pb2, cache_pb2_grpc
from services.cache.cache import Bounds, Cache
from services.cache.servicer import CacheServicer
from services.cache.source import ClusterSource
from services.cache.stats_metrics import CacheStateCollector
from services.cache.status_journal import StatusJournal
from services.cache.status_writer import StatusWriter
from services.common.config import DaemonConfig, node_name
from services.common.grpc_server import start_configured_service
from services.common.logs import get_logger
from services.common.metrics import register_collector

log = get_logger(__name__)

SERVICE_NAME = cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name


def state_dir(config: DaemonConfig) -> str:
    return os.path.join(config.run_dir, "cache")


def make_source(config: DaemonConfig) -> ClusterSource:
    if config.cluster_dir:
        from services.cache.file_source import FileSource

        return FileSource(config.cluster_dir, state_dir(config))
    # The kubernetes client is imported only when the API is used.
    from services.cache.kube_source import KubeSource

    return KubeSource(config, node_name())


async def serve(config: DaemonConfig, args: argparse.Namespace | None = None) -> None:
    source = make_source(config)
    writer = StatusWriter(
        source.write_network_status, source.emit_event, journal=StatusJournal(config.status_queue_dir)
    )
    bounds = Bounds(pod_wait_ms=config.pod_wait_ms, status_wait_ms=config.status_write_wait_ms)
    cache = Cache(source, writer, bounds, config.multus_namespace)
    register_collector("cache-state", CacheStateCollector(cache.stats))

    def register(server: grpc.aio.Server) -> list[str]:
        cache_pb2_grpc.add_CacheServicer_to_server(CacheServicer(cache), server)
        return [SERVICE_NAME]

    svc = await start_configured_service("cache", config, register)
    await source.start()
    await writer.resume()  # writes a previous run queued (the worker waits out an unreachable API)

    async def report_synced() -> None:
        await source.wait_synced()
        await svc.set_serving(True)
        log.info("cache synced", source=source.description, pods=len(source.pods), nads=len(source.nads))

    synced = asyncio.create_task(report_synced())
    try:
        await svc.wait_for_stop()
    finally:
        log.info("cache stopping")
        synced.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await synced
        await svc.set_serving(False)
        await svc.stop()
        await cache.drain_events()
        await writer.stop()
        await source.stop()
