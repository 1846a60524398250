"""Device IDs the kubelet allocated to a pod, per resource name, for NADs that
carry `k8s.v1.cni.cncf.io/resourceName` (SR-IOV and similar), and the
device-info files that carry a device's details into network-status.

Where the IDs come from, as upstream Multus: the kubelet PodResources API
(pod matched by namespace and name) when its socket is there; unlike upstream,
the device-plugin checkpoint file
(`/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint`, `PodDeviceEntries`
with `PodUID`, `ResourceName`, `DeviceIDs`: a list in old kubelets, a NUMA node ->
list map since 1.20) is also the fallback when the socket does not answer or
knows no devices for the pod. Device IDs are sorted per resource (as upstream),
and each attachment of a resource takes the next one not taken by an earlier
attachment of the pod (upstream's ResourceInfo.Index). Nothing is cached across
pods: every ADD asks again, and only when one of its NADs names a resource.

Device-info files (the Network Plumbing WG device-info spec): a device plugin
may leave `<deviceInfoDir>/dp/<resource>-<deviceID>-device.json`; for an
attachment with a device ID the gateway picks the CNI file
`<deviceInfoDir>/cni/<network>-<containerID>_<ifname>`, copies the device
plugin's file there, hands the path to the delegate as the `CNIDeviceInfoFile`
capability (a delegate may write it itself), reads it after ADD into the
network-status `device-info`, and removes it on DEL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from services.common.logs import get_logger
from services.gateway.ports import DeviceInfoSource, PodView

log = get_logger(__name__)

DEFAULT_CHECKPOINT = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"
DEFAULT_DEVICE_INFO_DIR = "/var/run/k8s.cni.cncf.io/devinfo"
CNI_DEVICE_INFO_CAPABILITY = "CNIDeviceInfoFile"
# A device-info file is a few hundred bytes; refuse to read something else into an annotation.
MAX_DEVICE_INFO_BYTES = 64 * 1024


class PodResourcesUnavailable(Exception):
    """The kubelet PodResources API could not be asked (no socket, not listening, deadline, error)."""


# --- the PodResources answer, as far as this module reads it (protobuf or plain objects) ---
class ContainerDevicesLike(Protocol):
    @property
    def resource_name(self) -> str: ...

    @property
    def device_ids(self) -> Sequence[str]: ...


class ContainerResourcesLike(Protocol):
    @property
    def devices(self) -> Sequence[ContainerDevicesLike]: ...


class PodResourcesLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def containers(self) -> Sequence[ContainerResourcesLike]: ...


class PodResourcesLister(Protocol):
    """The kubelet PodResources API (services.gateway.podresources.PodResourcesClient)."""

    def available(self) -> bool: ...

    async def pod_resources(self, namespace: str, name: str) -> Sequence[PodResourcesLike]: ...


# --- pure ---------------------------------------------------------------------------
def devices_from_pod_resources(
    pod_resources: Iterable[PodResourcesLike], namespace: str, name: str
) -> dict[str, list[str]]:
    """Pure: every container's device IDs of the pod `namespace/name`, per resource, sorted."""
    found: dict[str, list[str]] = {}
    for pod in pod_resources:
        if pod.name != name or pod.namespace != namespace:
            continue
        for container in pod.containers:
            for devices in container.devices:
                found.setdefault(devices.resource_name, []).extend(devices.device_ids)
    return {resource: sorted(ids) for resource, ids in found.items()}


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


def next_device_id(allocated: Mapping[str, Sequence[str]], resource_name: str, used: Iterable[str] = ()) -> str:
    """Pure: the first device of `resource_name` allocated to the pod that no earlier
    attachment of the pod took; "" when there is none (the delegate then gets no deviceID)."""
    taken = set(used)
    return next((device for device in allocated.get(resource_name, ()) if device not in taken), "")


def cni_device_info_path(base_dir: str, network_name: str, container_id: str, ifname: str) -> str:
    """Pure: the CNI device-info file of one attachment (the spec's naming; '/' -> '-')."""
    filename = f"{network_name}-{container_id}_{ifname}".replace("/", "-")
    return os.path.join(base_dir, "cni", filename)


def dp_device_info_path(base_dir: str, resource_name: str, device_id: str) -> str:
    """Pure: where a device plugin leaves a device's info (the spec's fixed name)."""
    filename = f"{resource_name.replace('/', '-')}-{device_id.replace('/', '-')}-device.json"
    return os.path.join(base_dir, "dp", filename)


def with_device_info_file(capability_args: Mapping[str, Any], device_id: str, path: str) -> Mapping[str, Any]:
    """Pure: an attachment with a device ID gets its CNIDeviceInfoFile capability (as upstream,
    which overrides a runtime-given one); others are returned unchanged."""
    if not device_id:
        return capability_args
    return {**capability_args, CNI_DEVICE_INFO_CAPABILITY: path}


