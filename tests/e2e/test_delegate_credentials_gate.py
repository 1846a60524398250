"""The gateway is not ready before the delegates' API credentials exist
(bounded), so the first pods on a node never run delegates without KUBECONFIG.
Real certs service under the shipped node identity, real kube-apiserver, real
gateway; the delegate token is held back by withholding the shipped
delegate-token Role, as a not-yet-approved node certificate would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs.support import admin_client, namespace_with_service_account, unique, wait_for
from tests.conftest import ShippedIdentity
from tests.support.kube_identity import shipped_namespaced_rbac
from tests.support.services import Instance, ServiceProcess, start_service, wait_serving

pytestmark = pytest.mark.kube


def health_status(socket: str) -> int | None:
    """The service's grpc.health.v1 status, None while it does not answer."""
    try:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status)
    except grpc.RpcError:
        return None


def serving(socket: str) -> bool:
    return bool(health_status(socket) == health_pb2.HealthCheckResponse.SERVING)


def stays_not_serving(socket: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if serving(socket):
            return False
        time.sleep(0.2)
    return True


@pytest.fixture
def node_services(
    instance: Instance, kube_api: Path, shipped_identity: ShippedIdentity
) -> Iterator[tuple[Instance, str, Any]]:
    api = admin_client(kube_api)
    shipped_identity.expect_forbidden = True  # TokenRequest is refused until the Role exists
    with namespace_with_service_account(api, "multus-delegate") as namespace:
        (Path(instance.config["cniConfigDir"]) / "10-net.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge", "bridge": "gate0"}]})
        )
        # the cluster is the API server (no clusterDir): a delegate token is expected
        instance.config.update(clusterDir="", multusNamespace=namespace, delegateServiceAccount="multus-delegate")
        yield instance, namespace, api


def start(instance: Instance, identity: ShippedIdentity, wait_seconds: float) -> list[ServiceProcess]:
    instance.config["delegateCredentialsWaitSeconds"] = wait_seconds
    instance.write_config()
    env = {"KUBECONFIG": str(identity.node_kubeconfig(unique("node")))}
    certs = start_service(instance, "certs", env=env)
    # Up, not SERVING: with the delegate-token Role withheld its RBAC preflight reports the
    # missing permission, so certs is rightly NOT_SERVING once it has checked its credentials.
    wait_for(lambda: health_status(instance.grpc_socket("certs")) is not None, 30, what="certs answering")
    return [certs, start_service(instance, "gateway", env=env)]


def test_ready_only_once_the_delegate_token_is_written(
    node_services: tuple[Instance, str, Any], shipped_identity: ShippedIdentity
) -> None:
    instance, namespace, api = node_services
    procs = start(instance, shipped_identity, wait_seconds=120)
    kubeconfig = Path(instance.config["cniConfigDir"]) / "multus.d" / "multus.kubeconfig"
    try:
        gateway = instance.grpc_socket("gateway")
        assert stays_not_serving(gateway, 4.0), "ready before the delegate token exists"
        assert not kubeconfig.exists()
        shipped_namespaced_rbac(api, namespace)  # the token can be requested now
        wait_serving(gateway, timeout=40)
        assert kubeconfig.exists()
        assert '"outcome": "usable"' in procs[1].log()
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_ready_anyway_after_the_bound(
    node_services: tuple[Instance, str, Any], shipped_identity: ShippedIdentity
) -> None:
    instance, _, _ = node_services
    procs = start(instance, shipped_identity, wait_seconds=2)
    try:
        wait_serving(instance.grpc_socket("gateway"), timeout=30)
        log = procs[1].log()
        assert "ready without delegate API credentials" in log
        assert "gave up: delegate token MISSING" in log
    finally:
        for proc in reversed(procs):
            proc.stop()
