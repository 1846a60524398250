"""Loading the add-on's manifests, and checking objects against the models
of the `kubernetes` Python client (field names and types, strictly)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import yaml

from services.common.config import DaemonConfig, config_from_dict

REPO = Path(__file__).resolve().parents[2]
KUBE_DIR = REPO / "compose" / "kubernetes"
GRPC_DAEMONSET = KUBE_DIR / "grpc-probes" / "daemonset.yaml"
EXEC_DAEMONSET = KUBE_DIR / "exec-probes" / "daemonset.yaml"
CONTAINER_PREFIX = "multus-"


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}#{self.index}:{self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    """Every object manifest (kustomization files are build instructions, not objects)."""
    return sorted(p for p in KUBE_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


def load(path: Path) -> list[Manifest]:
    return [Manifest(path, i, doc) for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc is not None]


def load_all() -> list[Manifest]:
    return [m for path in manifest_files() for m in load(path)]


def base_objects() -> list[Manifest]:
    files = sorted(p for p in (KUBE_DIR / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    return [m for path in files for m in load(path)]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m.kind == kind and (name is None or m.name == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[str(m) for m in found]}"
    return found[0]


def daemon_config_json() -> str:
    configmap = one(base_objects(), "ConfigMap", "multus-daemon-config")
    return str(configmap.obj["data"]["daemon-config.json"])


def daemon_config() -> DaemonConfig:
    return config_from_dict(json.loads(daemon_config_json()))


def service_of(container: dict[str, Any]) -> str:
    return str(container["name"]).removeprefix(CONTAINER_PREFIX)


def console_scripts() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return dict(project["project"]["scripts"])


# --- strict model check --------------------------------------------------------------------------

# The client spells containers List[X] / Dict[str, X] (older releases: list[X] / dict(str, X)).
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:Dict\[([^,]+), (.+)\]|dict\(([^,]+), (.+)\))$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
    "object": (object,),
    "bytes": (str,),  # base64 in YAML
}


def model_name(obj: dict[str, Any]) -> str:
    """apps/v1 DaemonSet -> V1DaemonSet (the client's class for that kind)."""
    version = str(obj["apiVersion"]).split("/")[-1]
    return version[0].upper() + version[1:] + str(obj["kind"])


def model_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    """Every field the model does not know and every value of the wrong type."""
    if (m := _LIST.match(type_name)) is not None:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in model_errors(item, m.group(1), f"{path}[{i}]")]
    if (m := _DICT.match(type_name)) is not None:
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        item_type = m.group(2) or m.group(4)
        return [e for k, item in value.items() for e in model_errors(item, item_type, f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
    model = getattr(k8s, type_name, None)
    if model is None:
        return [f"{path}: unknown model {type_name}"]
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} object, got {type(value).__name__}"]
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors: list[str] = []
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: not a field of {type_name}")
            continue
        errors.extend(model_errors(item, model.openapi_types[attr], f"{path}.{key}"))
    return errors


def deserialize(obj: dict[str, Any]) -> Any:
    """The client's own deserialisation (required fields, enums); raises ValueError on a violation."""
    api = k8s.ApiClient()
    try:
        return api._ApiClient__deserialize(obj, model_name(obj))  # type: ignore[attr-defined]
    finally:
        api.close()  # type: ignore[no-untyped-call]
