"""The `k8s.v1.cni.cncf.io/network-status` entries built from delegate results
(upstream's nadutils.CreateNetworkStatuses, without its `"gateway": ["<nil>"]`).
Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from services.gateway.result import to_current


def _ip_only(address: str) -> str:
    try:
        return str(ipaddress.ip_interface(address).ip)
    except ValueError:
        return address.split("/")[0]


def network_statuses(
    result: Mapping[str, Any] | None,
    network_name: str,
    ifname: str,
    *,
    default: bool,
    device_info: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One entry per pod-side interface of the result (or one for the attachment when
    the plugin reported no interfaces); `default` only for the cluster network."""
    current = to_current(result)
    interfaces = current.get("interfaces", [])
    ips = current.get("ips", [])
    entries: list[dict[str, Any]] = []

    def entry(name: str, mac: str, mtu: Any, index: int | None) -> dict[str, Any]:
        mine = [ip for ip in ips if index is None or ip.get("interface") in (None, index)]
        status: dict[str, Any] = {"name": network_name, "interface": name}
        addresses = [_ip_only(str(ip.get("address", ""))) for ip in mine if ip.get("address")]
        if addresses:
            status["ips"] = addresses
        if mac:
            status["mac"] = mac
        if isinstance(mtu, int) and mtu > 0:
            status["mtu"] = mtu
        if default:
            status["default"] = True
        status["dns"] = dict(current.get("dns") or {})
        if device_info:
            status["device-info"] = dict(device_info)
        gateways = [str(ip["gateway"]) for ip in mine if ip.get("gateway")]
        if gateways:
            status["gateway"] = gateways
        return status

    sandboxed = [(i, iface) for i, iface in enumerate(interfaces) if iface.get("sandbox")]
    for index, iface in sandboxed:
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
