"""Resolving network references to delegates: the cluster network and
defaultNetworks (a NAD name, `namespace/name`, a conf/conflist file name or
path, or a directory), the pod's annotation networks (NADs through the cache,
`spec.config` or a config in confDir with the NAD's name), and the
`v1.multus-cni.io/default-network` override."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common import cni
from services.common.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    RESOURCE_NAME_ANNOTATION,
    NetworkSelectionElement,
    check_namespace_isolation,
    parse_networks_annotation,
)
from services.gateway.delegate import Delegate, load_delegate, with_cni_version
from services.gateway.device_info import PodDevices
from services.gateway.netconf import MultusNetConf
from services.gateway.ports import Cluster, DeviceInfoSource, PodView

CONF_EXTENSIONS = (".conf", ".conflist", ".json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise cni.CniError(cni.INVALID_CONFIG, f"error loading CNI config file {path}", str(exc)) from exc
    if not isinstance(obj, dict):
        raise cni.CniError(cni.INVALID_CONFIG, f"error loading CNI config file {path}", "expected a JSON object")
    return obj


def _conf_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix in CONF_EXTENSIONS and p.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def find_config_by_name(directory: str, name: str) -> dict[str, Any] | None:
    """The first config (lexical file order) in `directory` whose CNI `name` is `name`."""
    for path in _conf_files(Path(directory)):
        try:
            obj = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and obj.get("name") == name:
            return obj
    return None


def load_network_path(path: str) -> dict[str, Any] | None:
    """A conf/conflist file, or the first config file of a directory; None when the path does not exist."""
    p = Path(path)
    if p.is_dir():
        files = _conf_files(p)
        if not files:
            raise cni.CniError(cni.INVALID_CONFIG, f"no CNI config files in directory {path}")
        return _read_json(files[0])
    if p.is_file():
        return _read_json(p)
    return None


def config_from_spec(spec_config: str, nad_name: str) -> bytes | dict[str, Any]:
    """A NAD's `spec.config`; a config without a `name` (or with an empty one) gets the
    NAD's name, as upstream's GetCNIConfigFromSpec does: plugins key state on it
    (host-local's store directory, libcni's result cache)."""
    try:
        obj = json.loads(spec_config)
    except (ValueError, RecursionError):
        # load_delegate reports the decode error (a lone surrogate must not crash the encode first)
        return spec_config.encode(errors="replace")
    if not isinstance(obj, dict):
        return spec_config.encode(errors="replace")
    if obj.get("name") in (None, ""):
        obj["name"] = nad_name
    return obj


@dataclass
class Resolution:
    """The pod's delegates in attach order."""

    delegates: list[Delegate] = field(default_factory=list)


