"""The certs service in standalone (file-backed) mode: no API credentials, SERVING."""

from __future__ import annotations

import grpc
import pytest

from services.api import certs_pb2, certs_pb2_grpc
from tests.support.services import Instance, running_services


@pytest.fixture
def standalone(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> Instance:
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    return instance


def test_standalone_serves_static_status(standalone: Instance) -> None:
    with running_services(standalone, "certs"), grpc.insecure_channel(
        f"unix://{standalone.grpc_socket('certs')}"
    ) as channel:
        stub = certs_pb2_grpc.CertsStub(channel)
        status = stub.GetCredentialStatus(certs_pb2.GetCredentialStatusRequest(), timeout=5)
        assert status.healthy
        assert status.api_kubeconfig == ""
        assert [(c.name, c.state) for c in status.credentials] == [("api-kubeconfig", "STATIC")]
        assert not status.missing_permissions

        stream = stub.WatchCredentials(certs_pb2.WatchCredentialsRequest(), timeout=5)
        first = next(stream)
        assert first == status
        stream.cancel()
