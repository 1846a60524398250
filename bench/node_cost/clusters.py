"""Where pods and NADs come from: the real kube-apiserver from ../shared/kube
(objects in a namespace of the run's own, the node identity the manifests ship,
their RBAC) or the file-backed cluster directory. Both hold the same pods: one
per network count for the latency runs and the storm's pods."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from bench.node_cost.networks import STATUS_ANNOTATION, HostLinks, nad_configs, nad_object, pod_object
from tests.cache.kube_support import Cluster, admin_client, test_namespace
from tests.certs.support import node_bootstrap_kubeconfig, write_stored_certificate
from tests.support.kube_identity import KUBE_ROOT
from tests.support.services import REPO

SHARED_KUBE = REPO.parent / "shared" / "kube"
RBAC_MANIFEST = REPO / "compose" / "kubernetes" / "base" / "rbac.yaml"
NODE_ROLE = "multus-node"
NODE_GROUP = "system:multus"


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    size: int  # networks in all, the cluster network included


def workload_pods(sizes: tuple[int, ...], storm_pods: int, storm_size: int) -> list[tuple[str, int]]:
    """(name, networks) of every pod the workload uses."""
    return [(f"lat-{n}", n) for n in sizes] + [(f"storm-{i:03d}", storm_size) for i in range(storm_pods)]


# --- the real API server ---------------------------------------------------------------------


def start_kube_apiserver() -> Path:
    """The shared kube-apiserver (idempotent start, NAD CRD applied); its admin kubeconfig."""
    env = {**os.environ, "KUBE_WITH_NAD": "1", "KUBE_ROOT": str(KUBE_ROOT)}
    subprocess.run([str(SHARED_KUBE / "start.sh")], env=env, check=True, capture_output=True, timeout=300)
    return KUBE_ROOT / "admin.kubeconfig"


def bench_rbac(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """rbac.yaml's objects for this run: namespaced ones moved into `namespace`, cluster-scoped
    ones renamed with `suffix` (so nothing anyone else applied is touched), subjects kept, so the
    node group system:multus gets exactly what the manifests give it."""
    objects = [o for o in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if o]
    out = []
    for original in objects:
        obj = copy.deepcopy(original)
        kind = obj["kind"]
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            obj["metadata"]["name"] += suffix
        else:
            obj["metadata"]["namespace"] = namespace
        if kind == "ClusterRoleBinding" or (kind == "RoleBinding" and obj["roleRef"]["kind"] == "ClusterRole"):
            obj["roleRef"]["name"] += suffix
        for subject in obj.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                subject["namespace"] = namespace
        out.append(obj)
    return out


class KubeCluster:
    """The workload's objects on the real API server, for one node name."""

    name = "kube"

    def __init__(self, links: HostLinks, pods: list[tuple[str, int]]) -> None:
        self.links = links
        self.pod_specs = pods
        self.node = f"bench-node-{uuid.uuid4().hex[:8]}"
        self.pods: dict[str, PodRef] = {}
        self.namespace = ""
        self.server_version = ""
        self._cluster: Cluster | None = None

    @contextmanager
    def created(self) -> Iterator[KubeCluster]:
        api = admin_client(start_kube_apiserver())
        info = k8s.VersionApi(api).get_code()
        self.server_version = str(info.git_version)
        with ExitStack() as stack:
            cluster = stack.enter_context(test_namespace(api, "bench"))
            self._cluster, self.namespace = cluster, cluster.namespace
            self._apply_rbac(api, stack)
            for name, config in nad_configs(self.links).items():
                cluster.create_nad(name, config)
            for name, size in self.pod_specs:
                body = pod_object(name, cluster.namespace, self.node, size)
                created = cluster.core.create_namespaced_pod(cluster.namespace, body, _preload_content=False)
                self.pods[name] = PodRef(cluster.namespace, name, json.loads(created.data)["metadata"]["uid"], size)
            self._wait_authorized(api)
            yield self

    def _apply_rbac(self, api: k8s.ApiClient, stack: ExitStack) -> None:
        objects = bench_rbac(self.namespace, f"-{self.namespace}")
        rbac_api: Any = k8s.RbacAuthorizationV1Api(api)
        core: Any = k8s.CoreV1Api(api)
        for obj in objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "ServiceAccount":
                core.create_namespaced_service_account(self.namespace, obj)
            elif kind == "Role":
                rbac_api.create_namespaced_role(self.namespace, obj)
            elif kind == "RoleBinding":
                rbac_api.create_namespaced_role_binding(self.namespace, obj)
            elif kind == "ClusterRole":
                rbac_api.create_cluster_role(obj)
                stack.callback(rbac_api.delete_cluster_role, name)
            elif kind == "ClusterRoleBinding":
                rbac_api.create_cluster_role_binding(obj)
                stack.callback(rbac_api.delete_cluster_role_binding, name)
            else:
                raise ValueError(f"{RBAC_MANIFEST}: unexpected kind {kind}")

    def _wait_authorized(self, api: k8s.ApiClient) -> None:
        """The authorizer sees new bindings through its informers: wait until the node identity may write status."""
        review = k8s.V1SubjectAccessReview(
            spec=k8s.V1SubjectAccessReviewSpec(
                user=f"system:multus:{self.node}",
                groups=[NODE_GROUP, "system:authenticated"],
                resource_attributes=k8s.V1ResourceAttributes(
                    verb="patch", resource="pods", subresource="status", namespace=self.namespace
                ),
            )
        )
        deadline = time.monotonic() + 30
        while True:
            status = k8s.AuthorizationV1Api(api).create_subject_access_review(review).status
            if status is not None and status.allowed:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("RBAC for the bench node identity not in effect after 30 s")
            time.sleep(0.2)

    def node_credentials(self, cert_dir: Path) -> dict[str, Any]:
        """perNodeCertificate for one product: the node's bootstrap (kubelet) kubeconfig and an
        already issued client certificate CN system:multus:<node>, O system:multus signed by
        the cluster CA in certDir, as the CSR flow would have left it."""
        cert_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = node_bootstrap_kubeconfig(cert_dir.parent / "bootstrap.kubeconfig", self.node)
        write_stored_certificate(cert_dir, f"system:multus:{self.node}", (NODE_GROUP,), days=30)
        return {"enabled": True, "bootstrapKubeconfig": str(bootstrap), "certDir": str(cert_dir), "certDuration": "24h"}

    def daemon_config(self, cert_dir: Path) -> dict[str, Any]:
        return {"perNodeCertificate": self.node_credentials(cert_dir), "multusNamespace": self.namespace}

    def network_status(self, pod: PodRef) -> list[dict[str, Any]]:
        assert self._cluster is not None
        annotations = self._cluster.read_pod(pod.name).get("metadata", {}).get("annotations") or {}
        return list(json.loads(annotations.get(STATUS_ANNOTATION, "[]")))


# --- the file-backed cluster ------------------------------------------------------------------


class FileCluster:
    """The same objects as files in a product's cluster directory."""

    name = "files"
    server_version = "file-backed cluster"

    def __init__(self, links: HostLinks, pods: list[tuple[str, int]]) -> None:
        self.links = links
        self.node = "bench-node"
        self.namespace = "default"
        self.pods = {name: PodRef("default", name, str(uuid.uuid4()), size) for name, size in pods}

    @contextmanager
    def created(self) -> Iterator[FileCluster]:
        yield self

    def write(self, cluster_dir: Path) -> None:
        nads = [nad_object(name, self.namespace, conf) for name, conf in nad_configs(self.links).items()]
        (cluster_dir / "nads.yaml").write_text("\n---\n".join(json.dumps(n) for n in nads))
        pods = [pod_object(p.name, p.namespace, self.node, p.size, p.uid) for p in self.pods.values()]
        (cluster_dir / "pods.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": pods}))
