"""The cache against the real kube-apiserver: the node-scoped Pod informer, the
NAD informer, live GET fallback and UID checks, through the real service process."""

from __future__ import annotations

import json

import grpc
import pytest

from services.api import cache_pb2
from tests.cache.kube_support import Cluster, cache_stub, eventually, get_pod, kube_instance, running_cache, stats
from tests.conftest import ShippedIdentity
from tests.support.services import Instance

pytestmark = pytest.mark.kube


def test_pod_informer_lists_and_watches_only_this_node(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    cluster.create_pod("before", node, {"k8s.v1.cni.cncf.io/networks": "net-a"})
    cluster.create_pod("elsewhere", node + "-other")
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:
        kinds = stats(stub)
        assert kinds["Pod"].synced and kinds["NetworkAttachmentDefinition"].synced
        assert kinds["Pod"].count == 1  # the field selector keeps other nodes' pods out
        assert kinds["Pod"].resource_version
        before = get_pod(stub, ns, "before")
        assert before.node_name == node
        assert before.annotations["k8s.v1.cni.cncf.io/networks"] == "net-a"

        # Watch: a pod created now arrives without a live GET being needed.
        created = cluster.create_pod("after", node)
        eventually(lambda: stats(stub)["Pod"].count == 2, what="watched pod")
        assert get_pod(stub, ns, "after", wait_ms=1).uid == created["metadata"]["uid"]

        # Another node's pod is not cached, but GetPod finds it with a live GET after the wait.
        assert get_pod(stub, ns, "elsewhere", wait_ms=100).node_name == node + "-other"
        assert stats(stub)["Pod"].count == 2

        cluster.delete_pod("before")
        eventually(lambda: stats(stub)["Pod"].count == 1, what="watched deletion")
        with pytest.raises(grpc.RpcError) as err:
            get_pod(stub, ns, "before", wait_ms=100)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_pod_waits_for_a_pod_created_after_the_call(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:
        future = stub.GetPod.future(
            cache_pb2.GetPodRequest(namespace=cluster.namespace, name="racer", wait_ms=5000), timeout=10
        )
        created = cluster.create_pod("racer", node)
        assert future.result().uid == created["metadata"]["uid"]


def test_uid_mismatch_is_a_precondition_failure_except_for_mirror_pods(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    cluster.create_pod("plain", node)
    mirror = cluster.create_pod(
        "static-web",
        node,
        {"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"},
    )
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:
        with pytest.raises(grpc.RpcError) as err:
            get_pod(stub, ns, "plain", uid="00000000-0000-0000-0000-000000000000", wait_ms=200)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"pod {ns}/plain has UID" in (err.value.details() or "")
        # kubelet knows a static pod by its own UID; the API's mirror pod has another.
        got = get_pod(stub, ns, "static-web", uid="kubelet-side-uid", wait_ms=200)
        assert got.uid == mirror["metadata"]["uid"]


def test_nad_informer_watches_every_namespace(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    cluster.create_nad("listed", {"cniVersion": "1.0.0", "type": "macvlan"})
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:

        def nad(name: str) -> cache_pb2.NetworkAttachmentDefinition:
            req = cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace=ns, name=name, wait_ms=2000)
            got: cache_pb2.NetworkAttachmentDefinition = stub.GetNetworkAttachmentDefinition(req, timeout=10)
            return got

        assert json.loads(nad("listed").config)["type"] == "macvlan"
        cluster.create_nad("watched", None)
        assert nad("watched").config == ""
        cluster.patch_nad("watched", {"cniVersion": "1.0.0", "type": "bridge"})
        eventually(lambda: nad("watched").config != "", what="modified NAD")
        assert json.loads(nad("watched").config)["type"] == "bridge"
        cluster.delete_nad("watched")
        req = cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace=ns, name="watched", wait_ms=100)

        def gone() -> bool:
            try:
                stub.GetNetworkAttachmentDefinition(req, timeout=10)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND
                assert f"{ns}/watched" in (err.details() or "")
                return True
            return False

        eventually(gone, what="deleted NAD")