class NetworkResolver:
    def __init__(
        self,
        cluster: Cluster,
        *,
        cni_config_dir: str,
        device_info: DeviceInfoSource | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._cluster = cluster
        self._cni_config_dir = cni_config_dir
        self._device_info = device_info
        self._timeout = timeout

    # --- NADs ---
    async def nad_delegate(
        self,
        element: NetworkSelectionElement,
        netconf: MultusNetConf,
        pod: PodView | None,
        devices: PodDevices | None,
        *,
        master: bool = False,
    ) -> Delegate:
        nad = pod.networks.get((element.namespace, element.name)) if pod is not None else None
        if nad is None:  # not prefetched with the pod: ask (waits briefly, then reads live)
            nad = await self._cluster.get_network_attachment_definition(
                element.namespace, element.name, timeout=self._timeout
            )
        config: bytes | Mapping[str, Any]
        if nad.config.strip():
            config = config_from_spec(nad.config, element.name)
        else:
            found = await asyncio.to_thread(find_config_by_name, netconf.conf_dir, element.name)
            if found is None:
                raise cni.CniError(
                    cni.INVALID_CONFIG,
                    f"network-attachment-definition {element.namespace}/{element.name} has no spec.config",
                    f"and no config named {element.name!r} in confDir {netconf.conf_dir}",
                )
            config = found
        resource_name = nad.annotations.get(RESOURCE_NAME_ANNOTATION, "")
        device_id = ""
        if resource_name and pod is not None and devices is not None:
            device_id = await devices.take(resource_name)  # each NAD of that resource takes the next device
        return load_delegate(config, element, device_id=device_id, resource_name=resource_name, master=master)

    # --- clusterNetwork / defaultNetworks ---
    async def named_network(
        self,
        reference: str,
        netconf: MultusNetConf,
        *,
        master: bool,
        pod: PodView | None = None,
        devices: PodDevices | None = None,
    ) -> Delegate:
        """A network named in the daemon config: a path, a file name, a NAD or a CNI config name."""
        config_dir = netconf.cni_config_dir or self._cni_config_dir
        if reference.startswith("/") or reference.startswith("."):
            loaded = await asyncio.to_thread(load_network_path, reference)
            if loaded is None:
                raise cni.CniError(
                    cni.INVALID_CONFIG, f"cannot find network {reference!r}", "no such file or directory"
                )
            return load_delegate(loaded, master=master)
        if reference.endswith(CONF_EXTENSIONS) and "/" not in reference:
            for directory in (config_dir, netconf.conf_dir):
                loaded = await asyncio.to_thread(load_network_path, os.path.join(directory, reference))
                if loaded is not None:
                    return load_delegate(loaded, master=master)
        namespace, _, name = reference.rpartition("/")
        element = NetworkSelectionElement(name=name, namespace=namespace or netconf.multus_namespace)
        try:
            delegate = await self.nad_delegate(element, netconf, pod, devices, master=master)
        except cni.CniError as nad_error:
            if nad_error.code == cni.TRY_AGAIN_LATER:
                raise
            for directory in (netconf.conf_dir, config_dir):
                found = await asyncio.to_thread(find_config_by_name, directory, name)
                if found is not None:
                    return load_delegate(found, master=master)
            raise cni.CniError(
                cni.INVALID_CONFIG,
                f"cannot find network {reference!r}",
                f"neither a NetworkAttachmentDefinition nor a config in {netconf.conf_dir} or {config_dir}",
            ) from nad_error
        return delegate

    async def cluster_delegates(
        self, netconf: MultusNetConf, pod: PodView | None, devices: PodDevices | None = None
    ) -> list[Delegate]:
        """The cluster network (first, master) and, outside systemNamespaces, the defaultNetworks."""
        delegates: list[Delegate] = []
        if netconf.cluster_network:
            delegates.append(
                await self.named_network(netconf.cluster_network, netconf, master=True, pod=pod, devices=devices)
            )
        else:
            for idx, raw in enumerate(netconf.raw_delegates):
                delegates.append(load_delegate(raw, master=idx == 0))
        in_system_ns = pod is not None and pod.namespace in netconf.system_namespaces
        if pod is not None and not in_system_ns:
            for reference in netconf.default_networks:
                delegates.append(await self.named_network(reference, netconf, master=False, pod=pod, devices=devices))
        return delegates

    async def resolve(self, netconf: MultusNetConf, pod: PodView | None) -> Resolution:
        """All of a pod's delegates in attach order."""
        resolution = Resolution()
        # One pod's devices, shared by every network of this ADD, so each takes its own.
        devices = PodDevices(self._device_info, pod)
        delegates = await self.cluster_delegates(netconf, pod, devices)
        if pod is not None:
            annotations = pod.annotations
            override = annotations.get(DEFAULT_NETWORK_ANNOTATION, "").strip()
            if override:
                elements = parse_networks_annotation(override, netconf.multus_namespace)
                if len(elements) != 1:
                    raise cni.CniError(cni.INVALID_CONFIG, f"more than one default network is specified: {override}")
                master = await self.nad_delegate(elements[0], netconf, pod, devices, master=True)
                if delegates:
                    delegates[0] = master
                else:
                    delegates.append(master)
            text = annotations.get(NETWORKS_ANNOTATION, "")
            elements = parse_networks_annotation(text, pod.namespace)
            if netconf.namespace_isolation:
                check_namespace_isolation(pod.namespace, elements, netconf.global_namespaces)
            for element in elements:
                delegates.append(await self.nad_delegate(element, netconf, pod, devices))
        if not delegates:
            raise cni.CniError(cni.INVALID_CONFIG, "no cluster network: set clusterNetwork or delegates")
        resolution.delegates = [with_cni_version(d, netconf.cni_version) for d in delegates]
        return resolution
