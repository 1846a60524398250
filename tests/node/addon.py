"""The add-on as an operator installs it on the kit's node: the project's image
imported into containerd, the documented `kubectl apply -k` through an overlay
that sets the image and the paths where the kit differs from a kubeadm node
(the kubelet's root dir and credentials), with perNodeCertificate on as a
production install has it. Nothing in compose/kubernetes is edited.

docs/deployment.md documents this overlay's shape for nodes whose kubelet
uses other paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kustomize import build, kubectl, write_overlay
from tests.deploy.manifests import daemon_config_json
from tests.node.support import IMAGE, NODE_NAME, NODE_ROOT, eventually, tree
from tests.support.kube_identity import KUBE_ROOT
from tests.support.services import REPO

NAMESPACE = "multus-system"
ADMIN = KUBE_ROOT / "admin.kubeconfig"
UNINSTALL_LABEL = "multus.cni.io/uninstall"
KEEP_CRD = "app.kubernetes.io/component!=crd"
KUBELET_KUBECONFIG = NODE_ROOT / "kubelet.kubeconfig"
# Host paths the manifests mount that the comparison leaves out, and why.
NOT_COMPARED = {
    "/": "the executor's read-only host root (chroot); what the add-on writes is compared path by path",
    "/run/netns": "the runtime's pod network namespaces, read-only here",
    str(NODE_ROOT / "kubelet"): "the kubelet's own state dir (its root dir on this node), read-only here",
    str(KUBELET_KUBECONFIG): "the kubelet's credentials (perNodeCertificate's bootstrap), read-only",
    str(NODE_ROOT / "pki"): "the kubelet's certificates, read-only",
}


def k(*args: str, check: bool = True, timeout: float = 180) -> str:
    return kubectl(*args, kubeconfig=ADMIN, check=check, timeout=timeout)


def apply_object(obj: dict[str, Any]) -> None:
    subprocess.run(
        [str(KUBE_ROOT / "bin" / "kubectl"), f"--kubeconfig={ADMIN}", "apply", "-f", "-"],
        input=json.dumps(obj),
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


def write_kit_overlay(directory: Path) -> Path:
    """The operator's overlay: image, kubelet paths of this node, perNodeCertificate on."""
    config = json.loads(daemon_config_json())
    config["perNodeCertificate"].update(enabled=True, bootstrapKubeconfig=str(KUBELET_KUBECONFIG))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "daemon-config.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "multus-daemon-config", "namespace": NAMESPACE},
                "data": {"daemon-config.json": json.dumps(config, indent=2)},
            }
        )
    )
    (directory / "kubelet-paths.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "multus", "namespace": NAMESPACE},
                "spec": {
                    "template": {
                        "spec": {
                            "initContainers": [
                                # certDir then belongs to the uid multus-certs runs as (root here)
                                {
                                    "name": "prepare-node",
                                    "command": [
                                        "multus-prepare-node",
                                        "--config",
                                        "/etc/multus/daemon-config.json",
                                        "--certs-uid=0",
                                    ],
                                }
                            ],
                            "containers": [
                                {
                                    "name": "multus-certs",
                                    # the kubelet's credentials are root-only here as on most
                                    # nodes: docs/deployment.md's patch for perNodeCertificate
                                    "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
                                    "volumeMounts": [
                                        {
                                            "name": "kit-kubelet-kubeconfig",
                                            "mountPath": str(KUBELET_KUBECONFIG),
                                            "readOnly": True,
                                        },
                                        {
                                            "name": "kit-kubelet-pki",
                                            "mountPath": str(NODE_ROOT / "pki"),
                                            "readOnly": True,
                                        },
                                    ],
                                }
                            ],
                            "volumes": [
                                {
                                    "name": "kubelet",
                                    "hostPath": {"path": str(NODE_ROOT / "kubelet"), "type": "Directory"},
                                },
                                {
                                    "name": "kit-kubelet-kubeconfig",
                                    "hostPath": {"path": str(KUBELET_KUBECONFIG), "type": "File"},
                                },
                                {
                                    "name": "kit-kubelet-pki",
                                    "hostPath": {"path": str(NODE_ROOT / "pki"), "type": "Directory"},
                                },
                            ],
                        }
                    }
                },
            }
        )
    )
    name, tag = IMAGE.rsplit(":", 1)
    return write_overlay(
        directory,
        "exec-probes",  # the control plane is 1.20
        name,
        tag,
        {"patchesStrategicMerge": ["daemon-config.yaml", "kubelet-paths.yaml"]},
    )


