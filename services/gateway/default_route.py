"""Default-route bookkeeping in delegate results (pure).

After the executor moved a pod's default routes (the `default-route`
selection element), a delegate's stored result must say what is now true in
the netns: CHECK hands it to the plugin as prevResult, and the plugin looks
for every route it lists. As upstream's DeleteDefaultGWCache/AddDefaultGWCache
do for libcni's cache: the dropped families' default routes leave the result,
a chosen gateway's default route joins it. Results of every version are
handled in their own shape (0.1.0/0.2.0 keep routes under `ip4`/`ip6`).
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

_DEFAULT_DESTINATION = {4: "0.0.0.0/0", 6: "::/0"}
_LEGACY_SECTIONS = {"ip4": 4, "ip6": 6}


def default_route_family(route: Mapping[str, Any]) -> int | None:
    """4 or 6 when `route` is a default route (any spelling: 0.0.0.0/0, ::/0, ::0/0), else None."""
    try:
        network = ipaddress.ip_network(str(route.get("dst", "")), strict=False)
    except ValueError:
        return None
    return network.version if network.prefixlen == 0 else None


def reports_interface(result: Mapping[str, Any] | None) -> bool:
    """Whether a delegate's result names an interface or an address. As upstream,
    routes are moved only for those: a delegate that reported neither (an
    IPAM-less or chained no-op) has nothing to move."""
    if not result:
        return False
    return bool(result.get("interfaces") or result.get("ips") or result.get("ip4") or result.get("ip6"))


Gateway = ipaddress.IPv4Address | ipaddress.IPv6Address


def _rewritten(routes: Iterable[Any], clear: Set[int], add: Sequence[Gateway]) -> list[Any]:
    kept = [r for r in routes if not (isinstance(r, Mapping) and default_route_family(r) in clear)]
    return kept + [{"dst": _DEFAULT_DESTINATION[gw.version], "gw": str(gw)} for gw in add]


def rewrite_default_routes(
    result: Mapping[str, Any] | None, *, drop_v4: bool, drop_v6: bool, gateways: Sequence[str]
) -> dict[str, Any] | None:
    """A copy of `result` with the default routes of the dropped families and of each
    gateway's family removed, and one default route per gateway added."""
    if result is None:
        return None
    out: dict[str, Any] = copy.deepcopy(dict(result))
    added: list[Gateway] = [ipaddress.ip_address(gw) for gw in gateways]
    clear: set[int] = {gw.version for gw in added}
    if drop_v4:
        clear.add(4)
    if drop_v6:
        clear.add(6)
    legacy = [section for section in _LEGACY_SECTIONS if isinstance(out.get(section), dict)]
    if legacy:
        for section in legacy:
            version = _LEGACY_SECTIONS[section]
            mine = [gw for gw in added if gw.version == version]
            routes = _rewritten(out[section].get("routes") or [], clear & {version}, mine)
            if routes:
                out[section]["routes"] = routes
            else:
                out[section].pop("routes", None)
        return out
    routes = _rewritten(out.get("routes") or [], clear, added)
    if routes:
        out["routes"] = routes
    else:
        out.pop("routes", None)
    return out
