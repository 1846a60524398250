"""The workers that talk to the API server (imported only when one is used)."""

from __future__ import annotations

import random
from collections.abc import Coroutine
from typing import Any

from services.certs import rbac, schedule
from services.certs.clock import Clock
from services.certs.delegate_token import DelegateTokenSettings, DelegateTokenWriter
from services.certs.ledger import CredentialLedger
from services.certs.node_cert import CertificateStore, NodeCertificateRotator, NodeCertificateSettings
from services.certs.pki_client import PkiWorker
from services.certs.preflight import INTERVAL_SECONDS, RbacPreflight
from services.certs.sources import PER_NODE_CERTIFICATE, ApiSource
from services.common.config import DaemonConfig

# Our own daemon-config key: seconds between RBAC preflight runs.
PREFLIGHT_INTERVAL_KEY = "rbacPreflightIntervalSeconds"


def api_workers(
    cfg: DaemonConfig,
    node: str,
    source: ApiSource,
    ledger: CredentialLedger,
    clock: Clock,
    rng: random.Random,
    pki: PkiWorker,
) -> list[Coroutine[Any, Any, None]]:
    per_node = source.kind == PER_NODE_CERTIFICATE
    jobs: list[Coroutine[Any, Any, None]] = []
    if per_node:
        pnc = cfg.per_node_certificate
        settings = NodeCertificateSettings(
            node=node,
            bootstrap_kubeconfig=pnc.bootstrap_kubeconfig,
            duration_seconds=int(schedule.parse_duration(pnc.cert_duration)),
        )
        store = CertificateStore(pnc.cert_dir, group_readable=bool(cfg.grpc_socket_group), pki=pki)
        rotator = NodeCertificateRotator(settings, store, ledger, clock, rng)
        jobs.append(rotator.run())
    if cfg.delegate_service_account:
        token_settings = DelegateTokenSettings(
            namespace=cfg.multus_namespace,
            service_account=cfg.delegate_service_account,
            audience=cfg.delegate_token_audience,
            seconds=cfg.delegate_token_seconds,
            kubeconfig_path=cfg.delegate_kubeconfig_path,
        )
        jobs.append(DelegateTokenWriter(token_settings, source, ledger, clock, rng).run())
    permissions = rbac.required_permissions(
        per_node_certificate=per_node,
        delegate_namespace=cfg.multus_namespace,
        delegate_service_account=cfg.delegate_service_account,
    )
    interval = float(cfg.raw.get(PREFLIGHT_INTERVAL_KEY, INTERVAL_SECONDS))
    jobs.append(RbacPreflight(permissions, source, ledger, clock, interval).run())
    return jobs
