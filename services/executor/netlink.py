"""Netlink in a container's network namespace, through pyroute2: list its
interfaces, addresses and routes (CHECK, debugging), delete one interface
(GC's last resort) and move the default routes (`default-route`).

Python 3.11 has no os.setns and pyroute2's own netns support forks, which is
unsafe in a process with gRPC's threads. Network namespaces are per thread on
Linux, so a short-lived thread enters the namespace, opens the netlink socket
there (a socket stays bound to the namespace it was created in), returns to
ours, and does the work; a thread that could not return dies with it.

pyroute2 (160 modules, about 10 MiB) is imported on the first netlink call,
not at start-up: the ADD/DEL path never uses it, so an executor that only
runs delegates never pays for it. Its NetlinkError (not an OSError) leaves
this module as NetlinkFailure, an OSError, so no caller imports pyroute2.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.executor.rejection import Reason, Rejected
from services.executor.validation import GatewayAddress

T = TypeVar("T")
IPRoute = Any  # pyroute2.IPRoute, imported on first use

_ENODEV = 19
_AF_INET = 2
_AF_INET6 = 10
_MAIN_TABLE = 254
_DEFAULT_DESTINATION = {_AF_INET: "0.0.0.0/0", _AF_INET6: "::/0"}
# Kernel answers to a route add that mean "not through this interface".
_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL})


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: str
    mtu: int
    up: bool
    kind: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    destination: str
    gateway: str
    ifname: str


@dataclass(frozen=True)
class NamespaceView:
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = field(default_factory=tuple)


class NetlinkFailure(OSError):
    """The kernel refused a netlink request (pyroute2's NetlinkError, as an OSError)."""


def _netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    error: type[Exception] = NetlinkError
    return error


def _in_netns(netns_path: str, work: Callable[[IPRoute], T]) -> T:
    from pyroute2 import IPRoute
    from pyroute2.netns import setns

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target, flags=0)
        try:
            ipr = IPRoute()
        finally:
            setns(own, flags=0)  # if this raises, the thread (and only it) stays behind and ends
    finally:
        os.close(target)
        os.close(own)
    try:
        return work(ipr)
    finally:
        ipr.close()


