"""Renewal of the per-node certificate against the real kube-apiserver, with a
clock the test drives: the API server cut (through a loopback proxy) when the
renewal is due, and the fallback to bootstrap credentials once the current
certificate has expired."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.certs.ledger import (
    EXPIRING,
    NODE_CERTIFICATE,
    VALID,
    CredentialLedger,
    credential_state,
    unhealthy_reasons,
)
from services.certs.node_cert import CertificateStore, NodeCertificateRotator, NodeCertificateSettings
from tests.certs.support import (
    FakeClock,
    admin_client,
    csrs_deleted,
    drive,
    eventually,
    namespace_with_service_account,
    node_bootstrap_kubeconfig,
    node_csrs,
    running,
    set_csr_condition,
    unique,
    write_stored_certificate,
)
from tests.certs.test_kube_node_certificate import approver
from tests.conftest import ShippedIdentity
from tests.support.kube_identity import shipped_namespaced_rbac
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.kube


def _rotations(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "multus_credential_rotations_total", {"credential": NODE_CERTIFICATE, "result": result}
    )
    return value or 0.0


@pytest.fixture
def node_rbac(kube_api: Path, shipped_identity: ShippedIdentity) -> Any:
    """A node under the shipped RBAC (group system:multus), approver as shipped."""
    api = admin_client(kube_api)
    node = unique("node")
    with namespace_with_service_account(api) as namespace, csrs_deleted(api, node):
        shipped_namespaced_rbac(api, namespace)
        yield api, node, shipped_identity


async def test_api_server_unreachable_during_rotation(tmp_path: Path, kube_api: Path, node_rbac: Any) -> None:
    api, node, identity = node_rbac
    with (
        tcp_proxy(identity.recorder_address) as proxy,
        approver(identity.approver_kubeconfig(), tmp_path / "approver.log"),
    ):
        bootstrap = node_bootstrap_kubeconfig(tmp_path / "bootstrap.kubeconfig", node, proxy.url)
        clock, book = FakeClock(), CredentialLedger()
        store = CertificateStore(str(tmp_path / "certs"))
        settings = NodeCertificateSettings(node, str(bootstrap), 600, approval_timeout=60)
        rotator = NodeCertificateRotator(settings, store, book, clock, random.Random(7))
        async with running(rotator):
            first = await eventually(lambda: (c := book.get(NODE_CERTIFICATE)) and c.generation == 1 and c, 60)
            first_file = os.path.realpath(store.current_path)

            # The renewal falls due while the API server is unreachable.
            proxy.cut()
            failures = _rotations("failure")
            clock.set(first.issued + 0.95 * (first.not_after - first.issued))
            failed = await eventually(lambda: (c := book.get(NODE_CERTIFICATE)) and "unreachable" in c.last_error and c)
            assert failed.generation == 1
            assert credential_state(failed, clock.now()) == EXPIRING
            assert unhealthy_reasons((failed,), (), clock.now())  # health: NOT_SERVING
            assert _rotations("failure") > failures
            assert os.path.realpath(store.current_path) == first_file  # the current certificate is kept
            await drive(clock, lambda: _rotations("failure") >= failures + 3, step=1.0)  # backing off, retrying

            # Back up: the next retry renews, using the current certificate's identity.
            proxy.restore()
            renewed = await drive(
                clock, lambda: (c := book.get(NODE_CERTIFICATE)) and c.generation == 2 and c, step=2.0, timeout=60
            )
            assert renewed.last_error == "" and credential_state(renewed, clock.now()) == VALID
            assert os.path.realpath(store.current_path) != first_file
            await asyncio.sleep(1.0)  # a renewed certificate is not renewed again at once
            assert [c.spec.username for c in node_csrs(api, node)] == [f"system:node:{node}", f"system:multus:{node}"]


async def test_expired_certificate_falls_back_to_bootstrap(tmp_path: Path, kube_api: Path, node_rbac: Any) -> None:
    api, node, identity = node_rbac
    cert_dir = tmp_path / "certs"
    write_stored_certificate(cert_dir, f"system:multus:{node}", ("system:multus",), days=-1)
    with approver(identity.approver_kubeconfig(), tmp_path / "approver.log"):
        bootstrap = identity.bootstrap_kubeconfig(node)
        book = CredentialLedger()
        settings = NodeCertificateSettings(node, str(bootstrap), 600, approval_timeout=60)
        rotator = NodeCertificateRotator(settings, CertificateStore(str(cert_dir)), book, FakeClock(), random.Random(1))
        async with running(rotator):
            cred = await eventually(lambda: (c := book.get(NODE_CERTIFICATE)) and c.generation >= 1 and c, 60)
            assert cred.not_after > cred.issued
            # The expired certificate could not have authenticated: bootstrap (kubelet) credentials were used.
            assert [c.spec.username for c in node_csrs(api, node)] == [f"system:node:{node}"]


async def test_cut_while_waiting_for_approval_resumes_the_same_csr(
    tmp_path: Path, kube_api: Path, node_rbac: Any
) -> None:
    api, node, identity = node_rbac
    with tcp_proxy(identity.recorder_address) as proxy:
        bootstrap = node_bootstrap_kubeconfig(tmp_path / "bootstrap.kubeconfig", node, proxy.url)
        clock, book = FakeClock(), CredentialLedger()
        settings = NodeCertificateSettings(node, str(bootstrap), 600, approval_timeout=60)
        store = CertificateStore(str(tmp_path / "certs"))
        rotator = NodeCertificateRotator(settings, store, book, clock, random.Random(3))
        async with running(rotator):
            await eventually(lambda: node_csrs(api, node), 30, what="the CSR")
            # An earlier attempt may have failed as "unreachable" already (a create's answer lost):
            # wait for the failure the cut causes, a state published after this one.
            before = book.get(NODE_CERTIFICATE)
            proxy.cut()  # the watch on the pending CSR breaks, and the API stays unreachable
            def failed_after_the_cut() -> bool:
                now = book.get(NODE_CERTIFICATE)
                return now is not before and "unreachable" in getattr(now, "last_error", "")

            await eventually(failed_after_the_cut, 30, what="the failure the cut causes")
            # Taken once the API is out of reach, so nothing more can be filed meanwhile. Usually
            # one; two when a create's answer was lost on the way (the CSR exists, the rotator
            # saw an error and filed again): approving both leaves the one it waits on approved.
            filed = sorted(c.metadata.name for c in node_csrs(api, node))
            for name in filed:
                set_csr_condition(api, name, "Approved", "TestApproved")
            proxy.restore()
            await drive(clock, lambda: (c := book.get(NODE_CERTIFICATE)) and c.generation == 1, step=1.0)
            # The interrupted request was resumed, not filed again.
            assert sorted(c.metadata.name for c in node_csrs(api, node)) == filed
            assert os.path.exists(store.kubeconfig_path)
