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


# Tests that need root: they create network namespaces and veth pairs, run the
# reference plugins, chroot, or build images. Marked `root` by what they use;
# without root they are skipped with that reason, and `-m "not root"` leaves
# them out, so a developer without root still runs everything else
# (tests/gateway/test_core_inprocess.py covers the CNI logic in-process).
ROOT_FIXTURES = frozenset({"gateway_node", "pod_netns", "executor", "executor_process"})
ROOT_DIRS = ("e2e", "executor", "deploy")
ROOT_FREE_MODULES = frozenset({"test_rules.py", "test_manifests.py", "test_runtime_paths.py"})


def _needs_root(item: pytest.Item) -> bool:
    path = Path(str(item.fspath))
    if ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return path.parent.name in ROOT_DIRS and path.name not in ROOT_FREE_MODULES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if _needs_root(item):
            item.add_marker(pytest.mark.root)
        if not is_root and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root (network namespaces, plugins, chroot or images)"))


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
    admin = KUBE_ROOT / "admin.kubeconfig"
    # start.sh applies the NAD CRD only when it starts the control plane: make sure it is
    # there even if an earlier uninstall (ours or a developer's) deleted it.
    subprocess.run(
        [str(KUBE_ROOT / "bin" / "kubectl"), f"--kubeconfig={admin}", "apply", "-f", str(SHARED_KUBE / "nad-crd.yaml")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield admin


@pytest.fixture(scope="session")
def api_recorder(kube_api: Path) -> Iterator[ApiRecorder]:
    """The recording front proxy before the real API server (tests/support/api_recorder.py)."""
    with running_recorder(PKI, API_SERVER) as recorder:
        yield recorder
    RBAC_SEEN.extend(recorder.requests)


@pytest.fixture(scope="session")
def shipped_rbac(kube_api: Path) -> Iterator[str]:
    """compose/kubernetes/base/rbac.yaml's cluster-wide objects, as shipped (under a test prefix)."""
    api = new_client_from_config(config_file=str(kube_api))  # type: ignore[no-untyped-call]
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
        api = new_client_from_config(config_file=str(self.admin_kubeconfig))  # type: ignore[no-untyped-call]
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
    from tests.support import fault_report

    if fault_report.FIGURES:
        fault_report.write()
        terminalreporter.write_line(f"fault and fuzz figures (also in {fault_report.REPORT}):")
        for line in fault_report.lines():
            terminalreporter.write_line(line)
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
