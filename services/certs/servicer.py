"""multus.certs.v1.Certs: protobuf <-> ledger translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.api import certs_pb2, certs_pb2_grpc
from services.certs.clock import Clock
from services.certs.ledger import CredentialLedger, Snapshot
from services.certs.rbac import fix_rule


def status_message(snap: Snapshot, now: float) -> certs_pb2.CredentialStatus:
    return certs_pb2.CredentialStatus(
        credentials=[
            certs_pb2.Credential(
                name=c.name,
                path=c.path,
                issued_unix=int(c.issued),
                not_after_unix=int(c.not_after),
                state=state,
                last_rotation_unix=int(c.last_rotation),
                last_error=c.last_error,
                generation=c.generation,
            )
            for c, state in zip(snap.credentials, snap.states, strict=True)
        ],
        missing_permissions=[
            certs_pb2.MissingPermission(
                verb=p.verb,
                group=p.group,
                resource=p.resource,
                subresource=p.subresource,
                namespace=p.namespace,
                fix=fix_rule(p),
            )
            for p in snap.missing_permissions
        ],
        api_kubeconfig=snap.api_kubeconfig,
        healthy=snap.healthy(now),
    )


class CertsServicer(certs_pb2_grpc.CertsServicer):  # type: ignore[misc]
    def __init__(self, ledger: CredentialLedger, clock: Clock) -> None:
        self._ledger = ledger
        self._clock = clock

    async def GetCredentialStatus(
        self, request: certs_pb2.GetCredentialStatusRequest, context: Any
    ) -> certs_pb2.CredentialStatus:
        now = self._clock.now()
        return status_message(self._ledger.snapshot(now), now)

    async def WatchCredentials(
        self, request: certs_pb2.WatchCredentialsRequest, context: Any
    ) -> AsyncIterator[certs_pb2.CredentialStatus]:
        version = -1
        while True:
            await self._ledger.wait_for_change(version)
            now = self._clock.now()
            snap = self._ledger.snapshot(now)
            version = snap.version
            yield status_message(snap, now)
