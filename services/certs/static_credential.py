"""Credentials the certs service watches but does not issue: a kubeconfig given
by KUBECONFIG or the daemon config (its client certificate's or JWT token's
expiry is monitored, and consumers are told when the file changes), in-cluster
ServiceAccount credentials, or none at all in standalone mode."""

from __future__ import annotations

import hashlib
import os

from services.certs import kubeconfig
from services.certs.clock import Clock
from services.certs.ledger import API_KUBECONFIG, Credential, CredentialLedger
from services.certs.sources import IN_CLUSTER, KUBECONFIG, STANDALONE, ApiSource
from services.common.logs import get_logger

log = get_logger(__name__)

RECHECK_SECONDS = 30.0


def _fingerprint(path: str) -> str:
    """Hash of the kubeconfig file (a replaced client certificate file shows up as a new expiry)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            digest.update(f.read())
    except OSError:
        return ""
    return digest.hexdigest()


def observe(source: ApiSource, running_in_pod: bool) -> tuple[Credential, str]:
    """The API credential as it is now, and a fingerprint that changes with it."""
    if source.kind == STANDALONE:
        return Credential(API_KUBECONFIG), "standalone"
    if source.kind == IN_CLUSTER:
        if running_in_pod:
            return Credential(API_KUBECONFIG, required=True), "in-cluster"
        return (
            Credential(API_KUBECONFIG, present=False, required=True, last_error="no API credentials: not in a pod"),
            "",
        )
    path = source.kubeconfig
    try:
        doc = kubeconfig.load(path)
        issued, not_after = kubeconfig.user_expiry(doc, os.path.dirname(path))
    except kubeconfig.KubeconfigError as exc:
        return Credential(API_KUBECONFIG, path=path, present=False, required=True, last_error=str(exc)), ""
    cred = Credential(API_KUBECONFIG, path=path, issued=issued, not_after=not_after, required=True)
    return cred, f"{_fingerprint(path)}:{not_after}"


async def watch_static_credential(
    source: ApiSource, ledger: CredentialLedger, clock: Clock, running_in_pod: bool
) -> None:
    """Publish the API credential, then re-read it periodically: a changed file is a new generation."""
    assert source.kind in (STANDALONE, IN_CLUSTER, KUBECONFIG)
    last_print: str | None = None
    while True:
        cred, fingerprint = observe(source, running_in_pod)
        if fingerprint != last_print:
            if fingerprint:
                ledger.rotated(cred, clock.now())
                log.info("API credential loaded", kind=source.kind, path=cred.path, not_after=int(cred.not_after))
            else:
                ledger.publish(cred)
                log.error("API credential unavailable", kind=source.kind, error=cred.last_error)
            last_print = fingerprint
        if source.kind != KUBECONFIG:
            return
        await clock.sleep_until(clock.now() + RECHECK_SECONDS)
