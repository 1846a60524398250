"""CNI DEL: find what the container has attached (our records; else nothing if
its ADD was rolled back; else upstream Multus' scratch cache after a
migration; else the pod's networks resolved again) and DEL it in reverse
order, continuing past failures. Only the failure of an attachment that had
completed ADD fails the DEL (core.teardown), so a pod never wedges in
Terminating over a network that was never attached."""

from __future__ import annotations

import asyncio

from services.common import cni
from services.common.logs import get_logger
from services.common.validation import pod_name_problem
from services.gateway.core import Core
from services.gateway.netconf import MultusNetConf
from services.gateway.plan import delegate_cni_args
from services.gateway.records import AttachmentRecord
from services.gateway.request import CniCall
from services.gateway.upstream_cache import forget_upstream_attachments, read_upstream_attachments

log = get_logger(__name__)


async def cmd_del(core: Core, call: CniCall) -> None:
    netconf = request_netconf(core, call)
    cni_dir = netconf.cni_dir if netconf else core.config.cni_dir
    records, abandoned = core.records.load_marked(call.container_id)  # small local files: on the loop
    upstream: list[AttachmentRecord] = []
    if not records and abandoned:
        # The mark stays (GC and the periodic sweep drop it): the runtime may DEL again.
        log.info("DEL: the container's ADD was rolled back; nothing attached")
        return
    if not records:
        records = upstream = await upstream_records(call, cni_dir, netconf.cni_version if netconf else "")
    if not records:
        records = await records_from_cluster(core, call, netconf)
    if not records:
        log.info("DEL: nothing recorded for container, nothing to do")
        return
    await core.teardown(call, records, fail=True)
    if upstream:
        await asyncio.to_thread(forget_upstream_attachments, cni_dir, upstream)


def request_netconf(core: Core, call: CniCall) -> MultusNetConf | None:
    """The request's config, parsed once; DEL goes on without one (the records suffice)."""
    try:
        return core.netconf(call, require_network=False)
    except cni.CniError as err:
        log.info("DEL: the request's network config is unusable", error=str(err))
        return None


async def upstream_records(call: CniCall, cni_dir: str, cni_version: str) -> list[AttachmentRecord]:
    """What upstream Multus attached before the swap (its scratch cache under cniDir)."""
    return await asyncio.to_thread(
        read_upstream_attachments,
        cni_dir,
        call.container_id,
        call.netns,
        call.ifname,
        cni_version=cni_version,
        cni_args=delegate_cni_args(call.pod, call.extra_args),
    )


async def records_from_cluster(core: Core, call: CniCall, netconf: MultusNetConf | None) -> list[AttachmentRecord]:
    """No record and no upstream cache (e.g. attached before an upgrade that lost the
    records): as upstream, resolve the pod's networks again (when the pod and config
    are at hand) so DEL still reaches the delegates. These records are "adding": a
    delegate DEL failure is logged, evented and counted, not returned."""
    if call.pod is None or pod_name_problem(call.pod.namespace, call.pod.name) or netconf is None:
        return []
    if not (netconf.cluster_network or netconf.raw_delegates):
        return []  # no cluster network to resolve
    try:
        pod = await core.get_pod(call, wait_ms=0)
        resolution = await core.resolver.resolve(netconf, pod)
        planned = core.plan(call, netconf, resolution.delegates)
    except cni.CniError as err:
        log.info("DEL: no record and the pod's networks cannot be resolved", error=str(err))
        return []
    return [core.record(call, a) for a in planned]
