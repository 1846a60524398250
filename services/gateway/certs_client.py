"""The gateway's client for the certs service: one long-lived channel, used to
learn whether the delegates' API credentials (multus.d/multus.kubeconfig) are
in place before the gateway reports ready."""

from __future__ import annotations

from services.api import certs_pb2, certs_pb2_grpc
from services.common.grpc_client import call, unix_channel

PEER = "certs"
# The certs ledger's name for the delegates' token kubeconfig, and its usable states.
DELEGATE_TOKEN = "delegate-token"
USABLE_STATES = frozenset({"VALID", "EXPIRING", "STATIC"})


class CertsClient:
    def __init__(self, socket_path: str) -> None:
        self._channel = unix_channel(socket_path)
        self._stub = certs_pb2_grpc.CertsStub(self._channel)

    async def delegate_credentials_state(self, *, timeout: float) -> str:
        """The delegate token's state ("VALID", "MISSING", ...), or "" when the
        certs service writes no delegate credentials (standalone, or none configured)."""
        status: certs_pb2.CredentialStatus = await call(
            PEER, self._stub.GetCredentialStatus, certs_pb2.GetCredentialStatusRequest(), timeout
        )
        for credential in status.credentials:
            if credential.name == DELEGATE_TOKEN:
                return credential.state
        return ""

    async def close(self) -> None:
        await self._channel.close()
