"""WatchPods against the real kube-apiserver, under the shipped node identity:
a snapshot of this node's pods, the SYNCED marker, then each change as the
pod's current state (annotation edits, deletion started, deletion done)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.api import cache_pb2
from tests.cache.kube_support import Cluster, cache_stub, kube_instance, running_cache
from tests.conftest import ShippedIdentity
from tests.support.services import Instance

pytestmark = pytest.mark.kube

NETWORKS = "k8s.v1.cni.cncf.io/networks"
Kind = cache_pb2.PodChange.Kind


def until(stream: Iterator[cache_pb2.PodChange], wanted: object) -> cache_pb2.PodChange:
    """The first change `wanted` accepts (the stream's deadline bounds the wait)."""
    for change in stream:
        if wanted(change):  # type: ignore[operator]
            return change
    raise AssertionError("stream ended")


def test_watch_pods_snapshot_then_changes(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str, tmp_path: Path
) -> None:
    ns = cluster.namespace
    cluster.create_pod("mine", node, {NETWORKS: "net-a"})
    cluster.create_pod("elsewhere", node + "-other")
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:
        stream = stub.WatchPods(cache_pb2.WatchPodsRequest(), timeout=30)
        try:
            snapshot = []
            for change in stream:
                if change.kind == Kind.SYNCED:
                    break
                assert change.kind == Kind.SNAPSHOT
                snapshot.append((change.pod.namespace, change.pod.name))
            assert snapshot == [(ns, "mine")]

            cluster.core.patch_namespaced_pod("mine", ns, {"metadata": {"annotations": {NETWORKS: "net-a,net-b"}}})
            edited = until(stream, lambda c: c.pod.annotations.get(NETWORKS) == "net-a,net-b")
            assert edited.kind == Kind.UPDATED and not edited.pod.deleting

            # No kubelet confirms this deletion: the pod stays, marked deleting.
            cluster.core.delete_namespaced_pod("mine", ns, grace_period_seconds=30)
            assert until(stream, lambda c: c.pod.deleting).pod.name == "mine"
            cluster.delete_pod("mine")
            gone = until(stream, lambda c: c.kind == Kind.DELETED)
            assert (gone.pod.namespace, gone.pod.name) == (ns, "mine")
        finally:
            stream.cancel()

    # A reader that reconnects to a restarted cache starts from a fresh snapshot.
    cluster.create_pod("later", node)
    with running_cache(instance, node), cache_stub(instance) as stub:
        stream = stub.WatchPods(cache_pb2.WatchPodsRequest(), timeout=30)
        try:
            first = next(stream)
            assert (first.kind, first.pod.name) == (Kind.SNAPSHOT, "later")
            assert next(stream).kind == Kind.SYNCED
        finally:
            stream.cancel()
