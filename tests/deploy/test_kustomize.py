"""The install is one `kubectl apply -k`, with the image set in one overlay,
and it works the first time on a cluster that has never seen the add-on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.deploy.kustomize import KUBECTL, VARIANTS, build, images, kubectl, write_overlay
from tests.deploy.manifests import EXEC_DAEMONSET, GRPC_DAEMONSET, KUBE_DIR, load, load_all

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl of ../shared/kube not built")

NAMESPACE = "multus-system"


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_builds_every_shipped_object_once(variant: str) -> None:
    built = build(KUBE_DIR / variant)
    daemonset = EXEC_DAEMONSET if variant == "exec-probes" else GRPC_DAEMONSET
    shipped = [m for m in load_all() if m.path.parent.name == "base"] + load(daemonset)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == sorted((m.kind, m.name) for m in shipped)
    # kustomize orders them so that one apply works on an empty cluster
    kinds = [o["kind"] for o in built]
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    assert kinds.index("ConfigMap") < kinds.index("DaemonSet")


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_image_is_set_once_in_an_overlay(tmp_path: Path, variant: str) -> None:
    overlay = write_overlay(tmp_path / "site", variant, "registry.example.org/net/multus-grpc", "1.2.3")
    built = build(overlay)
    assert images(built) == {"registry.example.org/net/multus-grpc:1.2.3"}
    containers = sum(
        len(o["spec"]["template"]["spec"].get("containers", []))
        + len(o["spec"]["template"]["spec"].get("initContainers", []))
        for o in built
        if o["kind"] in ("DaemonSet", "Deployment")
    )
    assert containers == 9  # node pod (2 init + 4), node-cleanup (init + 1), approver


@pytest.mark.kube
def test_documented_install_succeeds_once_on_an_empty_cluster(tmp_path: Path, kube_api: Path) -> None:
    """`kubectl apply -k` of the 1.20 variant, through an operator overlay, exits 0 the
    first time (no "namespaces multus-system not found"), then uninstalls cleanly."""
    if NAMESPACE in kubectl("get", "namespaces", "-o", "name", kubeconfig=kube_api):
        pytest.fail(f"namespace {NAMESPACE} exists: another install is on this test cluster")
    overlay = write_overlay(tmp_path / "site", "exec-probes", "localhost/multus-grpc", "test")
    try:
        out = kubectl("apply", "-k", str(overlay), kubeconfig=kube_api)
        assert "namespace/multus-system created" in out
        assert "configmap/multus-daemon-config created" in out
        assert "daemonset.apps/multus created" in out
        assert "daemonset.apps/multus-node-cleanup created" in out
        again = kubectl("apply", "-k", str(overlay), kubeconfig=kube_api)
        assert "created" not in again  # idempotent
    finally:
        # as docs/deployment.md says: everything but the CRD (deleting it would delete every NAD)
        keep_crd = "app.kubernetes.io/component!=crd"
        kubectl("delete", "-k", str(overlay), "-l", keep_crd, "--wait=false", "--ignore-not-found", kubeconfig=kube_api)
        deadline = time.monotonic() + 90
        while NAMESPACE in kubectl("get", "namespaces", "-o", "name", kubeconfig=kube_api, check=False):
            assert time.monotonic() < deadline, "namespace multus-system not deleted"
            time.sleep(1)
