"""The documented install: `kubectl apply -k` of a kustomization, with the
image set in one operator overlay. kubectl is the test cluster's own (1.20,
kustomize v2.0.3), the oldest the add-on supports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests import KUBE_DIR
from tests.support.kube_identity import KUBE_ROOT

KUBECTL = KUBE_ROOT / "bin" / "kubectl"
SHIPPED_IMAGE = "ghcr.io/example/multus-grpc"  # the placeholder the manifests name
VARIANTS = ("exec-probes", "grpc-probes")


def kubectl(*args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120) -> str:
    argv = [str(KUBECTL), *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def write_overlay(directory: Path, variant: str, image: str, tag: str, extra: dict[str, Any] | None = None) -> Path:
    """An operator's overlay of a shipped variant: the image set here, once.
    kustomize v2 takes only relative bases, so it points at the repository relatively."""
    directory.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "bases": [os.path.relpath(KUBE_DIR / variant, directory)],
        "images": [{"name": SHIPPED_IMAGE, "newName": image, "newTag": tag}],
        **(extra or {}),
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


def build(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(directory))) if doc]


def images(objects: list[dict[str, Any]]) -> set[str]:
    found = set()
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            found.add(container["image"])
    return found
