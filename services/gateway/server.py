"""Wiring of the gateway: domain objects and adapters, the upstream HTTP API on
<socketDir>/multus.sock, the gRPC Gateway API, metrics, DEL spool replay
before readiness, and draining in-flight requests on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Iterable

import grpc

from services.api import gateway_pb2, gateway_pb2_grpc
from services.common.config import DaemonConfig
from services.common.grpc_server import start_configured_service
from services.common.logs import get_logger
from services.common.metrics import start_metrics_server
from services.gateway.cache_client import CacheClient
from services.gateway.certs_client import CertsClient
from services.gateway.cni_service import CniService
from services.gateway.config_manager import ConfigManager
from services.gateway.core import Timeouts
from services.gateway.credentials_gate import delegate_credentials_expected, wait_for_delegate_credentials
from services.gateway.device_info import DeviceInfoFiles, DevicePluginCheckpoint, KubeletDeviceInfo
from services.gateway.dispatch import Dispatcher
from services.gateway.dynamic_networks import DynamicNetworks
from services.gateway.executor_client import ExecutorClient, executor_sockets
from services.gateway.executor_routes import ExecutorRouteEditor
from services.gateway.executor_runner import ExecutorRunner
from services.gateway.http_api import Readiness, build_app, start_unix_site
from services.gateway.invoke import NetworkInvoker
from services.gateway.operator_api import build_operator_servicer
from services.gateway.podresources import PodResourcesClient
from services.gateway.records import RecordStore
from services.gateway.resolver import NetworkResolver
from services.gateway.spool import SpoolBounds, SpoolReplayer, spool_condition, spool_dir

log = get_logger(__name__)

DRAIN_SECONDS = 30.0
# gRPC health name of the DEL spool's condition (services/gateway/spool.py):
# NOT_SERVING while a spooled DEL was given up or waits too long. It never
# gates readiness: a stuck DEL must not keep every pod on the node from starting.
SPOOL_HEALTH = "del-spool"
SPOOL_HEALTH_SECONDS = 5.0
# Rolled-back marks (services/gateway/records.py) older than this are dropped.
ABANDONED_MARK_TTL = 3600.0


async def serve(config: DaemonConfig, args: argparse.Namespace | None = None) -> None:
    timeouts = Timeouts.from_config(config)
    executor = ExecutorClient(executor_sockets(config))
    cache = CacheClient(config.grpc_socket("cache"))
    certs = CertsClient(config.grpc_socket("certs"))
    invoker = NetworkInvoker(ExecutorRunner(executor, timeout=timeouts.delegate))
    # Device IDs for NADs with a resourceName: the kubelet PodResources API, checkpoint as fallback.
    pod_resources = PodResourcesClient(config.pod_resources_socket) if config.pod_resources_socket else None
    device_info = KubeletDeviceInfo(pod_resources, DevicePluginCheckpoint(config.device_plugin_checkpoint))
    resolver = NetworkResolver(
        cache, cni_config_dir=config.cni_config_dir, device_info=device_info, timeout=timeouts.cluster
    )
    service = CniService(
        config,
        cluster=cache,
        invoker=invoker,
        records=RecordStore(config.records_dir),
        resolver=resolver,
        routes=ExecutorRouteEditor(executor, timeout=timeouts.delegate),
        timeouts=timeouts,
        device_files=DeviceInfoFiles(config.device_info_dir),
    )
    dispatcher = Dispatcher(service)
    readiness = Readiness()
    config_manager = ConfigManager(config)
    servicer = build_operator_servicer(
        config,
        dispatcher,
        service,
        cluster=cache,
        resolver=resolver,
        readiness=readiness,
        executor=executor,
        config_manager=config_manager,
    )

    def register(server: grpc.aio.Server) -> Iterable[str]:
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
        return (gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,)

    grpc_service = await start_configured_service("gateway", config, register)
    if config.metrics_port:  # upstream's key: its request counter, served only when set
        start_metrics_server(config.metrics_port)
    http = await start_unix_site(build_app(dispatcher, readiness), config.daemon_socket_path)
    # Ready = the node's Multus CNI config in place (config manager), the DEL spool's
    # first replay done and the delegates' API credentials written; the last two are
    # waited for a bounded time each (spoolReadinessHoldSeconds,
    # delegateCredentialsWaitSeconds), then the gateway goes ready anyway and says why.
    spool_settled = False
    credentials_settled = False
    replayer = SpoolReplayer(spool_dir(config.socket_dir), dispatcher.cni, SpoolBounds.from_config(config))
    first_pass = asyncio.Event()

    async def publish_readiness(_state: object = None) -> None:
        was = readiness.ready
        readiness.ready = spool_settled and credentials_settled and config_manager.ready
        if readiness.ready and not was:
            log.info("gateway ready", socket=config.daemon_socket_path)
        if not readiness.draining:
            await grpc_service.set_serving(readiness.ready)

    async def replay_spool_forever() -> None:
        try:
            report = await replayer.replay_due()
            if report.replayed or report.failed or report.dead:
                log.info(
                    "DEL spool replayed",
                    replayed=len(report.replayed),
                    failed=len(report.failed),
                    given_up=len(report.dead),
                )
        finally:
            first_pass.set()
        await replayer.run_forever()

    async def settle_spool() -> None:
        nonlocal spool_settled
        try:
            await asyncio.wait_for(first_pass.wait(), config.spool_readiness_hold_seconds)
        except TimeoutError:
            log.warning(
                "ready before the DEL spool is replayed; replay goes on in the background",
                held_seconds=config.spool_readiness_hold_seconds,
            )
        spool_settled = True
        await publish_readiness()

    async def keep_spool_health() -> None:
        while True:
            condition = await asyncio.to_thread(spool_condition, replayer.directory)
            if not readiness.draining:
                await grpc_service.set_serving(condition.healthy, SPOOL_HEALTH)
            if not condition.healthy:
                log.warning("DEL spool unhealthy", reason=condition.reason, pending=condition.pending)
            await asyncio.to_thread(service.core.records.sweep_abandoned, ABANDONED_MARK_TTL)
            await asyncio.sleep(SPOOL_HEALTH_SECONDS)

    async def settle_credentials() -> None:
        nonlocal credentials_settled
        if delegate_credentials_expected(config):
            outcome = await wait_for_delegate_credentials(
                lambda: certs.delegate_credentials_state(timeout=2.0), config.delegate_credentials_wait_seconds
            )
        else:
            outcome = "none expected (no delegateServiceAccount, or a file-backed cluster)"
        log.info("delegate API credentials", outcome=outcome)
        credentials_settled = True
        await publish_readiness()

    config_manager.add_listener(publish_readiness)
    config_manager.start()
    dynamic = DynamicNetworks(service.core) if config.dynamic_networks else None
    follower = asyncio.create_task(dynamic.follow(cache.watch_pods)) if dynamic is not None else None
    background = [
        asyncio.create_task(settle_credentials()),
        asyncio.create_task(replay_spool_forever()),
        asyncio.create_task(settle_spool()),
        asyncio.create_task(keep_spool_health()),
    ]
    try:
        log.info("gateway serving", socket=config.daemon_socket_path)
        await grpc_service.wait_for_stop()
    finally:
        # Drain: stop answering ready, stop accepting, let in-flight requests finish.
        readiness.draining = True
        for task in background:
            task.cancel()
        if follower is not None and dynamic is not None:
            follower.cancel()
            await dynamic.stop()
        await config_manager.stop()  # leaves 00-multus.conf in place: the node stays Ready across restarts
        await grpc_service.set_serving(False)
        for site in list(http.sites):
            await site.stop()
        drained = await dispatcher.wait_idle(DRAIN_SECONDS)
        log.info("gateway draining done", drained=drained, in_flight=dispatcher.in_flight)
        dispatcher.accepting = False
        await grpc_service.stop(grace=5.0)
        await http.cleanup()
        await service.drain_background()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.daemon_socket_path)
        await executor.close()
        await cache.close()
        await certs.close()
        if pod_resources is not None:
            await pod_resources.close()
