"""`multusctl attachments`: what is attached where, from the gateway's records,
plus attachments upstream Multus made before a migration (its scratch cache
under cniDir), which our DEL tears down when their pods go."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.api import gateway_pb2, gateway_pb2_grpc
from services.common import cni
from services.ctl.output import duration, iso, short_id, table, yes
from services.ctl.result import Result
from services.ctl.rpc import Node, endpoint
from services.gateway.records import AttachmentRecord
from services.gateway.request import parse_cni_args, pod_ref_from_args
from services.gateway.result import to_current
from services.gateway.upstream_cache import read_upstream_attachments

GATEWAY = "gateway"
UPSTREAM = "upstream"


@dataclass(frozen=True)
class Filter:
    namespace: str = ""
    name: str = ""
    container_id: str = ""

    def matches(self, namespace: str, name: str, container_id: str) -> bool:
        return (
            (not self.namespace or namespace == self.namespace)
            and (not self.name or name == self.name)
            and (not self.container_id or container_id == self.container_id)
        )


def _ips(result: Any) -> list[str]:
    if not isinstance(result, dict):
        return []
    try:
        current = to_current(result)
    except (cni.CniError, ValueError, TypeError, KeyError, AttributeError):  # a foreign result shape: no IPs
        return []
    return [str(ip.get("address")) for ip in current.get("ips") or [] if isinstance(ip, dict) and ip.get("address")]


@dataclass(frozen=True)
class AttachmentView:
    """One attachment as multusctl shows it, whichever store it came from."""

    namespace: str
    pod: str
    pod_uid: str
    container_id: str
    ifname: str
    network: str
    plugin: str
    result: Any
    netns: str
    state: str
    default: bool
    hotplug: bool
    created: float
    origin: str

    def document(self, now: float) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "podUID": self.pod_uid,
            "containerID": self.container_id,
            "ifname": self.ifname,
            "network": self.network,
            "plugin": self.plugin,
            "ips": _ips(self.result),
            "netns": self.netns,
            "state": self.state,
            "default": self.default,
            "hotplug": self.hotplug,
            "createdAt": iso(self.created),
            "ageSeconds": round(now - self.created, 1) if self.created else None,
            "origin": self.origin,
        }


def from_gateway(listing: gateway_pb2.ListAttachmentsResponse, now: float) -> list[dict[str, Any]]:
    return [
        AttachmentView(
            namespace=a.pod_namespace,
            pod=a.pod_name,
            pod_uid=a.pod_uid,
            container_id=a.container_id,
            ifname=a.ifname,
            network=a.network_name,
            plugin=a.plugin_type,
            result=json.loads(a.result_json) if a.result_json else None,
            netns=a.netns,
            state=a.state,
            default=a.default,
            hotplug=a.hotplug,
            created=float(a.created_unix),
            origin=GATEWAY,
        ).document(now)
        for a in listing.attachments
    ]


def _upstream_container_ids(cni_dir: str) -> list[str]:
    """Upstream's scratch files: one per container ID directly in cniDir."""
    try:
        entries = sorted(os.scandir(cni_dir), key=lambda e: e.name)
    except OSError:
        return []
    return [e.name for e in entries if e.is_file() and not e.name.startswith(".")]


def upstream_records(cni_dir: str) -> Iterable[AttachmentRecord]:
    for container_id in _upstream_container_ids(cni_dir):
        try:
            yield from read_upstream_attachments(cni_dir, container_id, "", "eth0")
        except cni.CniError:  # not a container ID: some other file
            continue


def from_upstream(records: Iterable[AttachmentRecord], now: float) -> list[dict[str, Any]]:
    out = []
    for r in records:
        pod = pod_ref_from_args(parse_cni_args(r.cni_args))
        view = AttachmentView(
            namespace=pod.namespace if pod else "",
            pod=pod.name if pod else "",
            pod_uid=pod.uid if pod else "",
            container_id=r.container_id,
            ifname=r.ifname,
            network=r.network_name,
            plugin=r.plugin_type,
            result=r.result,
            netns=r.netns,
            state=r.state,
            default=r.master,
            hotplug=False,
            created=0.0,  # upstream records no time
            origin=UPSTREAM,
        )
        out.append(view.document(now))
    return out


def render(items: Sequence[dict[str, Any]]) -> str:
    if not items:
        return "No attachments found."
    return table(
        ["namespace", "pod", "container", "ifname", "network", "plugin", "ips", "state", "default", "age", "origin"],
        [
            [
                a["namespace"] or "-",
                a["pod"] or "-",
                short_id(a["containerID"]),
                a["ifname"],
                a["network"],
                a["plugin"],
                ",".join(a["ips"]) or "-",
                a["state"],
                yes(a["default"]),
                duration(a["ageSeconds"]),
                a["origin"],
            ]
            for a in items
        ],
    )


def list_attachments(node: Node, selection: Filter) -> list[dict[str, Any]]:
    now = time.time()
    request = gateway_pb2.ListAttachmentsRequest(
        container_id=selection.container_id, pod_namespace=selection.namespace, pod_name=selection.name
    )
    listing = node.call(endpoint(node.config, GATEWAY), gateway_pb2_grpc.GatewayStub, "ListAttachments", request)
    items = from_gateway(listing, now)
    items += [
        a
        for a in from_upstream(upstream_records(node.config.cni_dir), now)
        if selection.matches(a["namespace"], a["pod"], a["containerID"])
    ]
    return items


def run(node: Node, selection: Filter) -> Result:
    items = list_attachments(node, selection)
    return Result({"attachments": items}, render(items))
