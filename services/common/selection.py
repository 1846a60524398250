"""Network selection: the pod's `k8s.v1.cni.cncf.io/networks` annotation as
comma text (`ns/name@ifname`) or as the JSON list of NetworkSelectionElements,
and the `v1.multus-cni.io/default-network` override. Pure."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common import cni
from services.common.validation import dns1123_label_problem, dns1123_subdomain_problem, ifname_problem

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"

_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}[:-]){19}[0-9A-Fa-f]{2}$")
_GUID = re.compile(r"^([0-9A-Fa-f]{2}[:-]){7}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}[:-]){19}[0-9A-Fa-f]{2}$")


@dataclass(frozen=True)
class NetworkSelectionElement:
    name: str
    namespace: str = ""
    interface: str = ""
    ips: tuple[str, ...] = ()
    mac: str = ""
    infiniband_guid: str = ""
    port_mappings: tuple[Mapping[str, Any], ...] = ()
    bandwidth: Mapping[str, Any] | None = None
    device_id: str = ""
    cni_args: Mapping[str, Any] | None = None
    # None: no default-route requested; a tuple (maybe empty) when requested.
    default_route: tuple[str, ...] | None = None


def _bad(msg: str, details: str = "") -> cni.CniError:
    return cni.CniError(cni.INVALID_CONFIG, msg, details)


def validate_ifname(ifname: str) -> None:
    if problem := ifname_problem(ifname):
        raise _bad(f"invalid interface name {ifname!r}", problem)


def _parse_text_item(item: str) -> NetworkSelectionElement:
    slash = item.split("/")
    if len(slash) == 2:
        namespace, rest = slash[0].strip(), slash[1]
    elif len(slash) == 1:
        namespace, rest = "", slash[0]
    else:
        raise _bad(f"invalid network reference {item!r}", "expected [namespace/]name[@ifname]")
    at = rest.split("@")
    if len(at) > 2:
        raise _bad(f"invalid network reference {item!r}", "more than one '@'")
    name = at[0].strip()
    ifname = at[1].strip() if len(at) == 2 else ""
    for part in (namespace, name):
        if part and (problem := dns1123_label_problem(part)):
            raise _bad(f"invalid network reference {item!r}", problem)
    if not name:
        raise _bad(f"invalid network reference {item!r}", "empty network name")
    if ifname:
        validate_ifname(ifname)
    return NetworkSelectionElement(name=name, namespace=namespace, interface=ifname)


def _validate_ip(ip: str) -> None:
    try:
        if "/" in ip:
            ipaddress.ip_interface(ip)
        else:
            ipaddress.ip_address(ip)
    except ValueError as exc:
        raise _bad(f"invalid IP address {ip!r} in network selection") from exc


def _str_field(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"invalid network selection: {key!r} must be a string")
    return value


def _element_from_json(obj: Any) -> NetworkSelectionElement:
    if not isinstance(obj, dict):
        raise _bad("invalid network selection: each element must be an object")
    name = _str_field(obj, "name")
    if not name:
        raise _bad("invalid network selection: element without a name")
    # Both become the NAD lookup's API path: only what an object name and a namespace can be.
    namespace = _str_field(obj, "namespace")
    if problem := dns1123_subdomain_problem(name):
        raise _bad("invalid network selection: bad name", problem)
    if namespace and (problem := dns1123_label_problem(namespace)):
        raise _bad("invalid network selection: bad namespace", problem)
    ips = obj.get("ips")
    if ips is not None and (not isinstance(ips, list) or not all(isinstance(i, str) for i in ips)):
        raise _bad("invalid network selection: 'ips' must be a list of strings")
    ports = obj.get("portMappings")
    if ports is not None and (not isinstance(ports, list) or not all(isinstance(p, dict) for p in ports)):
        raise _bad("invalid network selection: 'portMappings' must be a list of objects")
    bandwidth = obj.get("bandwidth")
    if bandwidth is not None and not isinstance(bandwidth, dict):
        raise _bad("invalid network selection: 'bandwidth' must be an object")
    cni_args = obj.get("cni-args")
    if cni_args is not None and not isinstance(cni_args, dict):
        raise _bad("invalid network selection: 'cni-args' must be an object")
    route = obj.get("default-route")
    if route is not None and (not isinstance(route, list) or not all(isinstance(r, str) for r in route)):
        raise _bad("invalid network selection: 'default-route' must be a list of IP addresses")
    interface = _str_field(obj, "interface") or _str_field(obj, "interfaceRequest")
    return NetworkSelectionElement(
        name=name,
        namespace=namespace,
        interface=interface,
        ips=tuple(ips or ()),
        mac=_str_field(obj, "mac"),
        infiniband_guid=_str_field(obj, "infiniband-guid"),
        port_mappings=tuple(ports or ()),
        bandwidth=bandwidth,
        device_id=_str_field(obj, "deviceID"),
        cni_args=cni_args,
        default_route=tuple(route) if route is not None else None,
    )


def parse_networks_annotation(text: str, default_namespace: str) -> list[NetworkSelectionElement]:
    """Parse the annotation; elements without a namespace get `default_namespace`."""
    text = text.strip()
    if not text:
        return []
    elements: list[NetworkSelectionElement]
    if any(c in text for c in '[{"'):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _bad("failed to parse pod network selection annotation (JSON)", str(exc)) from exc
        if isinstance(obj, dict):  # a single element is tolerated
            obj = [obj]
        if not isinstance(obj, list):
            raise _bad("failed to parse pod network selection annotation", "expected a JSON list")
        elements = [_element_from_json(o) for o in obj]
    else:
        elements = [_parse_text_item(item.strip()) for item in text.split(",") if item.strip()]
    out = []
    for el in elements:
        if el.mac and not _MAC.match(el.mac):
            raise _bad(f"invalid MAC address {el.mac!r} in network selection")
        if el.infiniband_guid and not _GUID.match(el.infiniband_guid):
            raise _bad(f"invalid infiniband GUID {el.infiniband_guid!r} in network selection")
        for ip in el.ips:
            _validate_ip(ip)
        for gw in el.default_route or ():
            try:
                ipaddress.ip_address(gw)
            except ValueError as exc:
                raise _bad(f"invalid default-route gateway {gw!r}") from exc
        if el.interface:
            validate_ifname(el.interface)
        if not el.namespace:
            el = NetworkSelectionElement(**{**el.__dict__, "namespace": default_namespace})
        out.append(el)
    return out


def check_namespace_isolation(
    pod_namespace: str, elements: list[NetworkSelectionElement], global_namespaces: tuple[str, ...]
) -> None:
    """With namespaceIsolation a pod may only use NADs of its own namespace or a global one."""
    for el in elements:
        if el.namespace != pod_namespace and el.namespace not in global_namespaces:
            raise cni.CniError(
                cni.INVALID_CONFIG,
                "namespace isolation violation",
                f"pod is in namespace {pod_namespace!r} but refers to network {el.namespace}/{el.name}",
            )

