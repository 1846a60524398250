"""RBAC preflight: a SelfSubjectAccessReview for every permission the node needs,
at start and periodically. A missing one is logged with the ClusterRole rule
that fixes it, exported as a metric and recorded in the ledger (health)."""

from __future__ import annotations

import asyncio

from services.certs import kube, metrics, rbac
from services.certs.api_access import usable_kubeconfig
from services.certs.clock import Clock
from services.certs.ledger import CredentialLedger
from services.certs.sources import ApiSource
from services.common.logs import get_logger

log = get_logger(__name__)

INTERVAL_SECONDS = 300.0
RETRY_SECONDS = 15.0


class RbacPreflight:
    def __init__(
        self,
        permissions: tuple[rbac.Permission, ...],
        source: ApiSource,
        ledger: CredentialLedger,
        clock: Clock,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.permissions = permissions
        self.source = source
        self.ledger = ledger
        self.clock = clock
        self.interval = interval

    async def run(self) -> None:
        api_kubeconfig = await usable_kubeconfig(self.source, self.clock)
        while True:
            try:
                missing = await self.check(api_kubeconfig)
                delay = self.interval
                if missing:
                    log.warning("RBAC preflight: permissions missing", count=len(missing))
                else:
                    log.info("RBAC preflight: every permission granted", checked=len(self.permissions))
            except kube.KubeError as exc:
                log.warning("RBAC preflight could not run", error=str(exc))
                delay = RETRY_SECONDS
            await self.clock.sleep_until(self.clock.now() + delay)

    async def check(self, api_kubeconfig: str) -> tuple[rbac.Permission, ...]:
        allowed = await asyncio.to_thread(self._review, api_kubeconfig)
        missing = tuple(rbac.missing_permissions(self.permissions, allowed))
        for perm in self.permissions:
            metrics.RBAC_PERMISSION_MISSING.labels(
                verb=perm.verb, resource=perm.resource, subresource=perm.subresource
            ).set(1 if perm in missing else 0)
        for perm in missing:
            log.error("RBAC permission missing", permission=perm.describe(), fix=rbac.fix_rule(perm))
        self.ledger.set_missing_permissions(missing)
        return missing

    def _review(self, api_kubeconfig: str) -> dict[rbac.Permission, bool]:
        api = kube.new_client(api_kubeconfig)
        try:
            return {perm: kube.access_allowed(api, perm) for perm in self.permissions}
        finally:
            kube.close(api)
