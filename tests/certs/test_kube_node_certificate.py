"""Per-node client certificates against the real kube-apiserver: the full CSR
flow with the approver, a denied CSR, and the API server cut during rotation."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import kubernetes
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from services.api import certs_pb2, certs_pb2_grpc
from services.common.config import load_config
from tests.certs.support import (
    admin_client,
    cryptography_mapped,
    csrs_deleted,
    namespace_with_service_account,
    node_csrs,
    set_csr_condition,
    unique,
    wait_for,
)
from tests.conftest import ShippedIdentity
from tests.support.kube_identity import shipped_namespaced_rbac
from tests.support.services import REPO, Instance, start_service, wait_serving

pytestmark = pytest.mark.kube
k8s: Any = kubernetes.client


@contextmanager
def approver(kubeconfig: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.certs", "approve", "--kubeconfig", str(kubeconfig)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def node_env(instance: Instance, kube_api: Path, shipped_identity: ShippedIdentity) -> Iterator[dict[str, Any]]:
    """A node name, its bootstrap kubeconfig (through the recorder), a delegate
    namespace with the shipped delegate-token Role; the shipped ClusterRole
    binds group system:multus, which the node's certificate will carry."""
    api = admin_client(kube_api)
    node = unique("node")
    with namespace_with_service_account(api) as namespace, csrs_deleted(api, node):
        shipped_namespaced_rbac(api, namespace)
        bootstrap = shipped_identity.bootstrap_kubeconfig(node)
        instance.config.update(
            perNodeCertificate={
                "enabled": True,
                "bootstrapKubeconfig": str(bootstrap),
                "certDir": str(instance.root / "certs"),
                "certDuration": "10m",
            },
            multusNamespace=namespace,
            delegateServiceAccount="multus-delegate",
        )
        instance.write_config()
        yield {"api": api, "node": node, "namespace": namespace, "bootstrap": bootstrap, "identity": shipped_identity}


def status(inst: Instance) -> certs_pb2.CredentialStatus:
    with grpc.insecure_channel(f"unix://{inst.grpc_socket('certs')}") as channel:
        stub = certs_pb2_grpc.CertsStub(channel)
        st: certs_pb2.CredentialStatus = stub.GetCredentialStatus(certs_pb2.GetCredentialStatusRequest(), timeout=5)
        return st


def credential(st: certs_pb2.CredentialStatus, name: str) -> certs_pb2.Credential:
    return next(c for c in st.credentials if c.name == name)


