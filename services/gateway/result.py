"""CNI results: version arithmetic and conversion between result versions
(0.1.0/0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 with `version`, 1.x). Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from services.common import cni


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = (version or "0.1.0").split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError as exc:
        raise cni.CniError(cni.INCOMPATIBLE_VERSION, f"invalid cniVersion {version!r}") from exc
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def version_at_least(version: str, minimum: str) -> bool:
    return version_tuple(version or "0.1.0") >= version_tuple(minimum)


def _legacy_ips(result: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for key in ("ip4", "ip6"):
        block = result.get(key)
        if not isinstance(block, dict) or not block.get("ip"):
            continue
        entry: dict[str, Any] = {"address": block["ip"]}
        if block.get("gateway"):
            entry["gateway"] = block["gateway"]
        ips.append(entry)
        for route in block.get("routes") or []:
            if isinstance(route, dict):
                routes.append(dict(route))
    return ips, routes


def to_current(result: Mapping[str, Any] | None, cni_version: str = cni.LATEST_CNI_VERSION) -> dict[str, Any]:
    """Convert any result to the 1.0.0 shape (cniVersion set to `cni_version`)."""
    src: Mapping[str, Any] = result or {}
    out: dict[str, Any] = {"cniVersion": cni_version}
    if "ip4" in src or "ip6" in src:
        ips, routes = _legacy_ips(src)
        interfaces: list[dict[str, Any]] = []
    else:
        interfaces = [dict(i) for i in src.get("interfaces") or [] if isinstance(i, dict)]
        ips = []
        for ip in src.get("ips") or []:
            if not isinstance(ip, dict):
                continue
            entry = {k: v for k, v in ip.items() if k != "version"}
            ips.append(entry)
        routes = [dict(r) for r in src.get("routes") or [] if isinstance(r, dict)]
    if interfaces:
        out["interfaces"] = interfaces
    if ips:
        out["ips"] = ips
    if routes:
        out["routes"] = routes
    dns = src.get("dns")
    out["dns"] = dict(dns) if isinstance(dns, dict) else {}
    return out


def to_version(result: Mapping[str, Any] | None, cni_version: str) -> dict[str, Any]:
    """Convert a result to `cni_version` (for prevResult in a delegate's own version)."""
    current = to_current(result, cni_version)
    if version_at_least(cni_version, "1.0.0"):
        return current
    if version_at_least(cni_version, "0.3.0"):
        for ip in current.get("ips", []):
            try:
                ip["version"] = str(ipaddress.ip_interface(ip["address"]).version)
            except (KeyError, ValueError):
                ip["version"] = "4"
        return current
    legacy: dict[str, Any] = {"cniVersion": cni_version}
    for ip in current.get("ips", []):
        try:
            family = ipaddress.ip_interface(ip["address"]).version
        except (KeyError, ValueError):
            continue
        key = "ip4" if family == 4 else "ip6"
        if key in legacy:
            continue
        block: dict[str, Any] = {"ip": ip["address"]}
        if ip.get("gateway"):
            block["gateway"] = ip["gateway"]
        legacy[key] = block
    if current.get("dns"):
        legacy["dns"] = current["dns"]
    return legacy

