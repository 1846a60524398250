"""The `k8s.v1.cni.cncf.io/network-status` entries built from delegate results
(upstream's nadutils.CreateNetworkStatuses, without its `"gateway": ["<nil>"]`).
Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from services.gateway.default_route import default_route_family
from services.gateway.result import to_current


def _ip_only(address: str) -> str:
    try:
        return str(ipaddress.ip_interface(address).ip)
    except ValueError:
        return address.split("/")[0]


def default_gateways(result: Mapping[str, Any]) -> list[str]:
    """The gateways of the result's default routes, as upstream's `gateway` field (a
    default route without `gw` is left out instead of becoming "<nil>"). An address's
    own `gateway` is not a default gateway: bridge/host-local report one without
    installing any default route."""
    return [
        str(route["gw"])
        for route in result.get("routes") or []
        if isinstance(route, Mapping) and default_route_family(route) is not None and route.get("gw")
    ]


def network_statuses(
    result: Mapping[str, Any] | None,
    network_name: str,
    ifname: str,
    *,
    default: bool,
    device_info: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One entry per pod-side interface of the result (or one for the attachment when
    the plugin reported no interfaces). As upstream: an address names its interface by
    index, an address naming none belongs to the last pod interface, and `default`
    (cluster network only) marks one entry, the pod interface of the first address
    with a gateway, else the first pod interface."""
    current = to_current(result)
    interfaces = current.get("interfaces", [])
    ips = current.get("ips", [])
    dns = dict(current.get("dns") or {})
    gateways = default_gateways(current)
    sandboxed = [i for i, iface in enumerate(interfaces) if iface.get("sandbox")]

    def owner(ip: Mapping[str, Any]) -> int | None:
        index = ip.get("interface")
        if isinstance(index, int) and not isinstance(index, bool):
            return index if index in sandboxed else -1
        return sandboxed[-1] if sandboxed else None

    default_index: int | None = None
    if default and sandboxed:
        with_gateway = [o for ip in ips if ip.get("gateway") and (o := owner(ip)) is not None and o >= 0]
        default_index = with_gateway[0] if with_gateway else sandboxed[0]

    def entry(name: str, mac: str, mtu: Any, index: int | None) -> dict[str, Any]:
        mine = [ip for ip in ips if index is None or owner(ip) == index]
        status: dict[str, Any] = {"name": network_name, "interface": name}
        addresses = [_ip_only(str(ip.get("address", ""))) for ip in mine if ip.get("address")]
        if addresses:
            status["ips"] = addresses
        if mac:
            status["mac"] = mac
        if isinstance(mtu, int) and mtu > 0:
            status["mtu"] = mtu
        if default and (index is None or index == default_index):
            status["default"] = True
        status["dns"] = dict(dns)
        if device_info:
            status["device-info"] = dict(device_info)
        if gateways:
            status["gateway"] = list(gateways)
        return status

    entries: list[dict[str, Any]] = []
    for index in sandboxed:
        iface = interfaces[index]
        entries.append(entry(str(iface.get("name") or ifname), str(iface.get("mac") or ""), iface.get("mtu"), index))
    if not sandboxed:
        # A plugin that reports no pod interface (e.g. some IPAM-only or chained setups):
        # still report the attachment under the name it was given.
        mac = ""
        for iface in interfaces:
            if iface.get("name") == ifname:
                mac = str(iface.get("mac") or "")
        entries.append(entry(ifname, mac, None, None))
    return entries
