"""Test support for the certs service: identities signed by the test cluster's
CA, RBAC and namespaces that clean up after themselves, and a clock the test
drives. (The loopback proxy that plays "API server unreachable" is
tests/support/tcp_proxy.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from tests.support.kube_identity import API_SERVER, sign_client_certificate, write_client_kubeconfig
from tests.support.waiting import poll_until

# The kubernetes package is only partly typed.
k8s: Any = kubernetes.client
k8s_config: Any = kubernetes.config


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin_client(kubeconfig: Path) -> Any:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


def node_bootstrap_kubeconfig(path: Path, node: str, server: str = API_SERVER) -> Path:
    """The node's kubelet credentials (system:node:<node> in system:nodes), as bootstrapKubeconfig."""
    return write_client_kubeconfig(path, f"system:node:{node}", ("system:nodes",), server)


def _ignore_404(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except ApiException as exc:
        if exc.status != 404:
            raise


@contextlib.contextmanager
def namespace_with_service_account(api: Any, service_account: str = "multus-delegate") -> Iterator[str]:
    core = k8s.CoreV1Api(api)
    name = unique("certs-test")
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        core.create_namespaced_service_account(
            name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=service_account))
        )
        yield name
    finally:
        _ignore_404(lambda: core.delete_namespace(name))


@contextlib.contextmanager
def cluster_role_bound(api: Any, rules: list[dict[str, Any]], subject_kind: str, subject_name: str) -> Iterator[str]:
    """A ClusterRole with `rules` bound to one User/Group; both deleted afterwards."""
    rbac_api = k8s.RbacAuthorizationV1Api(api)
    name = unique("multus-certs-test")
    rbac_api.create_cluster_role(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        }
    )
    try:
        rbac_api.create_cluster_role_binding(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": subject_kind, "name": subject_name}],
            }
        )
        yield name
    finally:
        _ignore_404(lambda: rbac_api.delete_cluster_role_binding(name))
        _ignore_404(lambda: rbac_api.delete_cluster_role(name))


def node_csrs(api: Any, node: str) -> list[Any]:
    items = (
        k8s.CertificatesV1Api(api).list_certificate_signing_request(label_selector=f"multus.cni.io/node={node}").items
    )
    return sorted(items, key=lambda c: c.metadata.creation_timestamp)


@contextlib.contextmanager
def csrs_deleted(api: Any, node: str) -> Iterator[None]:
    """Delete every CSR the certs service made for `node` when the block ends."""
    try:
        yield
    finally:
        certs = k8s.CertificatesV1Api(api)
        for csr in node_csrs(api, node):
            with contextlib.suppress(ApiException):
                certs.delete_certificate_signing_request(csr.metadata.name)


def set_csr_condition(api: Any, name: str, condition: str, reason: str) -> None:
    certs = k8s.CertificatesV1Api(api)
    csr = certs.read_certificate_signing_request(name)
    csr.status.conditions = [
        *(csr.status.conditions or []),
        k8s.V1CertificateSigningRequestCondition(type=condition, status="True", reason=reason, message="by the test"),
    ]
    certs.replace_certificate_signing_request_approval(name, csr)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    return poll_until(predicate, timeout=timeout, what=what or str(predicate), interval=interval, error=TimeoutError)


class FakeClock:
    """A clock the test moves; sleepers wake when it passes their deadline."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        while self._now < deadline:
            moved = self._moved
            await moved.wait()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, now: float) -> None:
        self._now = max(self._now, now)
        self._moved.set()
        self._moved = asyncio.Event()


async def drive(clock: FakeClock, predicate: Callable[[], Any], step: float = 5.0, timeout: float = 60.0) -> Any:
    """Move `clock` forward `step` at a time (real pauses between) until `predicate` holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {predicate}")
        clock.advance(step)
        await asyncio.sleep(0.1)


async def eventually(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll `predicate` in real time (the event loop keeps running) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.1)


def cryptography_mapped(pid: int) -> list[str]:
    """Files of the cryptography package (its Rust extension above all) mapped into a
    process: the resident certs service must have none (its PKI worker does that work)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if "/cryptography/" in line})


def write_stored_certificate(cert_dir: Path, cn: str, orgs: tuple[str, ...], days: float) -> Path:
    """Put a CA-signed certificate (negative `days` = already expired) where the
    certs service keeps its current one, as if it had issued it earlier."""
    cert, key = sign_client_certificate(cn, orgs, days)
    cert_dir.mkdir(parents=True, exist_ok=True)
    stored = cert_dir / "multus-client-2020-01-01-00-00-00.pem"
    stored.write_bytes(cert + key)
    stored.chmod(0o600)
    (cert_dir / "multus-client-current.pem").symlink_to(stored.name)
    return stored


@contextlib.asynccontextmanager
async def running(rotator: Any) -> AsyncIterator[None]:
    """A NodeCertificateRotator's loop as a task for the block's duration."""
    task = asyncio.create_task(rotator.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
