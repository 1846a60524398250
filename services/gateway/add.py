"""CNI ADD: plan the pod's attachments, attach them in order (rolling back on
the first failure), write network-status, announce the interfaces, and answer
the cluster network's result."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from services.common import cni
from services.common.errors import NetworkNotFound, PodGone
from services.common.logs import get_logger
from services.gateway.core import Core, device_info_file
from services.gateway.default_route import reports_interface, rewrite_default_routes
from services.gateway.delegate import Delegate
from services.gateway.invoke import Target
from services.gateway.netconf import MultusNetConf
from services.gateway.network_status import network_statuses
from services.gateway.ownership import run_to_completion
from services.gateway.plan import PlannedAttachment
from services.gateway.ports import PodView
from services.gateway.records import AttachmentRecord
from services.gateway.request import CniCall
from services.gateway.result import to_current

log = get_logger(__name__)


async def cmd_add(core: Core, call: CniCall) -> dict[str, Any]:
    # What this ADD attached or is attaching, with each attachment's true state:
    # on any failure, a cancellation (superseded by a DEL, the call's deadline, the
    # caller gone) or a bug, exactly these are rolled back.
    progress: list[AttachmentRecord] = []
    try:
        return await add_networks(core, call, progress)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, cni.CniError) else type(exc).__name__
        await run_to_completion(core.abandon_add(call, progress, reason))
        raise


async def add_networks(core: Core, call: CniCall, progress: list[AttachmentRecord]) -> dict[str, Any]:
    netconf = core.netconf(call)
    core.check_readiness(netconf)
    pod = await core.get_pod(call)
    planned = core.plan(call, netconf, await resolve_networks(core, netconf, pod))
    if earlier := await asyncio.to_thread(core.records.take_over, call.container_id):
        # A repeated ADD for a container: undo the earlier attachments first so
        # nothing leaks (the runtime only repeats ADD after a failure on its side).
        await core.teardown(call, earlier, fail=True)
    attached = await attach_all(core, call, planned, progress)
    if pod.namespace not in netconf.system_namespaces:
        await write_network_status(core, pod, await status_entries(core, planned, attached))
    announce_interfaces(core, pod, planned, attached)
    return cluster_result(planned, attached)


async def resolve_networks(core: Core, netconf: MultusNetConf, pod: PodView) -> list[Delegate]:
    """The pod's delegates in attach order; a missing NAD gets the pod a NoNetworkFound event."""
    try:
        return (await core.resolver.resolve(netconf, pod)).delegates
    except NetworkNotFound as err:
        core.event(pod, "Warning", "NoNetworkFound", str(err))
        raise


async def attach_all(
    core: Core, call: CniCall, planned: Sequence[PlannedAttachment], progress: list[AttachmentRecord]
) -> list[AttachmentRecord]:
    """ADD each delegate in order, keeping `progress` current (the caller rolls it back
    on failure: from the failing delegate itself, which may have allocated IPAM
    before failing, back to the first); a failure keeps the delegate's own CNI code."""
    attached: list[AttachmentRecord] = []
    # The "added" record of one attachment is written together with the
    # "pending" record of the next (one thread hop instead of two): only the
    # pending record has to be on disk before its delegate runs.
    unsaved: list[AttachmentRecord] = []
    for att in planned:
        record = core.record(call, att)
        await core.save(*unsaved, record)
        unsaved = []
        progress.append(record)
        await core.device_files.prepare(
            device_info_file(att.capability_args), att.delegate.resource_name, att.delegate.device_id
        )
        try:
            target = Target(call.container_id, call.netns, att.ifname, att.add_args)
            result = await core.invoker.add(att.delegate.config, target, att.capability_args)
            progress[-1] = record = replace(record, state="added", result=result)
            result = await apply_default_route(core, call, att, result)
        except cni.CniError as err:
            log.warning(
                "delegate ADD failed, rolling back", network=att.network_name, ifname=att.ifname, error=str(err)
            )
            raise cni.CniError(
                err.code, f"error adding container to network {att.network_name!r}: {err.msg}", err.details
            ) from err
        progress[-1] = record = replace(record, result=result)
        unsaved.append(record)
        attached.append(record)
    await core.save(*unsaved)
    return attached


async def apply_default_route(
    core: Core, call: CniCall, att: PlannedAttachment, result: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Move the pod's default routes as the selection's `default-route` asked, and
    make the stored result say so (CHECK hands it to the plugin)."""
    if not (att.drop_default_v4 or att.drop_default_v6 or att.default_gateways):
        return result
    if not reports_interface(result):
        return result  # as upstream: no interface or address reported, no routes to move
    if core.routes is None:
        raise cni.CniError(cni.UNSUPPORTED_FIELD, "default-route is not available: no route editor configured")
    await core.routes.replace_default_routes(
        call.netns, att.ifname, att.drop_default_v4, att.drop_default_v6, att.default_gateways
    )
    return rewrite_default_routes(
        result, drop_v4=att.drop_default_v4, drop_v6=att.drop_default_v6, gateways=att.default_gateways
    )


async def status_entries(
    core: Core, planned: Sequence[PlannedAttachment], attached: Sequence[AttachmentRecord]
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for att, record in zip(planned, attached, strict=True):
        device_info = await core.device_files.load(device_info_file(att.capability_args))
        entries.extend(
            network_statuses(
                record.result, att.network_name, att.ifname, default=att.delegate.master, device_info=device_info
            )
        )
    return entries


async def write_network_status(core: Core, pod: PodView, entries: list[dict[str, Any]]) -> None:
    """Write network-status; a failure fails the ADD with the write's code (and the ADD
    rolls back). A pod already gone needs no status (the runtime will DEL it)."""
    try:
        await core.cluster.update_network_status(
            pod.namespace,
            pod.name,
            pod.uid,
            json.dumps(entries),
            wait_ms=core.config.status_write_wait_ms,
            timeout=core.timeouts.status_write + core.config.status_write_wait_ms / 1000.0,
        )
    except PodGone as gone:
        log.info("pod gone before its network-status was written", error=str(gone))
    except cni.CniError as err:
        raise cni.CniError(err.code, "error setting the networks status", str(err)) from err


def announce_interfaces(
    core: Core, pod: PodView, planned: Sequence[PlannedAttachment], attached: Sequence[AttachmentRecord]
) -> None:
    """An AddedInterface event per attachment that reported an interface or address, as upstream."""
    for att, record in zip(planned, attached, strict=True):
        current = to_current(record.result)
        if record.result is not None and (current.get("interfaces") or current.get("ips")):
            suffix = f" from {att.network_name}" if att.network_name else ""
            core.event(pod, "Normal", "AddedInterface", f"Add {att.ifname} [{' '.join(ips_of(record.result))}]{suffix}")


def cluster_result(planned: Sequence[PlannedAttachment], attached: Sequence[AttachmentRecord]) -> dict[str, Any]:
    """The runtime's answer: the cluster network's result (it takes the pod IP from it)."""
    master = next((r.result for a, r in zip(planned, attached, strict=True) if a.delegate.master), None)
    if master is None:
        master = attached[0].result if attached else None
    return to_current(master)


def ips_of(result: Mapping[str, Any] | None) -> list[str]:
    return [str(ip.get("address")) for ip in to_current(result).get("ips", []) if ip.get("address")]
