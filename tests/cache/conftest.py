"""Fixtures for cache tests that talk to the real kube-apiserver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.cache.kube_support import Cluster, admin_client, test_namespace
from tests.support.netns import unique_name


@pytest.fixture(scope="session")
def admin_api(kube_api: Path) -> Iterator[k8s.ApiClient]:
    api = admin_client(kube_api)
    yield api
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def cluster(admin_api: k8s.ApiClient) -> Iterator[Cluster]:
    with test_namespace(admin_api) as c:
        yield c


@pytest.fixture
def node() -> str:
    """A node name of this test's own, so the field selector sees only its pods."""
    return unique_name("node-")
