"""Wiring: the delegate runner, the Executor servicer, health and metrics."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from services.api import executor_pb2, executor_pb2_grpc
from services.common.config import DaemonConfig
from services.common.grpc_server import ServiceServer, start_configured_service
from services.common.logs import get_logger
from services.common.peercred import PeerCredFront, private_socket_path
from services.executor.guard import CallerPolicy
from services.executor.guardian import Guardian, leads_session
from services.executor.runner import DelegateRunner, RunnerSettings
from services.executor.servicer import ExecutorServicer

log = get_logger(__name__)

HEALTH_INTERVAL = 2.0
SERVICE_NAME = executor_pb2.DESCRIPTOR.services_by_name["Executor"].full_name


async def keep_health(settings: RunnerSettings, svc: ServiceServer) -> None:
    """SERVING exactly while delegates can run (a chrootDir mounted late is picked up)."""
    serving: bool | None = None
    while True:
        problems = settings.problems()
        if (not problems) != serving:
            serving = not problems
            await svc.set_serving(serving)
            if problems:
                log.error("executor cannot run delegates", problems=problems)
            else:
                log.info("executor serving")
        await asyncio.sleep(HEALTH_INTERVAL)


def use_pidfd_child_watcher() -> None:
    """Reap plugins through pidfds on the event loop. Python 3.11's default
    watcher starts a waitpid thread for every plugin process, which costs
    about a millisecond per delegate on the CNI hot path; 3.12+ already
    defaults to pidfds."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # kernel without pidfd_open (< 5.3): keep the threaded watcher
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def start_guardian() -> Guardian | None:
    """The guardian that kills plugins the executor leaves behind (guardian.py), when
    this process leads its session; None (plugins through setpriv) otherwise."""
    if not leads_session():
        log.info("executor does not lead a session; plugins go through setpriv")
        return None
    guardian = Guardian(os.getpid())
    return guardian if guardian.start(asyncio.get_running_loop()) else None


async def serve(config: DaemonConfig, args: argparse.Namespace | None = None) -> None:
    use_pidfd_child_watcher()
    settings = RunnerSettings.from_config(config)
    guardian = start_guardian()
    runner = DelegateRunner(settings, guardian)
    socket_path = getattr(args, "socket", None) or config.grpc_socket("executor")
    # Every call through the peer-credential front: the guard decides per method by SO_PEERCRED.
    front = PeerCredFront(socket_path, private_socket_path(socket_path))
    servicer = ExecutorServicer(runner, CallerPolicy.from_config(config), front.peer_of)

    def register(server: grpc.aio.Server) -> list[str]:
        executor_pb2_grpc.add_ExecutorServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    svc = await start_configured_service(
        "executor",
        config,
        register,
        socket_path=socket_path,
        health_port=getattr(args, "health_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        peer_front=front,
    )
    missing = [d for d in settings.bin_dirs if not os.path.isdir(d)]
    if missing:
        log.warning("CNI bin dirs missing", bin_dirs=missing)
    if guardian is None and not settings.setpriv_program:
        log.warning("setpriv not found: plugins outlive an executor that dies mid-call")
    health = asyncio.create_task(keep_health(settings, svc))
    log.info(
        "executor ready",
        bin_dirs=list(settings.bin_dirs),
        chroot_dir=settings.chroot_dir,
        max_concurrency=settings.max_concurrency,
        operator_exec=config.executor_allow_operator_exec,
        gateway_uid=config.gateway_uid,
        guardian=guardian.pid if guardian else None,
    )
    try:
        await svc.wait_for_stop()
    finally:
        health.cancel()
        await svc.stop()
        if guardian is not None:
            await guardian.close()
