"""Helpers for cache tests against the real kube-apiserver: an admin client,
namespaces, pods and NADs that are always deleted, and the cache process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from services.api import cache_pb2, cache_pb2_grpc
from tests.support.netns import unique_name
from tests.support.services import Instance, ServiceProcess, start_service, wait_serving
from tests.support.waiting import poll_until

NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
T = TypeVar("T")


def admin_client(kubeconfig: Path) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
    )
    return k8s.ApiClient(cfg)


def eventually(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    return poll_until(check, timeout=timeout, what=what, interval=0.05)


class Cluster:
    """Objects a test creates, in a namespace of its own that is deleted afterwards."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api = api
        # Typed loosely: these tests send and read raw JSON, not model objects.
        self.core: Any = k8s.CoreV1Api(api)
        self.custom: Any = k8s.CustomObjectsApi(api)
        self.namespace = namespace

    def create_pod(
        self, name: str, node: str, annotations: dict[str, str] | None = None, namespace: str = ""
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/app:1"}]},
        }
        resp = self.core.create_namespaced_pod(namespace or self.namespace, body, _preload_content=False)
        return dict(json.loads(resp.data))

    def delete_pod(self, name: str, namespace: str = "") -> None:
        # No kubelet confirms deletion: grace period 0.
        self.core.delete_namespaced_pod(name, namespace or self.namespace, grace_period_seconds=0)

    def create_nad(self, name: str, config: dict[str, Any] | None, namespace: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{NAD_GROUP}/{NAD_VERSION}",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name},
            "spec": {"config": json.dumps(config)} if config is not None else {},
        }
        return dict(
            self.custom.create_namespaced_custom_object(
                NAD_GROUP, NAD_VERSION, namespace or self.namespace, NAD_PLURAL, body
            )
        )

    def patch_nad(self, name: str, config: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            NAD_GROUP, NAD_VERSION, self.namespace, NAD_PLURAL, name, {"spec": {"config": json.dumps(config)}}
        )

    def delete_nad(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(NAD_GROUP, NAD_VERSION, self.namespace, NAD_PLURAL, name)

    def read_pod(self, name: str) -> dict[str, Any]:
        resp = self.core.read_namespaced_pod(name, self.namespace, _preload_content=False)
        return dict(json.loads(resp.data))


@contextmanager
def test_namespace(api: k8s.ApiClient, prefix: str = "cache") -> Iterator[Cluster]:
    core: Any = k8s.CoreV1Api(api)
    name = unique_name(prefix).lower().replace("_", "-")
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield Cluster(api, name)
    finally:
        delete_namespace(api, name)


def delete_namespace(api: k8s.ApiClient, name: str) -> None:
    core: Any = k8s.CoreV1Api(api)
    try:
        # Pods bound to a node would wait forever for a kubelet: force them first.
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def write_kubeconfig(path: Path, source: Path, server: str = "", token: str = "") -> Path:
    """A copy of `source` (admin) with another server URL and/or a bearer token instead of the client cert."""
    doc = yaml.safe_load(source.read_text())
    base = source.parent
    for cluster in doc["clusters"]:
        entry = cluster["cluster"]
        if server:
            entry["server"] = server
        ca = entry.get("certificate-authority")
        if ca and not os.path.isabs(ca):
            entry["certificate-authority"] = str(base / ca)
    for user in doc["users"]:
        entry = user["user"]
        if token:
            user["user"] = {"token": token}
            continue
        for key in ("client-certificate", "client-key"):
            if entry.get(key) and not os.path.isabs(entry[key]):
                entry[key] = str(base / entry[key])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)
    return path


def kube_instance(instance: Instance, kubeconfig: Path, **overrides: Any) -> Instance:
    instance.config["clusterDir"] = ""
    instance.config["kubeconfig"] = str(kubeconfig)
    instance.config.update(overrides)
    instance.write_config()
    return instance


@contextmanager
def running_cache(instance: Instance, node: str, wait: bool = True) -> Iterator[ServiceProcess]:
    env = {"MULTUS_NODE_NAME": node, "KUBECONFIG": ""}
    proc = start_service(instance, "cache", env=env)
    try:
        if wait:
            try:
                wait_serving(instance.grpc_socket("cache"), timeout=30)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n{proc.log()[-4000:]}") from exc
        yield proc
    finally:
        proc.stop()


@contextmanager
def cache_stub(instance: Instance) -> Iterator[cache_pb2_grpc.CacheStub]:
    with grpc.insecure_channel(f"unix://{instance.grpc_socket('cache')}") as channel:
        yield cache_pb2_grpc.CacheStub(channel)


def get_pod(stub: cache_pb2_grpc.CacheStub, namespace: str, name: str, **kw: Any) -> cache_pb2.Pod:
    pod: cache_pb2.Pod = stub.GetPod(cache_pb2.GetPodRequest(namespace=namespace, name=name, **kw), timeout=15)
    return pod


def stats(stub: cache_pb2_grpc.CacheStub) -> dict[str, cache_pb2.KindStats]:
    return {k.kind: k for k in stub.Stats(cache_pb2.StatsRequest(), timeout=5).kinds}
