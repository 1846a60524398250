"""Credentials the certs service watches but does not issue: a kubeconfig given
by KUBECONFIG or the daemon config (its client certificate's or JWT token's
expiry is monitored, and consumers are told when the file changes), in-cluster
ServiceAccount credentials, or none at all in standalone mode. A client
certificate's dates come from the PKI worker, cached by content: an unchanged
file starts no process."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from services.certs import kubeconfig
from services.certs.clock import Clock
from services.certs.ledger import API_KUBECONFIG, Credential, CredentialLedger
from services.certs.pki_client import PkiWorker, PkiWorkerError
from services.certs.sources import IN_CLUSTER, KUBECONFIG, STANDALONE, ApiSource
from services.common.logs import get_logger

log = get_logger(__name__)

RECHECK_SECONDS = 30.0
RETRY_SECONDS = 5.0  # after the PKI worker failed to read the client certificate


def _fingerprint(path: str) -> str:
    """Hash of the kubeconfig file (a replaced client certificate file shows up as a new expiry)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            digest.update(f.read())
    except OSError:
        return ""
    return digest.hexdigest()


async def user_expiry(doc: dict[str, object], base_dir: str, pki: PkiWorker) -> tuple[float, float]:
    """(issued, not_after) of the current user's credential when it can be known: a
    client certificate, or a JWT bearer token with `exp`. (0, 0) if not."""
    cert = kubeconfig.user_client_certificate(doc, base_dir)
    if not cert:
        return kubeconfig.user_token_lifetime(doc, base_dir)
    check = await pki.inspect(cert)
    return (check.not_before, check.not_after) if check is not None else (0.0, 0.0)


async def observe(source: ApiSource, running_in_pod: bool, pki: PkiWorker) -> tuple[Credential, str]:
    """The API credential as it is now, and a fingerprint that changes with it.
    Raises PkiWorkerError when a client certificate's dates could not be read."""
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
        issued, not_after = await user_expiry(doc, os.path.dirname(path), pki)
    except kubeconfig.KubeconfigError as exc:
        return Credential(API_KUBECONFIG, path=path, present=False, required=True, last_error=str(exc)), ""
    cred = Credential(API_KUBECONFIG, path=path, issued=issued, not_after=not_after, required=True)
    return cred, f"{_fingerprint(path)}:{not_after}"


async def watch_static_credential(
    source: ApiSource, ledger: CredentialLedger, clock: Clock, running_in_pod: bool, pki: PkiWorker | None = None
) -> None:
    """Publish the API credential, then re-read it periodically: a changed file is a new generation."""
    assert source.kind in (STANDALONE, IN_CLUSTER, KUBECONFIG)
    pki = pki or PkiWorker()
    last_print: str | None = None
    if source.kind == KUBECONFIG and ledger.get(API_KUBECONFIG) is None:
        # Missing until read (a client certificate is read by the PKI worker, which takes a
        # moment): health must not say SERVING for a credential nobody has looked at yet.
        ledger.publish(Credential(API_KUBECONFIG, path=source.kubeconfig, present=False, required=True))
    while True:
        try:
            cred, fingerprint = await observe(source, running_in_pod, pki)
        except PkiWorkerError as exc:
            # Unknown, not changed: keep what was published, say why, and look again soon.
            ledger.failed(API_KUBECONFIG, f"cannot read the client certificate's expiry: {exc}")
            log.warning("API credential expiry unknown", path=source.kubeconfig, error=str(exc))
            await clock.sleep_until(clock.now() + RETRY_SECONDS)
            continue
        current = ledger.get(API_KUBECONFIG)
        if fingerprint == last_print and fingerprint and current is not None and current.last_error:
            ledger.publish(replace(current, last_error=""))  # read again after a worker failure
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
