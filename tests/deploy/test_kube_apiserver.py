"""The manifests against the real kube-apiserver v1.20: server-side dry-run of
every object (1.20 does not know the newer `grpc` probe field, so the native-probe
DaemonSet is checked by schema in test_manifests.py and its exec-probe twin
here), and the RBAC rules evaluated by the real RBAC authorizer for every
permission the certs preflight checks."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import UnprocessibleEntityError

from services.certs import rbac
from tests.deploy.manifests import EXEC_DAEMONSET, GRPC_DAEMONSET, Manifest, daemon_config, load_all

pytestmark = pytest.mark.kube

FIELD_MANAGER = "multus-deploy-test"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


@pytest.fixture(scope="module")
def api(kube_api: Path) -> Iterator[k8s.ApiClient]:
    client = kube_config.new_client_from_config(str(kube_api))  # type: ignore[no-untyped-call]
    yield client
    client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    name = f"deploy-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def _into_namespace(obj: dict[str, Any], namespace: str, source_namespace: str) -> dict[str, Any]:
    """The object moved into the test's namespace (subjects that point at ours too)."""
    out = copy.deepcopy(obj)
    if out["kind"] not in CLUSTER_SCOPED:
        out["metadata"]["namespace"] = namespace
    for subject in out.get("subjects", []):
        if subject.get("namespace") == source_namespace:
            subject["namespace"] = namespace
    return out


def _dynamic(api: k8s.ApiClient) -> DynamicClient:
    return DynamicClient(api)  # type: ignore[no-untyped-call]


def _dry_run_apply(dyn: DynamicClient, obj: dict[str, Any]) -> Any:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return resource.server_side_apply(
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All",
    )


def test_every_object_passes_server_side_dry_run(api: k8s.ApiClient, namespace: str) -> None:
    dyn = _dynamic(api)
    source_namespace = daemon_config().multus_namespace
    checked = []
    for manifest in load_all():
        if manifest.path == GRPC_DAEMONSET:
            continue  # grpc probes: unknown to 1.20 (schema-checked instead); its exec twin is checked here
        obj = _into_namespace(manifest.obj, namespace, source_namespace)
        applied = _dry_run_apply(dyn, obj)
        assert applied.metadata.name == manifest.name, str(manifest)
        checked.append(manifest.path.name)
    assert EXEC_DAEMONSET.name in checked
    # Dry-run created nothing.
    assert not k8s.AppsV1Api(api).list_namespaced_daemon_set(namespace).items
    assert (
        not k8s.CoreV1Api(api)
        .list_namespaced_config_map(namespace, field_selector="metadata.name=multus-daemon-config")
        .items
    )


def test_broken_daemonset_is_rejected(api: k8s.ApiClient, namespace: str) -> None:
    """The dry-run is not a rubber stamp: a probe without a handler is refused."""
    manifest = next(m for m in load_all() if m.path == EXEC_DAEMONSET)
    broken = _into_namespace(manifest.obj, namespace, daemon_config().multus_namespace)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"periodSeconds": 5}  # no handler
    with pytest.raises(UnprocessibleEntityError):
        _dry_run_apply(_dynamic(api), broken)


# --- RBAC through the real authorizer ------------------------------------------------------------


def _renamed_rbac(manifests: list[Manifest], suffix: str, namespace: str, group: str) -> list[dict[str, Any]]:
    """The manifests' RBAC objects with unique cluster-scoped names, moved to the test namespace,
    and the per-node-certificate group replaced by a group of the test's own (so no other
    test's identity gains anything while this runs)."""
    source_namespace = daemon_config().multus_namespace
    out = []
    for m in manifests:
        if m.kind not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"):
            continue
        obj = _into_namespace(m.obj, namespace, source_namespace)
        if m.kind in ("ClusterRole", "ClusterRoleBinding"):
            obj["metadata"]["name"] += suffix
        if m.kind in ("ClusterRoleBinding", "RoleBinding") and obj["roleRef"]["kind"] == "ClusterRole":
            obj["roleRef"]["name"] += suffix
        for subject in obj.get("subjects", []):
            if subject["kind"] == "Group" and subject["name"] == "system:multus":
                subject["name"] = group
        out.append(obj)
    return out


def _allowed(api: k8s.ApiClient, user: str, groups: list[str], perm: rbac.Permission, namespace: str) -> bool:
    review = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=user,
            groups=groups,
            resource_attributes=k8s.V1ResourceAttributes(
                verb=perm.verb,
                group=perm.group,
                resource=perm.resource,
                subresource=perm.subresource or None,
                name=perm.name or None,
                namespace=namespace or None,
            ),
        )
    )
    result = k8s.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(result.status is not None and result.status.allowed)


def _eventually_allowed(api: k8s.ApiClient, user: str, groups: list[str], perm: rbac.Permission, ns: str) -> bool:
    deadline = time.monotonic() + 15  # the authorizer sees new bindings through its informers
    while True:
        if _allowed(api, user, groups, perm, ns):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_rbac_grants_every_preflight_permission(api: k8s.ApiClient, namespace: str) -> None:
    suffix = f"-{namespace}"
    group = f"deploy-test:{namespace}"
    objects = _renamed_rbac(load_all(), suffix, namespace, group)
    dyn = _dynamic(api)
    created: list[dict[str, Any]] = []
    try:
        for obj in objects:
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.create(body=obj, namespace=obj["metadata"].get("namespace"))
            created.append(obj)
        cfg = daemon_config()
        permissions = rbac.required_permissions(
            per_node_certificate=True,
            delegate_namespace=namespace,
            delegate_service_account=cfg.delegate_service_account,
        )
        service_account = f"system:serviceaccount:{namespace}:multus"
        sa_groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
        node_cert_user = ("system:multus:node-x", [group, "system:authenticated"])
        missing = []
        for user, groups in ((service_account, sa_groups), node_cert_user):
            for perm in permissions:
                ns = perm.namespace or namespace  # a cluster-wide grant also holds in one namespace
                if not _eventually_allowed(api, user, groups, perm, ns):
                    missing.append(f"{user}: {perm.describe()}")
                if not perm.namespace and not _allowed(api, user, groups, perm, ""):
                    missing.append(f"{user}: {perm.describe()} cluster-wide")
        assert missing == []
        # Least privilege, seen by the authorizer: the token grant is for the delegate account only.
        other = rbac.Permission("create", "", "serviceaccounts", "token", namespace, "default")
        assert not _allowed(api, service_account, sa_groups, other, namespace)
        assert not _allowed(api, service_account, sa_groups, rbac.Permission("delete", "", "pods"), namespace)
    finally:
        for obj in reversed(created):
            if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                resource.delete(name=obj["metadata"]["name"])


def test_grpc_probes_are_unknown_to_1_20_hence_the_exec_variant(api: k8s.ApiClient, namespace: str) -> None:
    version = k8s.VersionApi(api).get_code()
    # The test control plane is 1.20 (../shared/kube): gRPC probes arrived in 1.24.
    assert (int(version.major), int(version.minor.rstrip("+"))) < (1, 24), version.git_version
    manifest = next(m for m in load_all() if m.path == GRPC_DAEMONSET)
    with pytest.raises(ApiException) as raised:
        _dry_run_apply(_dynamic(api), _into_namespace(manifest.obj, namespace, daemon_config().multus_namespace))
    assert "grpc" in str(raised.value.body)