def mounted_host_paths(overlay: Path) -> list[str]:
    paths = set()
    for obj in build(overlay):
        if obj["kind"] != "DaemonSet":
            continue
        for volume in obj["spec"]["template"]["spec"].get("volumes", []):
            if "hostPath" in volume:
                paths.add(os.path.normpath(volume["hostPath"]["path"]))
    return sorted(paths)


def snapshot(paths: list[str]) -> dict[str, dict[str, str]]:
    return {p: tree(Path(p)) for p in paths if p not in NOT_COMPARED}


def node_pods(component: str) -> list[dict[str, Any]]:
    out = k("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/component={component}", "-o", "json", check=False)
    try:
        return [p for p in json.loads(out)["items"] if p["spec"].get("nodeName") == NODE_NAME]
    except (ValueError, KeyError):
        return []


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def restarts(pod: dict[str, Any]) -> dict[str, int]:
    return {c["name"]: c["restartCount"] for c in pod.get("status", {}).get("containerStatuses", [])}


def wait_node_pod_ready(timeout: float = 240) -> dict[str, Any]:
    def one_ready() -> dict[str, Any] | None:
        pods = node_pods("node")
        return (
            pods[0] if len(pods) == 1 and ready(pods[0]) and not pods[0]["metadata"].get("deletionTimestamp") else None
        )

    try:
        return eventually(one_ready, timeout, "the node DaemonSet's pod Ready", interval=1.0)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{pod_states(node_pods('node'))}\n{node_pod_logs()}") from None


def pod_states(pods: list[dict[str, Any]]) -> str:
    """Each container's state (init containers too) as the kubelet reports it."""
    lines = []
    for pod in pods:
        status = pod.get("status", {})
        for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
            name = f"{pod['metadata']['name']}/{c['name']}"
            lines.append(f"{name}: restarts={c['restartCount']} {json.dumps(c['state'])}")
    return "\n".join(lines) or "no node pod"


def uninstall(overlay: Path, timeout: float = 240) -> None:
    """docs/deployment.md's uninstall, as an operator runs it."""
    k("label", "node", NODE_NAME, f"{UNINSTALL_LABEL}=true", "--overwrite")
    eventually(lambda: not node_pods("node"), timeout, "the node pod gone", interval=1.0)
    try:
        eventually(lambda: any(ready(p) for p in node_pods("node-cleanup")), timeout, "node cleanup done", interval=1.0)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{pod_states(node_pods('node-cleanup'))}\n{node_pod_logs()}") from None
    k("delete", "-k", str(overlay), "-l", KEEP_CRD, "--wait=false", "--ignore-not-found")
    deadline = time.monotonic() + timeout
    while NAMESPACE in k("get", "namespaces", "-o", "name", check=False):
        assert time.monotonic() < deadline, "namespace multus-system not deleted"
        time.sleep(1)
    k("label", "node", NODE_NAME, f"{UNINSTALL_LABEL}-")


def force_uninstall(overlay: Path) -> None:
    """After a failed test: remove the cluster objects, then the node's files
    directly (multus-uninstall on the host), so the next run starts from zero."""
    k("delete", "-k", str(overlay), "-l", KEEP_CRD, "--wait=false", "--ignore-not-found", check=False)
    k("label", "node", NODE_NAME, f"{UNINSTALL_LABEL}-", check=False)
    config = overlay / "daemon-config.json"
    config.write_text(yaml.safe_load((overlay / "daemon-config.yaml").read_text())["data"]["daemon-config.json"])
    subprocess.run(
        [sys.executable, "-m", "compose.uninstall", f"--config={config}", "--wait=60"],
        cwd=REPO,
        check=False,
        timeout=120,
    )


def node_pod_logs(lines: int = 30) -> str:
    """The node pods' container logs as the kubelet wrote them (no `kubectl logs` on the
    kit: the API server cannot reach the kubelet), newest pod first, for failure messages."""
    pods = sorted((NODE_ROOT / "logs" / "pods").glob(f"{NAMESPACE}_multus-*"), key=os.path.getmtime, reverse=True)
    out = []
    for pod in pods[:2]:
        for log in sorted(pod.glob("*/*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {pod.name}/{log.parent.name}/{log.name}\n" + "\n".join(line[:300] for line in tail))
    return "\n".join(out)
