"""Readiness waits (bounded) for the delegates' API credentials.

With perNodeCertificate the delegate token arrives only after the node's CSR is
approved, seconds after every container started. A gateway that reported ready
at once let the first pods' delegates run without KUBECONFIG, silently. So the
gateway holds readiness until the certs service reports the delegate token
usable, or says it writes none, or `delegateCredentialsWaitSeconds` (our key,
default 60) pass: then it goes ready anyway and says why, so a broken API or
approver cannot keep every pod on the node from starting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from services.common import cni
from services.common.config import DaemonConfig
from services.common.logs import get_logger
from services.gateway.certs_client import USABLE_STATES

log = get_logger(__name__)

POLL_SECONDS = 0.5


def delegate_credentials_expected(config: DaemonConfig) -> bool:
    """A delegate token is written only for a node that talks to the API server
    (no file-backed `clusterDir`) with a delegate ServiceAccount configured."""
    return bool(config.delegate_service_account) and not config.cluster_dir


async def wait_for_delegate_credentials(
    state: Callable[[], Awaitable[str]],
    bound: float,
    *,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Returns why waiting ended: "none configured", "usable" or "gave up: ..."."""
    deadline = clock() + bound
    last = "certs service not reachable"
    while True:
        try:
            current = await state()
        except cni.CniError as err:
            current, last = "?", f"certs service: {err.msg}"
        if current == "":
            return "none configured"
        if current in USABLE_STATES:
            return "usable"
        if current != "?":
            last = f"delegate token {current}"
        if clock() >= deadline:
            log.warning(
                "ready without delegate API credentials: delegates get KUBECONFIG once the certs service writes it",
                waited_seconds=bound,
                reason=last,
            )
            return f"gave up: {last}"
        await asyncio.sleep(poll)