async def run_in_netns(netns_path: str, work: Callable[[IPRoute], T]) -> T:
    """Run `work(ipr)` with a netlink socket in `netns_path`, off the event loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def thread_main() -> None:
        try:
            try:
                value = _in_netns(netns_path, work)
            except _netlink_error() as exc:
                code = int(getattr(exc, "code", 0) or 0)
                raise NetlinkFailure(code, str(exc)) from exc
        except BaseException as exc:
            loop.call_soon_threadsafe(deliver, future.set_exception, exc)
        else:
            loop.call_soon_threadsafe(deliver, future.set_result, value)

    threading.Thread(target=thread_main, name="netns", daemon=True).start()
    return await future


def _view(ipr: IPRoute) -> NamespaceView:
    names: dict[int, str] = {}
    links = list(ipr.get_links())
    addresses: dict[int, list[str]] = {}
    for addr in ipr.get_addr():
        local = addr.get_attr("IFA_ADDRESS") if addr["family"] == 10 else addr.get_attr("IFA_LOCAL")
        local = local or addr.get_attr("IFA_ADDRESS")
        if local:
            addresses.setdefault(addr["index"], []).append(f"{local}/{addr['prefixlen']}")
    interfaces = []
    for link in links:
        index = int(link["index"])
        name = str(link.get_attr("IFLA_IFNAME") or "")
        names[index] = name
        info = link.get_attr("IFLA_LINKINFO")
        kind = str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""
        interfaces.append(
            Interface(
                name=name,
                index=index,
                mac=str(link.get_attr("IFLA_ADDRESS") or ""),
                mtu=int(link.get_attr("IFLA_MTU") or 0),
                up=bool(link["flags"] & 1),  # IFF_UP
                kind=kind,
                addresses=tuple(addresses.get(index, ())),
            )
        )
    routes = []
    for family in (2, 10):
        for route in ipr.get_routes(family=family, table=254):
            dst = route.get_attr("RTA_DST")
            destination = f"{dst}/{route['dst_len']}" if dst else ("0.0.0.0/0" if family == 2 else "::/0")
            oif = route.get_attr("RTA_OIF")
            routes.append(
                Route(
                    destination=destination,
                    gateway=str(route.get_attr("RTA_GATEWAY") or ""),
                    ifname=names.get(int(oif), "") if oif is not None else "",
                )
            )
    return NamespaceView(tuple(interfaces), tuple(routes))


async def list_interfaces(netns_path: str) -> NamespaceView:
    return await run_in_netns(netns_path, _view)


async def delete_interface(netns_path: str, ifname: str) -> bool:
    """True when the link existed and is gone now; False when there was none."""

    def delete(ipr: IPRoute) -> bool:
        indexes = ipr.link_lookup(ifname=ifname)
        if not indexes:
            return False
        try:
            ipr.link("del", index=indexes[0])
        except _netlink_error() as exc:
            if getattr(exc, "code", 0) == _ENODEV:  # removed between lookup and delete
                return False
            raise
        return True

    return await run_in_netns(netns_path, delete)


@dataclass(frozen=True)
class DefaultRouteChange:
    removed: tuple[Route, ...] = ()
    added: tuple[Route, ...] = ()


def _family(address: GatewayAddress) -> int:
    return _AF_INET if address.version == 4 else _AF_INET6


def _default_routes(ipr: IPRoute, family: int, index: int | None = None) -> list[Any]:
    """The main table's default routes of `family` (through link `index`, when given).
    A multipath route has no single interface and is left alone."""
    routes = []
    for route in ipr.get_routes(family=family, table=_MAIN_TABLE):
        if route["dst_len"] != 0:
            continue
        oif = route.get_attr("RTA_OIF")
        if index is None or (oif is not None and int(oif) == index):
            routes.append(route)
    return routes


def _replace_default_routes(
    ipr: IPRoute, ifname: str, drop_families: frozenset[int], gateways: tuple[GatewayAddress, ...]
) -> DefaultRouteChange:
    indexes = ipr.link_lookup(ifname=ifname)
    if not indexes:
        raise Rejected(Reason.NOT_FOUND, f"interface {ifname!r} not found in the netns")
    index = int(indexes[0])
    removed: list[Route] = []
    # A gateway's family is cleared on this link first: the kernel refuses a second
    # default route of one family and metric (EEXIST), even through the same link.
    for family in sorted(drop_families | {_family(gw) for gw in gateways}):
        for route in _default_routes(ipr, family, index):
            gateway = route.get_attr("RTA_GATEWAY")
            try:
                ipr.route(
                    "del",
                    family=family,
                    dst_len=0,
                    table=_MAIN_TABLE,
                    oif=index,
                    priority=int(route.get_attr("RTA_PRIORITY") or 0),
                    **({"gateway": gateway} if gateway else {}),
                )
            except _netlink_error() as exc:
                if getattr(exc, "code", 0) != errno.ESRCH:  # gone already: someone else's change, same outcome
                    raise
            removed.append(Route(_DEFAULT_DESTINATION[family], str(gateway or ""), ifname))
    added: list[Route] = []
    for gw in gateways:
        family = _family(gw)
        try:
            ipr.route("add", family=family, dst_len=0, table=_MAIN_TABLE, oif=index, gateway=str(gw))
        except _netlink_error() as exc:
            raise _route_refused(ipr, exc, family, ifname, gw) from None
        added.append(Route(_DEFAULT_DESTINATION[family], str(gw), ifname))
    return DefaultRouteChange(tuple(removed), tuple(added))


def _route_refused(ipr: IPRoute, exc: Any, family: int, ifname: str, gw: GatewayAddress) -> Exception:
    """The kernel's refusal of a default route, as something the caller can act on."""
    if exc.code == errno.EEXIST:
        names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
        others = [
            f"default via {r.get_attr('RTA_GATEWAY') or '-'} dev {names.get(int(r.get_attr('RTA_OIF') or 0), '?')}"
            for r in _default_routes(ipr, family)
        ]
        return Rejected(
            Reason.PRECONDITION,
            f"cannot add default route via {gw} on {ifname}: another default route exists ({'; '.join(others)})",
        )
    if exc.code in _UNREACHABLE:
        return Rejected(Reason.PRECONDITION, f"gateway {gw} is not reachable through {ifname}")
    if exc.code == errno.ENETDOWN:
        return Rejected(Reason.PRECONDITION, f"interface {ifname} is down")
    if exc.code == _ENODEV:
        return Rejected(Reason.NOT_FOUND, f"interface {ifname!r} disappeared from the netns")
    unexpected: Exception = exc  # pyroute2 is untyped
    return unexpected


async def set_default_routes(
    netns_path: str, ifname: str, *, drop_ipv4: bool, drop_ipv6: bool, gateways: tuple[GatewayAddress, ...]
) -> DefaultRouteChange:
    """Drop the IPv4/IPv6 default routes through `ifname` (always those of each gateway's
    family), then route each family's default via its gateway on `ifname`."""
    drop = frozenset(family for family, wanted in ((_AF_INET, drop_ipv4), (_AF_INET6, drop_ipv6)) if wanted)
    return await run_in_netns(netns_path, lambda ipr: _replace_default_routes(ipr, ifname, drop, gateways))
