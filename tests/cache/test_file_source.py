"""The file-backed cache as the demo and CNI-path tests use it: the real
service process on a real Unix socket, reading a watched directory."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.api import cache_pb2, cache_pb2_grpc
from services.cache.objects import NETWORK_STATUS_ANNOTATION, file_pod_uid
from services.common import cni
from services.common.errors import NetworkNotFound, PodNotFound
from services.gateway.cache_client import CacheClient
from services.gateway.ports import PodEventView
from tests.support.services import Instance, running_services

PODS_YAML = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  uid: 11111111-2222-3333-4444-555555555555
  annotations:
    k8s.v1.cni.cncf.io/networks: macvlan-net
spec:
  nodeName: node-a
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: store
spec:
  nodeName: node-a
"""

NADS_LIST = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "macvlan-net"},
            "spec": {"config": '{"cniVersion": "1.0.0", "type": "macvlan"}'},
        },
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "from-confdir", "namespace": "store"},
        },
    ],
}


@pytest.fixture
def cache_stub(instance: Instance) -> Iterator[cache_pb2_grpc.CacheStub]:
    (instance.cluster_dir / "pods.yaml").write_text(PODS_YAML)
    (instance.cluster_dir / "nads.json").write_text(json.dumps(NADS_LIST))
    with running_services(instance, "cache"), grpc.insecure_channel(f"unix://{instance.grpc_socket('cache')}") as ch:
        yield cache_pb2_grpc.CacheStub(ch)


def test_serves_pods_and_nads_from_multi_document_yaml_and_lists(cache_stub: cache_pb2_grpc.CacheStub) -> None:
    web = cache_stub.GetPod(cache_pb2.GetPodRequest(namespace="default", name="web"), timeout=5)
    assert web.uid == "11111111-2222-3333-4444-555555555555"
    assert web.node_name == "node-a"
    assert web.annotations["k8s.v1.cni.cncf.io/networks"] == "macvlan-net"

    db = cache_stub.GetPod(cache_pb2.GetPodRequest(namespace="store", name="db"), timeout=5)
    assert db.uid == file_pod_uid("store", "db")  # stable: derived from namespace/name

    nad = cache_stub.GetNetworkAttachmentDefinition(
        cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace="default", name="macvlan-net"), timeout=5
    )
    assert json.loads(nad.config)["type"] == "macvlan"
    bare = cache_stub.GetNetworkAttachmentDefinition(
        cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace="store", name="from-confdir"), timeout=5
    )
    assert bare.config == ""

    stats = cache_stub.Stats(cache_pb2.StatsRequest(), timeout=5)
    assert {k.kind: (k.count, k.synced) for k in stats.kinds} == {
        "Pod": (2, True),
        "NetworkAttachmentDefinition": (2, True),
    }
    assert stats.source.startswith("files:")


