"""The cached objects: trimmed Pods and NetworkAttachmentDefinitions.

Only what the CNI path reads is kept (identity, node, annotations, labels,
resourceVersion; a NAD's spec.config). Upstream trims managedFields from its
informer objects; we keep less still, so 1,000 pods and 10,000 NADs fit in a
few MiB. Everything here is pure: raw Kubernetes JSON in, frozen values out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

POD = "Pod"
NAD = "NetworkAttachmentDefinition"
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
DEFAULT_NAMESPACE = "default"

# Namespace for uids made up for file-backed pods that have none (stable across restarts).
_FILE_UID_NAMESPACE = uuid.UUID("6f1f7a8e-3c2b-4d5e-9a61-2b9d8c0e4f17")


class ObjectError(ValueError):
    """A Kubernetes object that cannot be cached (missing name, wrong shape)."""


Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class CachedPod:
    namespace: str
    name: str
    uid: str
    node_name: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    deleting: bool = False  # metadata.deletionTimestamp is set

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def is_static_mirror(self) -> bool:
        """A mirror pod of a static pod: kubelet's UID for it differs from the API's by design."""
        if MIRROR_ANNOTATION in self.annotations:
            return True
        source = self.annotations.get(CONFIG_SOURCE_ANNOTATION)
        return source is not None and source != "api"  # upstream's IsStaticPod


@dataclass(frozen=True, slots=True)
class CachedNad:
    namespace: str
    name: str
    config: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


def file_pod_uid(namespace: str, name: str) -> str:
    """A stable UID for a file-backed pod written without one."""
    return str(uuid.uuid5(_FILE_UID_NAMESPACE, f"{namespace}/{name}"))


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


def _metadata(obj: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ObjectError(f"{obj.get('kind', 'object')}: metadata missing")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ObjectError(f"{obj.get('kind', 'object')}: metadata.name missing")
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    return meta, str(namespace), name


def pod_from_dict(obj: Mapping[str, Any], *, default_uid: bool = False) -> CachedPod:
    """Trim a raw Pod to what the cache keeps. `default_uid` makes up a stable
    UID for a pod without one (file-backed pods only; the API always sets it)."""
    meta, namespace, name = _metadata(obj)
    uid = meta.get("uid") or (file_pod_uid(namespace, name) if default_uid else "")
    spec = obj.get("spec")
    node = spec.get("nodeName", "") if isinstance(spec, dict) else ""
    return CachedPod(
        namespace=namespace,
        name=name,
        uid=str(uid),
        node_name=str(node or ""),
        annotations=_str_map(meta.get("annotations")),
        labels=_str_map(meta.get("labels")),
        resource_version=str(meta.get("resourceVersion") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def nad_from_dict(obj: Mapping[str, Any]) -> CachedNad:
    meta, namespace, name = _metadata(obj)
    spec = obj.get("spec")
    config = spec.get("config", "") if isinstance(spec, dict) else ""
    if not isinstance(config, str):
        raise ObjectError(f"NetworkAttachmentDefinition {namespace}/{name}: spec.config must be a string")
    return CachedNad(
        namespace=namespace,
        name=name,
        config=config,
        annotations=_str_map(meta.get("annotations")),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def with_network_status(pod: CachedPod, network_status_json: str) -> CachedPod:
    """The pod as it looks after the network-status annotation is set ("" removes it)."""
    annotations = dict(pod.annotations)
    if network_status_json:
        annotations[NETWORK_STATUS_ANNOTATION] = network_status_json
    else:
        annotations.pop(NETWORK_STATUS_ANNOTATION, None)
    return replace(pod, annotations=annotations)


def set_network_status(raw_pod: dict[str, Any], network_status_json: str) -> bool:
    """Set (or remove) the network-status annotation on a raw Pod in place; False when unchanged."""
    meta = raw_pod.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    current = annotations.get(NETWORK_STATUS_ANNOTATION)
    if network_status_json:
        if current == network_status_json:
            return False
        annotations[NETWORK_STATUS_ANNOTATION] = network_status_json
    else:
        if current is None:
            return False
        del annotations[NETWORK_STATUS_ANNOTATION]
    meta["annotations"] = annotations
    return True


def network_status_patch(network_status_json: str, uid: str = "") -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) that sets the network-status annotation ("" removes
    it: null deletes a key) and, given `uid`, pins the pod's incarnation: the API
    server refuses to change metadata.uid, so a recreated pod rejects the patch."""
    meta: dict[str, Any] = {"annotations": {NETWORK_STATUS_ANNOTATION: network_status_json or None}}
    if uid:
        meta["uid"] = uid
    return {"metadata": meta}


def uid_mismatch(pod: CachedPod, wanted_uid: str) -> bool:
    """True when the caller asked for another incarnation of this pod (a stale pod).
    Mirror pods of static pods are exempt, as upstream."""
    return bool(wanted_uid) and pod.uid != wanted_uid and not pod.is_static_mirror
