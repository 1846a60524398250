"""Dynamic networks, the pure part: which of a running pod's attachments the
networks annotation manages, and what to change so they match the annotation
again (services/gateway/dynamic_networks.py does the I/O).

Elements are matched to attachments by (namespace/name, interface as
attached): an element naming its interface matches the attachment of that
network on that interface; elements without one match, in order of
appearance, the attachments of that network whose interface was named
automatically (net<N>). Anything unmatched is removed, then what is missing
is added, so changing an element's interface is a DEL then an ADD.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.selection import NetworkSelectionElement
from services.gateway.netconf import MultusNetConf
from services.gateway.records import AttachmentRecord

_AUTO_IFNAME = re.compile(r"net[0-9]+")


def fixed_attachments(netconf: MultusNetConf, pod_namespace: str) -> int:
    """How many of a pod's first attachments come from the daemon config (the cluster
    network or `delegates`, then `defaultNetworks` outside systemNamespaces), not from
    the annotation: the order in which resolver.resolve puts them."""
    cluster = 1 if netconf.cluster_network else len(netconf.raw_delegates)
    defaults = 0 if pod_namespace in netconf.system_namespaces else len(netconf.default_networks)
    return cluster + defaults


def annotation_attachments(records: Sequence[AttachmentRecord], fixed: int) -> list[AttachmentRecord]:
    """The attachments the networks annotation manages: those the first ADD made for
    it and those dynamic networks added. The cluster network, defaultNetworks and
    interfaces hot-plugged by someone else through POST /delegate are never touched."""
    managed = []
    for record in records:
        ours = not record.hotplug and not record.master and record.index >= fixed
        if record.dynamic or ours:
            managed.append(record)
    return sorted(managed, key=lambda r: (r.index, r.created))


def element_network(element: NetworkSelectionElement) -> str:
    """The network-status name an attachment of this element is recorded under."""
    return f"{element.namespace}/{element.name}"


def auto_named(record: AttachmentRecord) -> bool:
    """Whether the attachment's interface name was chosen by us, not by the element."""
    if record.ifname_requested is not None:
        return not record.ifname_requested
    return _AUTO_IFNAME.fullmatch(record.ifname) is not None  # records older than the field


@dataclass(frozen=True)
class Addition:
    element: NetworkSelectionElement
    ifname: str


@dataclass(frozen=True)
class NetworkChanges:
    remove: tuple[AttachmentRecord, ...] = ()
    add: tuple[Addition, ...] = ()
    keep: tuple[AttachmentRecord, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.remove and not self.add


def next_free_ifname(used: set[str]) -> str:
    n = 1
    while f"net{n}" in used:
        n += 1
    return f"net{n}"


def diff_networks(
    elements: Sequence[NetworkSelectionElement],
    managed: Sequence[AttachmentRecord],
    other_ifnames: Sequence[str],
) -> NetworkChanges:
    """What to remove and add so `managed` matches `elements`; `other_ifnames` are
    the pod's interfaces this does not manage (never reused, never removed).
    Elements must carry their namespace (parse_networks_annotation's default)."""
    claimed: dict[int, AttachmentRecord] = {}  # element position -> its attachment
    free = list(managed)
    for pos, element in enumerate(elements):  # explicit interfaces first: they are exact
        if element.interface:
            for record in free:
                if record.network_name == element_network(element) and record.ifname == element.interface:
                    claimed[pos] = record
                    free.remove(record)
                    break
    for pos, element in enumerate(elements):
        if not element.interface:
            for record in free:
                if record.network_name == element_network(element) and auto_named(record):
                    claimed[pos] = record
                    free.remove(record)
                    break
    keep = tuple(sorted(claimed.values(), key=lambda r: r.index))
    used = set(other_ifnames) | {r.ifname for r in keep}
    # Names the annotation asks for are reserved before automatic names are handed out.
    used |= {e.interface for pos, e in enumerate(elements) if pos not in claimed and e.interface}
    additions = []
    for pos, element in enumerate(elements):
        if pos in claimed:
            continue
        ifname = element.interface
        if not ifname:
            ifname = next_free_ifname(used)
            used.add(ifname)
        additions.append(Addition(element, ifname))
    return NetworkChanges(remove=tuple(free), add=tuple(additions), keep=keep)