def test_get_pod_waits_for_a_pod_written_after_the_call(
    instance: Instance, cache_stub: cache_pb2_grpc.CacheStub
) -> None:
    future = cache_stub.GetPod.future(
        cache_pb2.GetPodRequest(namespace="default", name="late", wait_ms=5000), timeout=10
    )
    time.sleep(0.3)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late", "uid": "u-late"}, "spec": {}}
    (instance.cluster_dir / "late.json").write_text(json.dumps(pod))
    assert future.result().uid == "u-late"

    # Removing the file removes the pod (once the watcher has seen it).
    (instance.cluster_dir / "late.json").unlink()
    deadline = time.monotonic() + 5
    while True:
        try:
            cache_stub.GetPod(cache_pb2.GetPodRequest(namespace="default", name="late", wait_ms=50), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
            break
        assert time.monotonic() < deadline, "deleted pod still served"
        time.sleep(0.05)


def test_missing_pod_and_nad_are_not_found_and_uid_mismatch_is_a_precondition(
    cache_stub: cache_pb2_grpc.CacheStub,
) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        cache_stub.GetPod(cache_pb2.GetPodRequest(namespace="default", name="nope", wait_ms=300), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert time.monotonic() - started >= 0.3

    with pytest.raises(grpc.RpcError) as err:
        cache_stub.GetNetworkAttachmentDefinition(
            cache_pb2.GetNetworkAttachmentDefinitionRequest(namespace="default", name="nope", wait_ms=100), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "default/nope" in (err.value.details() or "")

    with pytest.raises(grpc.RpcError) as err:
        cache_stub.GetPod(cache_pb2.GetPodRequest(namespace="default", name="web", uid="other", wait_ms=100), timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "deleted and recreated" in (err.value.details() or "")

    with pytest.raises(grpc.RpcError) as err:
        cache_stub.GetPod(cache_pb2.GetPodRequest(namespace="", name="web"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_network_status_is_stored_persisted_and_survives_a_restart(instance: Instance) -> None:
    (instance.cluster_dir / "pods.yaml").write_text(PODS_YAML)
    status = json.dumps([{"name": "default/macvlan-net", "interface": "net1", "ips": ["10.1.1.2"]}])
    sock = f"unix://{instance.grpc_socket('cache')}"
    with running_services(instance, "cache"), grpc.insecure_channel(sock) as ch:
        stub = cache_pb2_grpc.CacheStub(ch)
        resp = stub.UpdateNetworkStatus(
            cache_pb2.UpdateNetworkStatusRequest(
                namespace="default", name="web", uid="11111111-2222-3333-4444-555555555555", network_status_json=status
            ),
            timeout=5,
        )
        assert resp.delivered
        got = stub.GetPod(cache_pb2.GetPodRequest(namespace="default", name="web"), timeout=5)
        assert got.annotations[NETWORK_STATUS_ANNOTATION] == status
        stub.EmitPodEvent(
            cache_pb2.EmitPodEventRequest(
                namespace="default",
                name="web",
                type="Normal",
                reason="AddedInterface",
                message="Add net1 [10.1.1.2/24]",
            ),
            timeout=5,
        )
    events = [json.loads(line) for line in (instance.run_dir / "cache" / "events.jsonl").read_text().splitlines()]
    assert [(e["reason"], e["message"]) for e in events] == [("AddedInterface", "Add net1 [10.1.1.2/24]")]
    assert (instance.run_dir / "cache" / "network-status.json").exists()

    with running_services(instance, "cache"), grpc.insecure_channel(sock) as ch:
        got = cache_pb2_grpc.CacheStub(ch).GetPod(cache_pb2.GetPodRequest(namespace="default", name="web"), timeout=5)
        assert got.annotations[NETWORK_STATUS_ANNOTATION] == status


async def test_gateway_client_maps_not_found_to_cni_codes(instance: Instance, tmp_path: Path) -> None:
    (instance.cluster_dir / "pods.yaml").write_text(PODS_YAML)
    with running_services(instance, "cache"):
        client = CacheClient(instance.grpc_socket("cache"))
        try:
            pod = await client.get_pod("default", "web", wait_ms=100, timeout=5)
            assert pod.name == "web"
            with pytest.raises(PodNotFound) as gone:
                await client.get_pod("default", "ghost", wait_ms=100, timeout=5)
            assert gone.value.code == cni.TRY_AGAIN_LATER
            with pytest.raises(cni.CniError) as err:
                await client.get_network_attachment_definition("kube-system", "ghost-net", wait_ms=100, timeout=5)
            assert err.value.code == cni.INVALID_CONFIG
            assert isinstance(err.value, NetworkNotFound)
            assert "(ghost-net) in namespace (kube-system)" in err.value.msg
            assert await client.update_network_status("default", "web", "", "[]", timeout=5)
            await client.emit_pod_event("default", "web", "", "Warning", "NoNetworkFound", "no net", timeout=5)
        finally:
            await client.close()


async def test_pod_comes_with_the_cached_nads_its_annotation_names(instance: Instance) -> None:
    """One call for the pod and its NADs; a NAD the cache lacks is not made up: the
    gateway asks for it alone, which still ends in code 7."""
    pods = PODS_YAML.replace(
        "k8s.v1.cni.cncf.io/networks: macvlan-net", "k8s.v1.cni.cncf.io/networks: macvlan-net,ghost"
    )
    (instance.cluster_dir / "pods.yaml").write_text(pods)
    (instance.cluster_dir / "nads.json").write_text(json.dumps(NADS_LIST))
    with running_services(instance, "cache"):
        client = CacheClient(instance.grpc_socket("cache"))
        try:
            pod = await client.get_pod("default", "web", wait_ms=100, timeout=5)
            assert list(pod.networks) == [("default", "macvlan-net")]
            assert json.loads(pod.networks[("default", "macvlan-net")].config)["type"] == "macvlan"
            with pytest.raises(NetworkNotFound) as err:
                await client.get_network_attachment_definition("default", "ghost", wait_ms=100, timeout=5)
            assert err.value.code == cni.INVALID_CONFIG
            assert (await client.get_pod("store", "db", wait_ms=100, timeout=5)).networks == {}
        finally:
            await client.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_events_sent_with_a_status_write_are_emitted_after_it(instance: Instance) -> None:
    (instance.cluster_dir / "pods.yaml").write_text(PODS_YAML)
    events_file = instance.run_dir / "cache" / "events.jsonl"
    with running_services(instance, "cache"):
        client = CacheClient(instance.grpc_socket("cache"))
        try:
            added = [
                PodEventView("Normal", "AddedInterface", "Add eth0 [10.0.0.2/24] from cluster"),
                PodEventView("Normal", "AddedInterface", "Add net1 [10.1.1.2/24] from default/macvlan-net"),
            ]
            assert await client.update_network_status("default", "web", "", "[]", timeout=5, events=added)
            deadline = time.monotonic() + 5  # emitted in the background
            while time.monotonic() < deadline and len(lines(events_file)) < 2:
                await asyncio.sleep(0.05)
        finally:
            await client.close()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [(e["name"], e["type"], e["reason"], e["message"]) for e in events] == [
        ("web", e.type, e.reason, e.message) for e in added
    ]
