"""network-status write-back and pod events against the real kube-apiserver:
pods/status with a real 409 conflict, an RBAC 403 from a real ClusterRole
missing a verb, and an API server that goes away and comes back."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from services.api import cache_pb2
from services.cache import metrics
from services.cache.errors import PodGone
from services.cache.kube_source import KubeSource
from services.cache.objects import NETWORK_STATUS_ANNOTATION
from services.cache.source import StatusWrite
from services.common.config import config_from_dict
from tests.cache.kube_support import (
    Cluster,
    cache_stub,
    eventually,
    get_pod,
    kube_instance,
    running_cache,
    stats,
    write_kubeconfig,
)
from tests.conftest import ShippedIdentity
from tests.support.services import Instance
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.kube

STATUS = json.dumps([{"name": "cluster-net", "interface": "eth0", "ips": ["10.0.0.5"], "default": True}])


def annotation(cluster: Cluster, pod: str) -> str | None:
    return (cluster.read_pod(pod)["metadata"].get("annotations") or {}).get(NETWORK_STATUS_ANNOTATION)


def update(stub: Any, ns: str, name: str, uid: str, status: str = STATUS, wait_ms: int = 0, events: Any = ()) -> Any:
    req = cache_pb2.UpdateNetworkStatusRequest(
        namespace=ns, name=name, uid=uid, network_status_json=status, wait_ms=wait_ms, events=list(events)
    )
    return stub.UpdateNetworkStatus(req, timeout=15)


def test_status_write_back_and_pod_events(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    uid = cluster.create_pod("web", node)["metadata"]["uid"]
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:
        added = cache_pb2.PodEvent(type="Normal", reason="AddedInterface", message="Add eth0 [10.0.0.5/24] from c")
        resp = update(stub, ns, "web", uid, events=[added])  # emitted once the write was tried
        assert resp.delivered, resp.message
        assert annotation(cluster, "web") == STATUS
        eventually(lambda: get_pod(stub, ns, "web").annotations.get(NETWORK_STATUS_ANNOTATION) == STATUS)

        # An empty status removes the annotation (DEL).
        assert update(stub, ns, "web", uid, status="").delivered
        assert annotation(cluster, "web") is None

        # A write for another incarnation of the pod is dropped, not applied.
        stale = update(stub, ns, "web", "00000000-0000-0000-0000-000000000000")
        assert not stale.delivered and "gone" in stale.message
        assert annotation(cluster, "web") is None

        stub.EmitPodEvent(
            cache_pb2.EmitPodEventRequest(
                namespace=ns,
                name="web",
                type="Normal",
                reason="AddedInterface",
                message="Add net1 [10.1.1.2/24] from x",
            ),
            timeout=10,
        )

    def events() -> list[Any]:
        return list(json.loads(cluster.core.list_namespaced_event(ns, _preload_content=False).data)["items"])

    items: list[Any] = eventually(lambda: events() if len(events()) == 2 else None, what="both events")
    assert sorted((e["reason"], e["message"], e["source"]["component"]) for e in items) == [
        ("AddedInterface", "Add eth0 [10.0.0.5/24] from c", "multus"),
        ("AddedInterface", "Add net1 [10.1.1.2/24] from x", "multus"),
    ]
    assert all(e["involvedObject"]["uid"] == uid and e["involvedObject"]["kind"] == "Pod" for e in items)


async def test_status_write_is_one_patch_that_keeps_other_writers_changes(
    shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    uid = cluster.create_pod("shared", node, {"other.example/keep": "mine"})["metadata"]["uid"]
    source = KubeSource(config_from_dict({"kubeconfig": str(shipped_identity.node_kubeconfig(node))}), node)
    mark = shipped_identity.recorder.snapshot()
    await source.write_network_status(StatusWrite(ns, "shared", uid, STATUS))
    pod_path = f"/api/v1/namespaces/{ns}/pods/shared"
    calls = [(r.method, r.path) for r in shipped_identity.recorder.since(mark) if r.path.startswith(pod_path)]
    assert calls == [("PATCH", f"{pod_path}/status")]
    pod = cluster.read_pod("shared")
    assert pod["metadata"]["annotations"] == {"other.example/keep": "mine", NETWORK_STATUS_ANNOTATION: STATUS}
    # The same write again changes nothing (and needs no read either).
    await source.write_network_status(StatusWrite(ns, "shared", uid, STATUS))
    assert cluster.read_pod("shared")["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]
    await source.stop()


async def test_status_write_for_a_recreated_pod_is_refused(
    shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    old_uid = cluster.create_pod("reborn", node)["metadata"]["uid"]
    cluster.delete_pod("reborn")  # grace period 0: gone at once
    new_uid = cluster.create_pod("reborn", node)["metadata"]["uid"]
    assert new_uid != old_uid
    source = KubeSource(config_from_dict({"kubeconfig": str(shipped_identity.node_kubeconfig(node))}), node)
    with pytest.raises(PodGone, match="recreated"):
        await source.write_network_status(StatusWrite(ns, "reborn", old_uid, STATUS))
    assert annotation(cluster, "reborn") is None
    with pytest.raises(PodGone, match="not found"):
        await source.write_network_status(StatusWrite(ns, "never-was", "", STATUS))
    await source.stop()


async def test_mirror_pod_status_write_retries_a_real_409_conflict(
    shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    """kubelet names a static pod by its own UID: the patch's UID check refuses it, the
    pod is read (a mirror: written anyway) and replaced, re-read on each real 409."""
    ns = cluster.namespace
    mirror = {"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"}
    cluster.create_pod("static-web", node, mirror)
    source = KubeSource(config_from_dict({"kubeconfig": str(shipped_identity.node_kubeconfig(node))}), node)
    real_get = source._get_raw
    writers = iter(range(2))  # another writer changes the pod between our read and our write, twice

    def get_then_race(*args: Any) -> Any:
        pod = real_get(*args)
        if next(writers, None) is not None:
            cluster.core.patch_namespaced_pod(
                "static-web", ns, {"metadata": {"labels": {f"raced-{time.monotonic_ns()}": "x"}}}
            )
        return pod

    source._get_raw = get_then_race  # type: ignore[method-assign,assignment]
    conflicts = metrics.STATUS_CONFLICTS._value.get()
    await source.write_network_status(StatusWrite(ns, "static-web", "kubelet-side-uid", STATUS))
    assert metrics.STATUS_CONFLICTS._value.get() - conflicts == 2
    pod = cluster.read_pod("static-web")
    assert pod["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION] == STATUS
    assert len([k for k in pod["metadata"]["labels"] if k.startswith("raced-")]) == 2  # nothing overwritten
    await source.stop()


@pytest.fixture
def limited_identity(admin_api: k8s.ApiClient, cluster: Cluster, tmp_path: Path, kube_api: Path) -> Iterator[Any]:
    """A ServiceAccount bound to a ClusterRole that can read pods and NADs and create
    events, but lacks `patch pods/status`; yields (kubeconfig, grant) where grant() adds it."""
    rbac: Any = k8s.RbacAuthorizationV1Api(admin_api)
    name = f"{cluster.namespace}-limited"
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["k8s.cni.cncf.io"],
            "resources": ["network-attachment-definitions"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
    ]
    cluster.core.create_namespaced_service_account(cluster.namespace, {"metadata": {"name": "cache"}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
    try:
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "cache", "namespace": cluster.namespace}],
            }
        )
        token = cluster.core.create_namespaced_service_account_token(
            "cache", cluster.namespace, {"spec": {"expirationSeconds": 3600}}, _preload_content=False
        )
        kubeconfig = write_kubeconfig(
            tmp_path / "limited.kubeconfig", kube_api, token=json.loads(token.data)["status"]["token"]
        )

        def grant() -> None:
            fixed = [*rules, {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update", "patch"]}]
            rbac.patch_cluster_role(name, {"rules": fixed})

        yield kubeconfig, grant
    finally:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(name)
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise


def test_rbac_403_keeps_the_write_queued_until_the_role_is_fixed(
    instance: Instance, cluster: Cluster, node: str, limited_identity: Any
) -> None:
    kubeconfig, grant = limited_identity
    ns = cluster.namespace
    uid = cluster.create_pod("web", node)["metadata"]["uid"]
    kube_instance(instance, kubeconfig)
    with running_cache(instance, node) as proc, cache_stub(instance) as stub:
        started = time.monotonic()
        resp = update(stub, ns, "web", uid, wait_ms=1000)
        assert not resp.delivered and "queued" in resp.message
        assert time.monotonic() - started < 5  # bounded: ADD is not held up by RBAC
        eventually(lambda: "forbidden by RBAC" in proc.log(), what="RBAC error in the log")
        assert "pods/status" in proc.log()
        assert annotation(cluster, "web") is None

        grant()
        eventually(lambda: annotation(cluster, "web") == STATUS, timeout=40, what="background delivery")

        def late_event() -> bool:
            items = json.loads(cluster.core.list_namespaced_event(ns, _preload_content=False).data)["items"]
            return any(e["reason"] == "NetworkStatusUpdated" for e in items)

        eventually(late_event, what="event about the late delivery")


def test_api_server_unreachable_and_back(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str, tmp_path: Path
) -> None:
    ns = cluster.namespace
    uid = cluster.create_pod("web", node)["metadata"]["uid"]
    with tcp_proxy(shipped_identity.recorder_address) as proxy:
        kubeconfig = write_kubeconfig(
            tmp_path / "proxied.kubeconfig", shipped_identity.node_kubeconfig(node), server=proxy.url
        )
        kube_instance(instance, kubeconfig)
        with running_cache(instance, node), cache_stub(instance) as stub:
            restarts = stats(stub)["Pod"].watch_restarts
            proxy.cut()
            # The cache keeps answering from memory while the API server is gone.
            assert get_pod(stub, ns, "web").uid == uid
            started = time.monotonic()
            resp = update(stub, ns, "web", uid, wait_ms=1000)
            assert not resp.delivered
            assert time.monotonic() - started < 5
            cluster.create_pod("born-in-outage", node)
            eventually(lambda: stats(stub)["Pod"].watch_restarts > restarts, what="watch failure noticed")
            assert stats(stub)["Pod"].synced

            proxy.restore()
            # The watch resumes (backoff is capped), the queued write goes out.
            eventually(lambda: stats(stub)["Pod"].count == 2, timeout=45, what="watch resumed")
            eventually(lambda: annotation(cluster, "web") == STATUS, timeout=45, what="queued write delivered")
            assert get_pod(stub, ns, "born-in-outage").node_name == node


def test_kubeconfig_reload_switches_servers_without_dropping_the_cache(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str, tmp_path: Path
) -> None:
    ns = cluster.namespace
    cluster.create_pod("web", node)
    with tcp_proxy(shipped_identity.recorder_address) as first, tcp_proxy(shipped_identity.recorder_address) as second:
        kubeconfig = write_kubeconfig(
            tmp_path / "node.kubeconfig", shipped_identity.node_kubeconfig(node), server=first.url
        )
        kube_instance(instance, kubeconfig)
        with running_cache(instance, node) as proc, cache_stub(instance) as stub:
            synced_at = stats(stub)["Pod"].last_sync_unix
            write_kubeconfig(kubeconfig, shipped_identity.node_kubeconfig(node), server=second.url)
            eventually(lambda: "API credentials reloaded" in proc.log(), what="reload")
            first.cut()  # the old server is gone for good; everything must go through the new one
            cluster.create_pod("after-reload", node)
            eventually(lambda: stats(stub)["Pod"].count == 2, what="watch through the new kubeconfig")
            # Resumed from the resourceVersion it held: no relist, the cache was never dropped.
            assert stats(stub)["Pod"].last_sync_unix == synced_at
            assert get_pod(stub, ns, "web").name == "web"


_ = asyncio  # pytest-asyncio runs the async test above


def test_a_queued_write_survives_kill_9_of_the_cache(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str, tmp_path: Path
) -> None:
    """Queued writes lived in memory only: a cache killed (or restarted) while the
    API server was unreachable lost them, and the pod never got its network-status."""
    ns = cluster.namespace
    uid = cluster.create_pod("web", node)["metadata"]["uid"]
    with tcp_proxy(shipped_identity.recorder_address) as proxy:
        kubeconfig = write_kubeconfig(
            tmp_path / "proxied.kubeconfig", shipped_identity.node_kubeconfig(node), server=proxy.url
        )
        kube_instance(instance, kubeconfig)
        with running_cache(instance, node) as cache, cache_stub(instance) as stub:
            proxy.cut()
            resp = update(stub, ns, "web", uid, wait_ms=300)
            assert not resp.delivered and "queued" in resp.message
            cache.proc.send_signal(signal.SIGKILL)
            cache.proc.wait(10)
        queued = list((Path(instance.config["runDir"]) / "cache" / "status-queue").glob("*.json"))
        assert [p.name for p in queued] == [f"{ns}_web.json"]
        assert annotation(cluster, "web") is None
        with running_cache(instance, node, wait=False):
            proxy.restore()
            eventually(lambda: annotation(cluster, "web") == STATUS, timeout=45, what="write delivered after restart")
            eventually(lambda: not any(p.exists() for p in queued), what="queue file removed")
