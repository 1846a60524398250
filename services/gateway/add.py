"""CNI ADD: plan the pod's attachments, attach them in order (rolling back on
the first failure), write network-status (the cache then announces the
interfaces, in the background), and answer the cluster network's result."""

from __future__ import annotations

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
from services.gateway.ports import PodEventView, PodView
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
    if earlier := core.records.take_over(call.container_id):
        # A repeated ADD for a container: undo the earlier attachments first so
        # nothing leaks (the runtime only repeats ADD after a failure on its side).
        await core.teardown(call, earlier, fail=True)
    attached = await attach_together(core, call, planned, progress)
    if attached is None:  # a delegate needs the gateway before the next one runs
        attached = await attach_all(core, call, planned, progress)
    events = interface_events(planned, attached)
    if pod.namespace not in netconf.system_namespaces:
        entries = await status_entries(core, planned, attached)
        await write_network_status(core, pod, entries, events=events)
    else:
        for event in events:  # no status write to carry them
            core.event(pod, event.type, event.reason, event.message)
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


async def attach_together(
    core: Core, call: CniCall, planned: Sequence[PlannedAttachment], progress: list[AttachmentRecord]
) -> list[AttachmentRecord] | None:
    """attach_all in one executor round trip, when no delegate needs the gateway
    before the next one runs (a chained conflist's prevResult, default-route, a
    device-info file to copy): None then, and attach_all does it.

    The same order, records and rollback: every record is written ("adding")
    before the first delegate runs, so a crash leaves DEL enough to clean up, and
    all of them are in `progress` while the executor works (a cancellation then
    rolls back every one, as any of them may have run). The executor stops at
    the first failure: `progress` is then exactly the delegates that ran (the
    failing one itself, and any after it when the failure was an unreadable
    result), which the caller rolls back; records of delegates that never ran
    are dropped. The failure is raised with its own code."""
    calls = []
    for att in planned:
        if att.drop_default_v4 or att.drop_default_v6 or att.default_gateways or att.delegate.resource_name:
            return None
        target = Target(call.container_id, call.netns, att.ifname, att.add_args)
        one = core.invoker.single_add(att.delegate.config, target, att.capability_args)
        if one is None:
            return None
        calls.append(one)
    pending = [core.record(call, att) for att in planned]
    await core.save(*pending)
    progress.extend(pending)
    try:
        results = await core.invoker.add_each(calls)
    except cni.CniError as lost:  # the executor never answered: any of them may have run
        failure: tuple[PlannedAttachment, cni.CniError] = (planned[0], lost)
    else:
        ran = [
            record if isinstance(result, cni.CniError) else replace(record, state="added", result=result)
            for record, result in zip(pending, results, strict=False)
        ]
        progress[-len(pending) :] = ran
        # On disk too before any rollback: a DEL that fails for an "added" attachment
        # keeps its record, and the runtime's retry must see it as added.
        await core.save(*(record for record in ran if record.state == "added"))
        failures = [(att, r) for att, r in zip(planned, results, strict=False) if isinstance(r, cni.CniError)]
        if not failures:
            return ran
        if never_ran := pending[len(ran) :]:  # all of this call's container
            core.records.remove(call.container_id, *(record.ifname for record in never_ran))
        failure = failures[0]
    att, err = failure
    log.warning("delegate ADD failed, rolling back", network=att.network_name, ifname=att.ifname, error=str(err))
    raise cni.CniError(err.code, f"error adding container to network {att.network_name!r}: {err.msg}", err.details)


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


async def write_network_status(
    core: Core, pod: PodView, entries: list[dict[str, Any]], *, events: Sequence[PodEventView] = ()
) -> None:
    """Write network-status (the cache emits `events` after it); a failure fails the ADD
    with the write's code (and the ADD rolls back). A pod already gone needs no status
    (the runtime will DEL it)."""
    try:
        await core.cluster.update_network_status(
            pod.namespace,
            pod.name,
            pod.uid,
            json.dumps(entries),
            wait_ms=core.config.status_write_wait_ms,
            timeout=core.timeouts.status_write + core.config.status_write_wait_ms / 1000.0,
            events=events,
        )
    except PodGone as gone:
        log.info("pod gone before its network-status was written", error=str(gone))
    except cni.CniError as err:
        raise cni.CniError(err.code, "error setting the networks status", str(err)) from err


def interface_events(planned: Sequence[PlannedAttachment], attached: Sequence[AttachmentRecord]) -> list[PodEventView]:
    """An AddedInterface event per attachment that reported an interface or address, as upstream."""
    events = []
    for att, record in zip(planned, attached, strict=True):
        current = to_current(record.result)
        if record.result is not None and (current.get("interfaces") or current.get("ips")):
            suffix = f" from {att.network_name}" if att.network_name else ""
            message = f"Add {att.ifname} [{' '.join(ips_of(record.result))}]{suffix}"
            events.append(PodEventView("Normal", "AddedInterface", message))
    return events


def cluster_result(planned: Sequence[PlannedAttachment], attached: Sequence[AttachmentRecord]) -> dict[str, Any]:
    """The runtime's answer: the cluster network's result (it takes the pod IP from it)."""
    master = next((r.result for a, r in zip(planned, attached, strict=True) if a.delegate.master), None)
    if master is None:
        master = attached[0].result if attached else None
    return to_current(master)


def ips_of(result: Mapping[str, Any] | None) -> list[str]:
    return [str(ip.get("address")) for ip in to_current(result).get("ips", []) if ip.get("address")]
