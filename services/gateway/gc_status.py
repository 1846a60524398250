"""CNI STATUS and GC (CNI 1.1), plugin-level verbs. STATUS asks the cluster
network's plugins; GC deletes every recorded attachment of a container the
runtime no longer lists in `cni.dev/valid-attachments`, then gives each
network's plugins GC with the attachments still valid. Plugins that do not
speak 1.1 are skipped (services.gateway.invoke)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from services.common import cni
from services.common.logs import get_logger
from services.gateway.core import Core
from services.gateway.delegate import Delegate, with_cni_version
from services.gateway.invoke import VALID_ATTACHMENTS_KEY
from services.gateway.netconf import MultusNetConf
from services.gateway.request import CniCall

log = get_logger(__name__)

# One network's config and the attachments of it that are still valid.
NetworkAttachments = tuple[Mapping[str, Any], list[dict[str, str]]]


async def cmd_status(core: Core, call: CniCall) -> None:
    netconf = core.netconf(call)
    core.check_readiness(netconf, code=cni.PLUGIN_NOT_AVAILABLE)
    await core.invoker.status((await cluster_network(core, netconf)).config)


async def cmd_gc(core: Core, call: CniCall) -> None:
    netconf = core.netconf(call)
    valid_ids = valid_container_ids(netconf.raw)
    first: cni.CniError | None = None
    for cid in await asyncio.to_thread(core.records.container_ids):
        if cid in valid_ids:
            continue
        async with core.owners.turn(cid, "GC"):  # never under a running ADD or DEL of it
            records = await core.load_records(cid)
            gc_call = replace(call, container_id=cid, netns="", ifname=records[0].ifname if records else "eth0")
            try:
                await core.teardown(gc_call, records, fail=True)
                await asyncio.to_thread(core.records.forget_abandoned, cid)
            except cni.CniError as err:
                first = first or err
    for config, valid in (await networks_to_collect(core, netconf)).values():
        try:
            await core.invoker.gc(config, valid)
        except cni.CniError as err:
            first = first or err
    if first is not None:
        raise first


async def cluster_network(core: Core, netconf: MultusNetConf) -> Delegate:
    return with_cni_version((await core.resolver.cluster_delegates(netconf, None))[0], netconf.cni_version)


async def networks_to_collect(core: Core, netconf: MultusNetConf) -> dict[str, NetworkAttachments]:
    """Every network a remaining record uses (keyed by its config), with its valid
    attachments, plus the cluster network (possibly with none)."""
    networks: dict[str, NetworkAttachments] = {}
    for record in await asyncio.to_thread(core.records.all):
        key = json.dumps(record.config, sort_keys=True)
        networks.setdefault(key, (record.config, []))[1].append(
            {"containerID": record.container_id, "ifname": record.ifname}
        )
    try:
        cluster = await cluster_network(core, netconf)
        networks.setdefault(json.dumps(cluster.config, sort_keys=True), (cluster.config, []))
    except cni.CniError as err:
        log.info("GC: cluster network not resolvable", error=str(err))
    return networks


def valid_container_ids(conf: Mapping[str, Any]) -> set[str]:
    valid = conf.get(VALID_ATTACHMENTS_KEY)
    if valid is None:
        raise cni.CniError(cni.INVALID_CONFIG, f"GC needs {VALID_ATTACHMENTS_KEY} in the config")
    if not isinstance(valid, list):
        raise cni.CniError(cni.INVALID_CONFIG, f"{VALID_ATTACHMENTS_KEY} must be a list")
    return {str(v.get("containerID")) for v in valid if isinstance(v, dict) and v.get("containerID")}
