"""Which kubeconfig the certs service's own API calls use, once it is usable."""

from __future__ import annotations

import os

from services.certs.clock import Clock
from services.certs.sources import IN_CLUSTER, PER_NODE_CERTIFICATE, ApiSource

POLL_SECONDS = 1.0


async def usable_kubeconfig(source: ApiSource, clock: Clock) -> str:
    """The kubeconfig path for API calls ("" = in-cluster). With per-node
    certificates, waits until the first certificate's kubeconfig is written."""
    if source.kind == IN_CLUSTER:
        return ""
    if source.kind == PER_NODE_CERTIFICATE:
        while not os.path.exists(source.kubeconfig):
            await clock.sleep_until(clock.now() + POLL_SECONDS)
    return source.kubeconfig