def parse_device_info(text: bytes) -> dict[str, Any] | None:
    """Pure: a device-info file's JSON object; None for anything else."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) and obj else None


# --- sources of device IDs ---------------------------------------------------------------
class DevicePluginCheckpoint:
    """The device manager's checkpoint file, read in a worker thread per call."""

    def __init__(self, path: str = DEFAULT_CHECKPOINT) -> None:
        self._path = Path(path)

    def _read(self, pod_uid: str) -> dict[str, list[str]]:
        try:
            return devices_from_checkpoint(self._path.read_bytes(), pod_uid)
        except OSError:
            return {}

    async def device_ids(self, pod_namespace: str, pod_name: str, pod_uid: str) -> Mapping[str, list[str]]:
        if not pod_uid:
            return {}
        return await asyncio.to_thread(self._read, pod_uid)


class KubeletDeviceInfo:
    """The kubelet PodResources API first, the checkpoint file when the API is absent,
    unreachable, or knows no devices for the pod."""

    def __init__(self, pod_resources: PodResourcesLister | None, checkpoint: DevicePluginCheckpoint) -> None:
        self._pod_resources = pod_resources
        self._checkpoint = checkpoint

    async def device_ids(self, pod_namespace: str, pod_name: str, pod_uid: str) -> Mapping[str, list[str]]:
        if self._pod_resources is not None and self._pod_resources.available():
            try:
                pods = await self._pod_resources.pod_resources(pod_namespace, pod_name)
            except PodResourcesUnavailable as err:
                log.warning("kubelet PodResources API failed, using the device-plugin checkpoint", error=str(err))
            else:
                found = devices_from_pod_resources(pods, pod_namespace, pod_name)
                if found:
                    return found
                log.debug("kubelet PodResources API knows no devices for the pod, trying the checkpoint")
        return await self._checkpoint.device_ids(pod_namespace, pod_name, pod_uid)


class PodDevices:
    """One ADD's view of the pod's devices: asked for on the first NAD that names a
    resource (most pods never ask), then handed out one per attachment in attach order."""

    def __init__(self, source: DeviceInfoSource | None, pod: PodView | None) -> None:
        self._source = source
        self._pod = pod
        self._allocated: Mapping[str, Sequence[str]] | None = None
        self._used: list[str] = []

    async def take(self, resource_name: str) -> str:
        if not resource_name or self._source is None or self._pod is None:
            return ""
        if self._allocated is None:
            self._allocated = await self._source.device_ids(self._pod.namespace, self._pod.name, self._pod.uid)
        device = next_device_id(self._allocated, resource_name, self._used)
        if device:
            self._used.append(device)
        return device


# --- device-info files -------------------------------------------------------------------
class DeviceInfoFiles:
    """The CNIDeviceInfoFile of each attachment with a device (file I/O in worker threads)."""

    def __init__(self, base_dir: str = DEFAULT_DEVICE_INFO_DIR) -> None:
        self.base_dir = base_dir

    def path_for(self, network_name: str, container_id: str, ifname: str) -> str:
        return cni_device_info_path(self.base_dir, network_name, container_id, ifname)

    def owns(self, cni_path: str) -> bool:
        """Only files in our cni/ directory are read into annotations or removed: a
        runtimeConfig may name any path, and DEL must not delete what it points at."""
        if not cni_path:
            return False
        directory = os.path.normpath(os.path.join(os.path.abspath(self.base_dir), "cni"))
        return os.path.dirname(os.path.normpath(os.path.abspath(cni_path))) == directory

    def _copy_from_device_plugin(self, cni_path: str, resource_name: str, device_id: str) -> None:
        source = dp_device_info_path(self.base_dir, resource_name, device_id)
        try:
            data = Path(source).read_bytes()[:MAX_DEVICE_INFO_BYTES]
        except FileNotFoundError:
            return  # the device plugin wrote none; the delegate may
        if parse_device_info(data) is None:
            log.warning("device plugin's device-info file is not a JSON object", path=source)
            return
        os.makedirs(os.path.dirname(cni_path), exist_ok=True)
        # The spec's files are read-only; one left over from an earlier ADD is replaced.
        tmp = f"{cni_path}.tmp"
        with open(tmp, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, cni_path)

    async def prepare(self, cni_path: str, resource_name: str, device_id: str) -> None:
        """Before the delegate's ADD: the device plugin's file copied to the CNI path."""
        if not (resource_name and device_id and self.owns(cni_path)):
            return
        try:
            await asyncio.to_thread(self._copy_from_device_plugin, cni_path, resource_name, device_id)
        except OSError as err:
            log.warning("cannot copy the device plugin's device-info file", path=cni_path, error=str(err))

    def _read(self, cni_path: str) -> dict[str, Any] | None:
        try:
            with open(cni_path, "rb") as src:
                return parse_device_info(src.read(MAX_DEVICE_INFO_BYTES + 1))
        except OSError:
            return None

    async def load(self, cni_path: str) -> dict[str, Any] | None:
        """After the delegate's ADD: the device-info object for network-status, if any.
        Read on the loop: opening a small local file (usually absent) costs less than
        the thread hop around it, on every attachment of every ADD."""
        if not self.owns(cni_path):
            return None
        return self._read(cni_path)

    def _remove(self, cni_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cni_path)

    async def remove(self, cni_path: str) -> None:
        """On DEL: the attachment's file goes with it."""
        if not self.owns(cni_path):
            return
        try:
            self._remove(cni_path)  # one unlink: cheaper on the loop than a thread hop
        except OSError as err:
            log.warning("cannot remove device-info file", path=cni_path, error=str(err))
