"""Netlink in a container's network namespace, through pyroute2: list its
interfaces, addresses and routes (CHECK, debugging) and delete one interface
(GC's last resort).

Python 3.11 has no os.setns and pyroute2's own netns support forks, which is
unsafe in a process with gRPC's threads. Network namespaces are per thread on
Linux, so a short-lived thread enters the namespace, opens the netlink socket
there (a socket stays bound to the namespace it was created in), returns to
ours, and does the work; a thread that could not return dies with it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netns import setns

T = TypeVar("T")

_ENODEV = 19


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


def _in_netns(netns_path: str, work: Callable[[IPRoute], T]) -> T:
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
            value = _in_netns(netns_path, work)
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
        except NetlinkError as exc:
            if exc.code == _ENODEV:  # removed between lookup and delete
                return False
            raise
        return True

    return await run_in_netns(netns_path, delete)
