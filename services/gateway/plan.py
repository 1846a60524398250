"""Planning: from the ordered delegates of a pod to the attachments to make.
Pure: interface names (eth0, net<N>, explicit names; duplicates rejected),
per-attachment runtimeConfig (capability args) and CNI_ARGS, and the
default-route decision."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.common import cni
from services.gateway.delegate import Delegate
from services.gateway.request import PodRef


@dataclass(frozen=True)
class PlannedAttachment:
    index: int
    ifname: str
    delegate: Delegate
    capability_args: Mapping[str, Any]
    cni_args: str  # CNI_ARGS for DEL/CHECK (and ADD, plus add_args)
    add_args: str  # CNI_ARGS for ADD: the above plus the deprecated MAC=/IP= requests
    # Default-route handling (only when some selection asked for `default-route`):
    drop_default_v4: bool = False
    drop_default_v6: bool = False
    default_gateways: tuple[str, ...] = ()

    @property
    def network_name(self) -> str:
        return self.delegate.name


def ifname_for(delegate: Delegate, runtime_ifname: str, index: int) -> str:
    if delegate.ifname_request:
        return delegate.ifname_request
    if delegate.master:
        return runtime_ifname
    return f"net{index}"


def capability_args_for(delegate: Delegate, runtime_config: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime's runtimeConfig belongs to the cluster network only; a secondary
    network gets exactly what its own selection element asked for."""
    caps = dict(runtime_config) if delegate.master else {}
    if delegate.port_mappings:
        caps["portMappings"] = [dict(p) for p in delegate.port_mappings]
    if delegate.bandwidth is not None:
        caps["bandwidth"] = dict(delegate.bandwidth)
    if delegate.ips:
        caps["ips"] = list(delegate.ips)
    if delegate.mac:
        caps["mac"] = delegate.mac
    if delegate.infiniband_guid:
        caps["infinibandGUID"] = delegate.infiniband_guid
    if delegate.device_id:
        caps["deviceID"] = delegate.device_id
    return caps


def delegate_cni_args(pod: PodRef | None, extra: Sequence[tuple[str, str]] = ()) -> str:
    """CNI_ARGS as upstream builds them for a delegate (same order), plus the runtime's other args."""
    pairs = [
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", pod.namespace if pod else ""),
        ("K8S_POD_NAME", pod.name if pod else ""),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id if pod else ""),
        ("K8S_POD_UID", pod.uid if pod else ""),
    ]
    known = {k for k, _ in pairs}
    pairs.extend((k, v) for k, v in extra if k not in known)
    return ";".join(f"{k}={v}" for k, v in pairs)


def _add_args(base: str, delegate: Delegate) -> str:
    extra = []
    if delegate.mac:
        extra.append(f"MAC={delegate.mac}")
    if delegate.ips:
        extra.append("IP=" + ",".join(delegate.ips))
    return ";".join([base, *extra]) if extra else base


def _gateway_families(gateways: Sequence[str]) -> set[int]:
    return {ipaddress.ip_address(gw).version for gw in gateways}


def plan_attachments(
    delegates: Sequence[Delegate],
    *,
    runtime_ifname: str,
    pod: PodRef | None,
    runtime_config: Mapping[str, Any],
    extra_args: Sequence[tuple[str, str]] = (),
    first_index: int = 0,
) -> list[PlannedAttachment]:
    base_args = delegate_cni_args(pod, extra_args)
    route_requested = any(d.default_route is not None for d in delegates)
    if route_requested:
        v4 = sum(1 for d in delegates for gw in d.default_route or () if ipaddress.ip_address(gw).version == 4)
        v6 = sum(1 for d in delegates for gw in d.default_route or () if ipaddress.ip_address(gw).version == 6)
        if v4 > 1 or v6 > 1:
            raise cni.CniError(cni.INVALID_CONFIG, "multus does not support ECMP for default-route")
    planned: list[PlannedAttachment] = []
    seen: dict[str, str] = {}
    for offset, delegate in enumerate(delegates):
        index = first_index + offset
        ifname = ifname_for(delegate, runtime_ifname, index)
        if ifname in seen:
            raise cni.CniError(
                cni.INVALID_CONFIG,
                f"duplicate interface name {ifname!r}",
                f"networks {seen[ifname]!r} and {delegate.name!r} both use it; name one with '@<ifname>'",
            )
        seen[ifname] = delegate.name
        families = _gateway_families(delegate.default_route or ())
        planned.append(
            PlannedAttachment(
                index=index,
                ifname=ifname,
                delegate=delegate,
                capability_args=capability_args_for(delegate, runtime_config),
                cni_args=base_args,
                add_args=_add_args(base_args, delegate),
                drop_default_v4=route_requested and 4 not in families,
                drop_default_v6=route_requested and 6 not in families,
                default_gateways=tuple(delegate.default_route or ()),
            )
        )
    return planned
