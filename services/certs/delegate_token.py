"""Delegate credentials: a TokenRequest token for the configured ServiceAccount,
written with a kubeconfig to <cniConfigDir>/multus.d/multus.kubeconfig (the path
delegates and thin-mode tooling look for), refreshed at 80% of its TTL. The
kubeconfig names the token by a relative tokenFile, so the same file works on
the host and inside a delegate's chroot, and a refresh replaces only the token."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass

from services.certs import kube, kubeconfig, metrics, schedule
from services.certs.api_access import usable_kubeconfig
from services.certs.clock import Clock
from services.certs.ledger import DELEGATE_TOKEN, Credential, CredentialLedger
from services.certs.sources import ApiSource
from services.common.files import read_or_none, write_atomic
from services.common.logs import get_logger

log = get_logger(__name__)

TOKEN_FILE = "multus.token"


@dataclass(frozen=True)
class DelegateTokenSettings:
    namespace: str
    service_account: str
    audience: str
    seconds: int
    kubeconfig_path: str

    @property
    def token_path(self) -> str:
        return os.path.join(os.path.dirname(self.kubeconfig_path), TOKEN_FILE)


class DelegateTokenWriter:
    def __init__(
        self,
        settings: DelegateTokenSettings,
        source: ApiSource,
        ledger: CredentialLedger,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.source = source
        self.ledger = ledger
        self.clock = clock
        self.rng = rng
        # Listed as MISSING from construction, before the certs service answers its
        # first call: the gateway holds readiness (bounded) until this turns VALID, so
        # the first pods' delegates never run without API credentials.
        self.ledger.publish(Credential(DELEGATE_TOKEN, self.settings.kubeconfig_path, present=False))

    async def run(self) -> None:
        api_kubeconfig = await usable_kubeconfig(self.source, self.clock)
        attempt = 0
        while True:
            try:
                cred = await self.refresh(api_kubeconfig)
                attempt = 0
                await self.clock.sleep_until(schedule.refresh_deadline(cred.issued, cred.not_after))
            except Exception as exc:  # retried with backoff; the reason is recorded
                current = self.ledger.get(DELEGATE_TOKEN)
                now = self.clock.now()
                delay = schedule.retry_delay(attempt, self.rng.random(), now, current.not_after if current else 0.0)
                attempt += 1
                message = f"{type(exc).__name__}: {exc}"
                metrics.CREDENTIAL_ROTATIONS.labels(credential=DELEGATE_TOKEN, result="failure").inc()
                self.ledger.failed(DELEGATE_TOKEN, message)
                log.warning("delegate token refresh failed", error=message, attempt=attempt, retry_in=round(delay, 1))
                await self.clock.sleep_until(now + delay)

    async def refresh(self, api_kubeconfig: str) -> Credential:
        s = self.settings
        ttl = schedule.token_ttl(s.seconds)
        token, endpoint = await asyncio.to_thread(self._issue, api_kubeconfig, ttl)
        issued = self.clock.now()
        # Keep the server's expiry but on our clock (tests drive the clock).
        not_after = issued + max(token.expires - time.time(), 0.0)
        write_atomic(s.token_path, token.token, 0o600)
        rendered = kubeconfig.render_token_file(endpoint, TOKEN_FILE)
        if read_or_none(s.kubeconfig_path) != rendered.encode():
            write_atomic(s.kubeconfig_path, rendered, 0o600)
        cred = self.ledger.rotated(Credential(DELEGATE_TOKEN, s.kubeconfig_path, issued, not_after), issued)
        metrics.CREDENTIAL_ROTATIONS.labels(credential=DELEGATE_TOKEN, result="success").inc()
        log.info(
            "delegate token refreshed",
            serviceaccount=f"{s.namespace}/{s.service_account}",
            kubeconfig=s.kubeconfig_path,
            expires=int(token.expires),
            refresh_at=int(schedule.refresh_deadline(issued, not_after)),
        )
        return cred

    def _issue(self, api_kubeconfig: str, ttl: int) -> tuple[kube.IssuedToken, kubeconfig.ApiEndpoint]:
        api = kube.new_client(api_kubeconfig)
        try:
            s = self.settings
            token = kube.request_token(api, s.namespace, s.service_account, s.audience, ttl)
            return token, kube.endpoint_of(api)
        finally:
            kube.close(api)
