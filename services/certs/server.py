"""Wiring: decide the API source, start the credential workers, serve
multus.certs.v1.Certs, and keep health and metrics in step with the ledger."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
from collections.abc import Coroutine, Mapping
from typing import Any

import grpc

from services.api import certs_pb2, certs_pb2_grpc
from services.certs import metrics
from services.certs.clock import Clock, SystemClock
from services.certs.ledger import CredentialLedger, credential_state, unhealthy_reasons
from services.certs.pki_client import PkiWorker
from services.certs.servicer import CertsServicer
from services.certs.sources import PER_NODE_CERTIFICATE, STANDALONE, ApiSource, api_source, in_pod
from services.certs.static_credential import watch_static_credential
from services.common.config import DaemonConfig, node_name
from services.common.grpc_server import ServiceServer, start_configured_service
from services.common.logs import get_logger

log = get_logger(__name__)

HEALTH_INTERVAL = 1.0


class CertsApp:
    """Every credential worker of one node, sharing one ledger."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        node: str,
        environ: Mapping[str, str],
        clock: Clock,
        rng: random.Random,
        running_in_pod: bool,
    ) -> None:
        self.config = config
        self.node = node
        self.clock = clock
        self.rng = rng
        self.running_in_pod = running_in_pod
        self.environ = dict(environ)
        self.source: ApiSource = api_source(config, environ, running_in_pod)
        self.ledger = CredentialLedger(self.source.kubeconfig)
        # Cryptography runs in short-lived worker processes, never in this one (docs/certs.md).
        self.pki = PkiWorker()
        self._tasks: list[asyncio.Task[None]] = []

    def workers(self) -> list[Coroutine[Any, Any, None]]:
        from services.certs import workers  # the kubernetes client is imported only when the API is used

        if self.source.kind == STANDALONE:
            return [self._watch_static()]
        jobs: list[Coroutine[Any, Any, None]] = []
        if self.source.kind != PER_NODE_CERTIFICATE:
            jobs.append(self._watch_static())
        jobs.extend(
            workers.api_workers(self.config, self.node, self.source, self.ledger, self.clock, self.rng, self.pki)
        )
        return jobs

    def _watch_static(self) -> Coroutine[Any, Any, None]:
        return watch_static_credential(self.source, self.ledger, self.clock, self.running_in_pod, self.pki)

    def start(self) -> None:
        for job in self.workers():
            self._tasks.append(asyncio.create_task(self._guard(job)))

    async def _guard(self, job: Coroutine[Any, Any, None]) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("credential worker failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def export_metrics(ledger: CredentialLedger, now: float) -> None:
    snap = ledger.snapshot(now)
    for cred in snap.credentials:
        if cred.not_after > 0:
            metrics.CREDENTIAL_EXPIRY.labels(credential=cred.name).set(cred.not_after)
            if cred.issued > 0:  # alerts compare the time left with the lifetime
                metrics.CREDENTIAL_ISSUED.labels(credential=cred.name).set(cred.issued)
    metrics.CREDENTIALS_HEALTHY.set(1 if snap.healthy(now) else 0)


async def keep_health(app: CertsApp, svc: ServiceServer) -> None:
    """Health follows the ledger: NOT_SERVING while a credential is expired,
    in its last 10% without renewal, missing when required, or a permission is missing."""
    serving: bool | None = None
    reasons_logged: list[str] = []
    version = -1
    while True:
        now = app.clock.now()
        app.ledger.tick(now)
        snap = app.ledger.snapshot(now)
        reasons = unhealthy_reasons(snap.credentials, snap.missing_permissions, now)
        healthy = not reasons
        if snap.version != version:
            export_metrics(app.ledger, now)
            version = snap.version
        if healthy != serving:
            await svc.set_serving(healthy)
            serving = healthy
            log.info(
                "credential health",
                serving=healthy,
                states={c.name: credential_state(c, now) for c in snap.credentials},
            )
        if reasons and reasons != reasons_logged:
            log.warning("credentials unhealthy", reasons=reasons)
        reasons_logged = reasons
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.ledger.wait_for_change(snap.version), HEALTH_INTERVAL)


async def serve(config: DaemonConfig, args: argparse.Namespace | None = None) -> None:
    app = CertsApp(
        config,
        node=node_name(),
        environ=os.environ,
        clock=SystemClock(),
        rng=random.Random(),
        running_in_pod=in_pod(os.environ),
    )
    log.info("certs starting", node=app.node, api_source=app.source.kind, kubeconfig=app.source.kubeconfig)
    servicer = CertsServicer(app.ledger, app.clock)

    def register(server: grpc.aio.Server) -> list[str]:
        certs_pb2_grpc.add_CertsServicer_to_server(servicer, server)
        return [certs_pb2.DESCRIPTOR.services_by_name["Certs"].full_name]

    svc = await start_configured_service("certs", config, register)
    app.start()
    health = asyncio.create_task(keep_health(app, svc))
    try:
        await svc.wait_for_stop()
    finally:
        health.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await health
        await app.stop()
        await svc.stop()
