"""Device IDs the kubelet allocated to a pod, per resource name, for NADs that
carry `k8s.v1.cni.cncf.io/resourceName` (SR-IOV and similar).

Read from the kubelet's device-manager checkpoint file
(`/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint`), which lists
`PodDeviceEntries` with `PodUID`, `ResourceName` and `DeviceIDs` (a list in old
kubelets, a NUMA-node -> list map since 1.20)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINT = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"


def _ids(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        out: list[str] = []
        for key in sorted(value):
            out.extend(str(v) for v in value[key] or [])
        return out
    return []


def devices_from_checkpoint(text: bytes, pod_uid: str) -> dict[str, list[str]]:
    """Pure: the checkpoint's device IDs for one pod, sorted per resource (as upstream)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return {}
    entries = (obj.get("Data") or {}).get("PodDeviceEntries") or [] if isinstance(obj, dict) else []
    found: dict[str, list[str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("PodUID") != pod_uid:
            continue
        found.setdefault(str(entry.get("ResourceName", "")), []).extend(_ids(entry.get("DeviceIDs")))
    return {k: sorted(v) for k, v in found.items()}


class DevicePluginCheckpoint:
    def __init__(self, path: str = DEFAULT_CHECKPOINT) -> None:
        self._path = Path(path)

    def _read(self, pod_uid: str) -> dict[str, list[str]]:
        try:
            return devices_from_checkpoint(self._path.read_bytes(), pod_uid)
        except OSError:
            return {}

    async def device_ids(self, pod_namespace: str, pod_name: str, pod_uid: str) -> Mapping[str, list[str]]:
        if not pod_uid or not self._path.exists():
            return {}
        return await asyncio.to_thread(self._read, pod_uid)