def test_full_csr_flow_with_approver(instance: Instance, kube_api: Path, node_env: dict[str, Any]) -> None:
    node, api = node_env["node"], node_env["api"]
    cert_dir = instance.root / "certs"
    with approver(node_env["identity"].approver_kubeconfig(), instance.root / "approver.log"):
        svc = start_service(instance, "certs", env={"MULTUS_NODE_NAME": node})
        try:
            wait_serving(instance.grpc_socket("certs"), timeout=60)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{svc.log()[-3000:]}") from exc
        try:
            st = status(instance)
            cred = credential(st, "node-client-certificate")
            assert cred.state == "VALID" and cred.generation == 1
            assert st.api_kubeconfig == str(cert_dir / "multus-client.kubeconfig") == cred.path
            assert st.healthy and not st.missing_permissions

            # The CSR is what the issue asks for, requested with the bootstrap (kubelet) identity.
            (csr,) = node_csrs(api, node)
            assert csr.spec.signer_name == "kubernetes.io/kube-apiserver-client"
            assert sorted(csr.spec.usages) == ["client auth", "digital signature"]
            assert csr.spec.username == f"system:node:{node}"
            request = x509.load_pem_x509_csr(base64.b64decode(csr.spec.request))
            assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:multus:{node}"
            assert [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
                "system:multus"
            ]
            assert request.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]

            # Files: a timestamped 0600 file, current pointing at it, and the kubeconfig using it.
            current = cert_dir / "multus-client-current.pem"
            target = Path(os.path.realpath(current))
            assert target.name.startswith("multus-client-2") and target.parent == cert_dir
            assert stat.S_IMODE(target.stat().st_mode) == 0o600
            assert stat.S_IMODE((cert_dir / "multus-client.kubeconfig").stat().st_mode) == 0o600

            # The kubeconfig works and authenticates as system:multus:<node>.
            node_api = k8s.ApiClient(_config(cert_dir / "multus-client.kubeconfig"))
            k8s.CoreV1Api(node_api).list_namespaced_pod(node_env["namespace"])
            node_env["identity"].deliberate_denials.add(("GET", "/api/v1/namespaces/kube-system/secrets"))
            with pytest.raises(k8s.ApiException) as denied:
                k8s.CoreV1Api(node_api).list_namespaced_secret("kube-system")
            assert f"system:multus:{node}" in str(denied.value.body)

            # The delegate kubeconfig was written too (per-node identity requests the token).
            delegate = wait_for(lambda: credential(status(instance), "delegate-token").state == "VALID", 30)
            assert delegate
            assert (instance.root / "netd" / "multus.d" / "multus.kubeconfig").exists()
            assert "BEGIN" not in svc.log() and "PRIVATE" not in svc.log()
            # Key, CSR and certificate checks ran in the PKI worker: the resident process never loaded cryptography.
            assert cryptography_mapped(svc.proc.pid) == []
        finally:
            svc.stop()

        # A restart reuses the stored certificate: no new CSR.
        svc = start_service(instance, "certs", env={"MULTUS_NODE_NAME": node})
        try:
            wait_serving(instance.grpc_socket("certs"), timeout=30)
            assert len(node_csrs(api, node)) == 1
            assert credential(status(instance), "node-client-certificate").state == "VALID"
            assert cryptography_mapped(svc.proc.pid) == []  # the stored certificate was read by the worker too
        finally:
            svc.stop()


def _config(kubeconfig: Path) -> Any:
    cfg = k8s.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


def test_denied_csr_is_reported_and_retried(instance: Instance, node_env: dict[str, Any], kube_api: Path) -> None:
    node, api = node_env["node"], node_env["api"]
    svc = start_service(instance, "certs", env={"MULTUS_NODE_NAME": node})
    try:
        first = wait_for(lambda: node_csrs(api, node), 30, what="a CSR")[0]
        set_csr_condition(api, first.metadata.name, "Denied", "TestDenied")

        def reported() -> bool:
            cred = credential(status(instance), "node-client-certificate")
            return cred.state == "MISSING" and "TestDenied" in cred.last_error

        wait_for(reported, 30, what="the denial in GetCredentialStatus")
        assert not status(instance).healthy
        # The service asks again (backoff) and the second request is approved.
        second = wait_for(lambda: [c for c in node_csrs(api, node) if c.metadata.name != first.metadata.name], 30)
        with grpc.insecure_channel(f"unix://{instance.grpc_socket('certs')}") as channel:
            stream = certs_pb2_grpc.CertsStub(channel).WatchCredentials(certs_pb2.WatchCredentialsRequest(), timeout=30)
            assert credential(next(stream), "node-client-certificate").state == "MISSING"
            set_csr_condition(api, second[0].metadata.name, "Approved", "TestApproved")
            # Consumers are told: the stream delivers the issued certificate without polling.
            for update in stream:
                if credential(update, "node-client-certificate").state == "VALID":
                    assert update.api_kubeconfig.endswith("multus-client.kubeconfig")
                    break
            stream.cancel()
        wait_serving(instance.grpc_socket("certs"), timeout=30)
        cred = credential(status(instance), "node-client-certificate")
        assert cred.state == "VALID" and cred.last_error == ""
        assert load_config(instance.config_path).per_node_certificate.enabled
    finally:
        svc.stop()
