"""Fixtures every test suite shares: isolated instances, and the real kube-apiserver."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    yield KUBE_ROOT / "admin.kubeconfig"
