"""Delegates: one network's CNI config (a conf or a conflist) plus what the pod
asked for on it (upstream's DelegateNetConf / LoadDelegateNetConf). Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from services.common import cni
from services.common.selection import NetworkSelectionElement
from services.gateway.result import version_tuple


@dataclass(frozen=True)
class Delegate:
    name: str  # network-status name: "<ns>/<nad>" for NADs, the CNI config name otherwise
    config: Mapping[str, Any]  # the conf or conflist, cni-args/deviceID already injected
    master: bool = False  # the cluster network: gets the runtime's ifname and runtimeConfig
    ifname_request: str = ""
    mac: str = ""
    ips: tuple[str, ...] = ()
    infiniband_guid: str = ""
    port_mappings: tuple[Mapping[str, Any], ...] = ()
    bandwidth: Mapping[str, Any] | None = None
    device_id: str = ""
    resource_name: str = ""
    default_route: tuple[str, ...] | None = None

    @property
    def cni_version(self) -> str:
        return str(self.config.get("cniVersion") or "")


def _decode_config(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        copied: dict[str, Any] = json.loads(json.dumps(raw))  # a deep copy that is plain JSON
        return copied
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise cni.CniError(cni.INVALID_CONFIG, "error unmarshalling delegate config", str(exc)) from exc
    if not isinstance(obj, dict):
        raise cni.CniError(cni.INVALID_CONFIG, "error unmarshalling delegate config", "expected a JSON object")
    return obj


def _validate(config: Mapping[str, Any]) -> None:
    version = config.get("cniVersion")
    if version is not None and version != "":
        # Checked before anything runs: a version no one can compare would attach, then
        # make every DEL of the attachment fail (its prevResult rule needs the version).
        if not isinstance(version, str):
            raise cni.CniError(cni.INCOMPATIBLE_VERSION, f"delegate config: invalid cniVersion {version!r}")
        version_tuple(version)
    if config.get("type"):
        if not isinstance(config["type"], str):
            raise cni.CniError(cni.INVALID_CONFIG, "delegate config: 'type' must be a string")
        return
    plugins = config.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise cni.CniError(
            cni.INVALID_CONFIG, "delegate config has neither 'type' nor 'plugins'", f"network {config.get('name')!r}"
        )
    for idx, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise cni.CniError(cni.INVALID_CONFIG, f"delegate conflist plugin #{idx} has no 'type'")


def _inject_cni_args(conf: dict[str, Any], cni_args: Mapping[str, Any]) -> None:
    args = conf.get("args")
    if not isinstance(args, dict):
        args = {}
    existing = args.get("cni")
    merged = dict(existing) if isinstance(existing, dict) else {}
    merged.update(cni_args)
    args["cni"] = merged
    conf["args"] = args


def _targets(config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(config["plugins"]) if not config.get("type") else [config]


def load_delegate(
    raw: bytes | str | Mapping[str, Any],
    element: NetworkSelectionElement | None = None,
    *,
    device_id: str = "",
    resource_name: str = "",
    master: bool = False,
) -> Delegate:
    """Build a delegate from a CNI config and the pod's selection element for it."""
    config = _decode_config(raw)
    _validate(config)
    if device_id:
        for target in _targets(config):
            target["deviceID"] = device_id
            target["pciBusID"] = device_id
    if element is not None and element.cni_args is not None:
        for target in _targets(config):
            _inject_cni_args(target, element.cni_args)
    name = str(config.get("name") or "")
    delegate = Delegate(name=name, config=config, master=master, device_id=device_id, resource_name=resource_name)
    if element is None:
        return delegate
    return replace(
        delegate,
        name=f"{element.namespace}/{element.name}" if element.name else name,
        ifname_request=element.interface,
        mac=element.mac,
        ips=element.ips,
        infiniband_guid=element.infiniband_guid,
        port_mappings=element.port_mappings,
        bandwidth=element.bandwidth,
        device_id=device_id or element.device_id,
        default_route=element.default_route,
    )


def with_cni_version(delegate: Delegate, cni_version: str) -> Delegate:
    """A conflist without cniVersion takes the Multus config's (as upstream)."""
    if delegate.cni_version or not cni_version:
        return delegate
    config = dict(delegate.config)
    config["cniVersion"] = cni_version
    return replace(delegate, config=config)
