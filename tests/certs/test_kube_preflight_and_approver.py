"""RBAC preflight naming a removed rule (a limited identity on the real
kube-apiserver), and the approve mode's decisions on real CSRs."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import kubernetes
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.certs import pki, rbac
from services.certs.ledger import API_KUBECONFIG
from tests.certs.support import (
    admin_client,
    cluster_role_bound,
    cryptography_mapped,
    csrs_deleted,
    namespace_with_service_account,
    node_bootstrap_kubeconfig,
    node_csrs,
    unique,
    wait_for,
)
from tests.certs.test_kube_node_certificate import credential, status
from tests.support.kube_identity import write_client_kubeconfig
from tests.support.services import REPO, Instance, start_service

pytestmark = pytest.mark.kube
k8s: Any = kubernetes.client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(inst: Instance) -> int:
    with grpc.insecure_channel(f"unix://{inst.grpc_socket('certs')}") as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(resp.status)


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_preflight_names_a_removed_rule(instance: Instance, kube_api: Path) -> None:
    api = admin_client(kube_api)
    user = unique("multus-limited")
    with namespace_with_service_account(api) as namespace:
        perms = rbac.required_permissions(
            per_node_certificate=False, delegate_namespace=namespace, delegate_service_account="multus-delegate"
        )
        full_rules = rbac.cluster_role_rules(perms)
        without_list_pods = [
            {**r, "verbs": [v for v in r["verbs"] if v != "list"]} if r["resources"] == ["pods"] else r
            for r in full_rules
        ]
        with cluster_role_bound(api, without_list_pods, "User", user) as role:
            limited = write_client_kubeconfig(instance.root / "limited.kubeconfig", user, ())
            port = free_port()
            instance.config.update(
                multusNamespace=namespace,
                delegateServiceAccount="multus-delegate",
                rbacPreflightIntervalSeconds=1,
                servicePorts={"certs": {"metricsPort": port}},
            )
            instance.write_config()
            svc = start_service(instance, "certs", env={"KUBECONFIG": str(limited)})
            try:
                st = wait_for(lambda: _status_or_none(instance), 30, what="certs up")
                # The preflight has run and the kubeconfig's certificate has been read (by the PKI worker).
                st = wait_for(
                    lambda: (
                        (s := status(instance)).missing_permissions
                        and credential(s, API_KUBECONFIG).state == "VALID"
                        and s
                    ),
                    30,
                    what="preflight and API credential",
                )
                (missing,) = st.missing_permissions
                assert (missing.verb, missing.group, missing.resource, missing.subresource) == ("list", "", "pods", "")
                assert missing.fix == '- apiGroups: [""]\n  resources: ["pods"]\n  verbs: ["list"]\n'
                assert not st.healthy
                assert health(instance) == health_pb2.HealthCheckResponse.NOT_SERVING
                text = metrics_text(port)
                assert 'multus_rbac_permission_missing{resource="pods",subresource="",verb="list"} 1.0' in text
                assert 'multus_rbac_permission_missing{resource="pods",subresource="",verb="get"} 0.0' in text
                assert 'multus_credential_expiry_timestamp_seconds{credential="api-kubeconfig"}' in text
                assert "RBAC permission missing" in svc.log() and "list pods (core)" in svc.log()
                # The static kubeconfig's client certificate expiry is monitored.
                api_cred = credential(st, API_KUBECONFIG)
                assert api_cred.state == "VALID" and api_cred.not_after_unix > 0
                assert cryptography_mapped(svc.proc.pid) == []  # its dates were read by the PKI worker

                # Apply the fix: the next preflight clears it and health follows.
                k8s.RbacAuthorizationV1Api(api).patch_cluster_role(role, {"rules": full_rules})
                wait_for(lambda: health(instance) == health_pb2.HealthCheckResponse.SERVING, 30, what="SERVING")
                assert not status(instance).missing_permissions
                assert 'verb="list"} 0.0' in metrics_text(port)
            finally:
                svc.stop()


def _status_or_none(inst: Instance) -> Any:
    try:
        return status(inst)
    except grpc.RpcError:
        return None


def _node_csr(api: Any, node: str, cn: str, usages: list[str]) -> str:
    body = k8s.V1CertificateSigningRequest(
        metadata=k8s.V1ObjectMeta(generate_name=f"multus-{node}-", labels={"multus.cni.io/node": node}),
        spec=k8s.V1CertificateSigningRequestSpec(
            request=base64.b64encode(pki.node_csr_pem(pki.new_private_key(), cn)).decode(),
            signer_name="kubernetes.io/kube-apiserver-client",
            usages=usages,
        ),
    )
    return str(k8s.CertificatesV1Api(api).create_certificate_signing_request(body).metadata.name)


def test_approver_decides_real_csrs(tmp_path: Path, kube_api: Path) -> None:
    api = admin_client(kube_api)
    node = unique("node")
    with csrs_deleted(api, node):
        node_api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(node_bootstrap_kubeconfig(tmp_path / "node.kubeconfig", node))
        )
        good = _node_csr(node_api, node, node, ["digital signature", "client auth"])
        other_node = _node_csr(node_api, node, "someone-else", ["digital signature", "client auth"])
        server_auth = _node_csr(node_api, node, node, ["digital signature", "client auth", "server auth"])
        by_admin = _node_csr(api, node, node, ["digital signature", "client auth"])
        result = subprocess.run(
            [sys.executable, "-m", "services.certs", "approve", "--once", "--kubeconfig", str(kube_api)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        conditions = {
            c.metadata.name: [cond.type for cond in (c.status.conditions or [])] for c in node_csrs(api, node)
        }
        assert conditions == {good: ["Approved"], other_node: [], server_auth: [], by_admin: []}
        for name in (other_node, server_auth, by_admin):
            assert f'"csr": "{name}"' in result.stderr and "left for a human" in result.stderr
        # The approved request gets signed by the controller-manager.
        wait_for(lambda: k8s.CertificatesV1Api(api).read_certificate_signing_request(good).status.certificate, 30)
