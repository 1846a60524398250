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
