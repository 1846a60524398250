"""Hot-plug (upstream's POST /delegate): ADD, DEL, CHECK or STATUS of one
interface of a running pod, with the delegate's config given in the request
and the interface's attributes (ips, mac, cni-args) alongside."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.common import cni
from services.common.selection import NetworkSelectionElement
from services.gateway.add import ips_of
from services.gateway.core import Core
from services.gateway.delegate import load_delegate, with_cni_version
from services.gateway.invoke import Target
from services.gateway.netconf import MultusNetConf
from services.gateway.plan import delegate_cni_args, plan_attachments
from services.gateway.records import AttachmentRecord
from services.gateway.request import CniCall, InterfaceAttributes
from services.gateway.result import to_current


async def cmd_delegate(core: Core, call: CniCall, attributes: InterfaceAttributes | None) -> dict[str, Any] | None:
    netconf = core.netconf(call, require_network=False)
    if call.command == "ADD":
        return await hotplug_add(core, call, netconf, attributes)
    if call.command == "DEL":
        await hotplug_del(core, call)
    elif call.command == "CHECK":
        await hotplug_check(core, call)
    elif call.command == "STATUS":
        await core.invoker.status(load_delegate(call.config).config)
    else:
        raise cni.CniError(cni.INVALID_ENV, f"unsupported delegate command {call.command!r}")
    return None


async def hotplug_add(
    core: Core, call: CniCall, netconf: MultusNetConf, attributes: InterfaceAttributes | None
) -> dict[str, Any]:
    pod = await core.get_pod(call)
    element = None
    if attributes is not None:
        element = NetworkSelectionElement(name="", ips=attributes.ips, mac=attributes.mac, cni_args=attributes.cni_args)
    delegate = with_cni_version(load_delegate(call.config, element), netconf.cni_version)
    existing = await core.load_records(call.container_id)
    if any(r.ifname == call.ifname for r in existing):
        raise cni.CniError(cni.INVALID_CONFIG, f"interface {call.ifname!r} is already attached to this container")
    (att,) = plan_attachments(
        [replace(delegate, ifname_request=call.ifname)],
        runtime_ifname=call.ifname,
        pod=call.pod,
        runtime_config={},
        extra_args=call.extra_args,
        first_index=max((r.index for r in existing), default=-1) + 1,
    )
    record = core.record(call, att, hotplug=True)
    await core.save(record)
    try:
        target = Target(call.container_id, call.netns, att.ifname, att.add_args)
        result = await core.invoker.add(delegate.config, target, att.capability_args)
    except cni.CniError as err:
        await core.teardown(call, [record], fail=False)
        raise cni.CniError(err.code, f"error adding interface {call.ifname!r}: {err.msg}", err.details) from err
    await core.save(replace(record, state="added", result=result))
    if result is not None:
        core.event(pod, "Normal", "AddedInterface", f"Add {att.ifname} [{' '.join(ips_of(result))}]")
    return to_current(result)


async def hotplug_del(core: Core, call: CniCall) -> None:
    records = await interface_records(core, call)
    if records:
        await core.teardown(call, records, fail=True)
    else:  # not ours: DEL with the given config, as upstream
        await core.invoker.delete(load_delegate(call.config).config, unrecorded_target(call), {}, None)


async def hotplug_check(core: Core, call: CniCall) -> None:
    records = await interface_records(core, call)
    for record in records:
        await core.invoker.check(record.config, core.target(call, record), record.capability_args, record.result)
    if not records:
        await core.invoker.check(load_delegate(call.config).config, unrecorded_target(call), {}, None)


async def interface_records(core: Core, call: CniCall) -> list[AttachmentRecord]:
    return [r for r in await core.load_records(call.container_id) if r.ifname == call.ifname]


def unrecorded_target(call: CniCall) -> Target:
    return Target(call.container_id, call.netns, call.ifname, delegate_cni_args(call.pod, call.extra_args))
