"""Fixtures every test suite shares: isolated instances, and the real kube-apiserver."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config import new_client_from_config

from tests.support.api_recorder import ApiRecorder, RecordedRequest, running_recorder
from tests.support.kube_identity import (
    API_SERVER,
    PKI,
    delete_service_account_identity,
    node_identity_kubeconfig,
    service_account_token,
    shipped_cluster_rbac,
    write_client_kubeconfig,
    write_token_kubeconfig,
)
from tests.support.rbac_audit import forbidden, node_requests, request_permission, ungranted
from tests.support.services import Instance, make_instance

REPO = Path(__file__).resolve().parents[1]
SHARED_KUBE = REPO.parent / "shared" / "kube"
KUBE_ROOT = Path(os.environ.get("KUBE_ROOT", Path.home() / ".cache" / "test-kube"))


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """A daemon config with every path under a fresh temporary directory."""
    return make_instance(tmp_path)


@pytest.fixture(scope="session")
def kube_api() -> Iterator[Path]:
    """The real kube-apiserver from ../shared/kube (started if needed, left running).

    Yields the admin kubeconfig path. CI builds it in .ci/run; locally run
    ../shared/kube/up.sh once (4-10 min), after which start.sh takes seconds.
    """
    env = {**os.environ, "KUBE_WITH_NAD": "1", "KUBE_ROOT": str(KUBE_ROOT)}
    result = subprocess.run([str(SHARED_KUBE / "start.sh")], env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"kube-apiserver did not start:\n{result.stdout}\n{result.stderr}")
    yield KUBE_ROOT / "admin.kubeconfig"


@pytest.fixture(scope="session")
def api_recorder(kube_api: Path) -> Iterator[ApiRecorder]:
    """The recording front proxy before the real API server (tests/support/api_recorder.py)."""
    with running_recorder(PKI, API_SERVER) as recorder:
        yield recorder
    RBAC_SEEN.extend(recorder.requests)


@pytest.fixture(scope="session")
def shipped_rbac(kube_api: Path) -> Iterator[str]:
    """compose/kubernetes/base/rbac.yaml's cluster-wide objects, as shipped (under a test prefix)."""
    api = new_client_from_config(config_file=str(kube_api))
    try:
        with shipped_cluster_rbac(api) as prefix:
            yield prefix
    finally:
        api.close()


class ShippedIdentity:
    """Kubeconfigs for the identities a real install gives the services, all
    through the recorder, so every call they make is checked against the table."""

    def __init__(self, recorder: ApiRecorder, directory: Path, rbac_prefix: str, admin_kubeconfig: Path) -> None:
        self.recorder = recorder
        self.directory = directory
        self.rbac_prefix = rbac_prefix
        self.admin_kubeconfig = admin_kubeconfig
        self.expect_forbidden = False
        # (method, path) of requests a test makes on purpose to see them denied
        self.deliberate_denials: set[tuple[str, str]] = set()
        self._cleanups: list[Callable[[], None]] = []

    @property
    def recorder_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.recorder.port)

    def node_kubeconfig(self, node: str) -> Path:
        """CN system:multus:<node>, O system:multus: the per-node certificate's identity."""
        return node_identity_kubeconfig(self.directory / f"{node}.node.kubeconfig", node, self.recorder.url)

    def bootstrap_kubeconfig(self, node: str) -> Path:
        """The node's kubelet identity (system:node:<node>), as perNodeCertificate's bootstrap."""
        cn, orgs = f"system:node:{node}", ("system:nodes",)
        return write_client_kubeconfig(self.directory / f"{node}.bootstrap.kubeconfig", cn, orgs, self.recorder.url)

    def approver_kubeconfig(self) -> Path:
        """A token of a ServiceAccount `multus-approver` bound to the shipped
        ClusterRole multus-approver, as the approver Deployment runs."""
        api = new_client_from_config(config_file=str(self.admin_kubeconfig))
        try:
            namespace, token = service_account_token(api, "multus-approver", f"{self.rbac_prefix}multus-approver")
        finally:
            api.close()
        self._cleanups.append(lambda: delete_service_account_identity(self.admin_kubeconfig, namespace))
        return write_token_kubeconfig(self.directory / "approver.kubeconfig", token, self.recorder.url)

    def cleanup(self) -> None:
        for fn in reversed(self._cleanups):
            fn()


@pytest.fixture
def shipped_identity(tmp_path: Path, api_recorder: ApiRecorder, shipped_rbac: str) -> Iterator[ShippedIdentity]:
    """After the test: every request made with a node identity is one the RBAC
    table (services/certs/rbac.py, which rbac.yaml grants) lists, and none was
    forbidden (unless the test said it expects that)."""
    mark = api_recorder.snapshot()
    identity = ShippedIdentity(api_recorder, tmp_path, shipped_rbac, KUBE_ROOT / "admin.kubeconfig")
    try:
        yield identity
    finally:
        identity.cleanup()
    seen = [r for r in api_recorder.since(mark) if (r.method, r.path) not in identity.deliberate_denials]
    problems = ungranted(seen)
    if not identity.expect_forbidden:
        problems += [f"{r.user}: {r.method} {r.path} was forbidden (403)" for r in forbidden(seen)]
    assert not problems, "API calls the shipped RBAC does not cover:\n" + "\n".join(dict.fromkeys(problems))


# Every request the recorder saw in this session, for the summary below.
RBAC_SEEN: list[RecordedRequest] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    used = sorted(
        {
            f"{p.verb} {p.full_resource} ({p.group or 'core'})"
            for r in node_requests(RBAC_SEEN)
            if r.status != 403 and (p := request_permission(r.method, r.path, r.query)) is not None
        }
    )
    if used:
        terminalreporter.write_line(f"API permissions the node's services used under the shipped RBAC: {len(used)}")
        for line in used:
            terminalreporter.write_line(f"  {line}")
