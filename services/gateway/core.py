"""What every CNI verb of the gateway works with: the ports to the outside
world (cluster, plugin invoker, records, routes, device-info files), the
timeouts, and the small steps the verbs share (the request's network config,
the readiness file, the pod, attachment records, pod events, teardown).

The verbs themselves are short top-to-bottom functions, one module each:
add.py, delete.py, check.py, gc_status.py, hotplug.py. No HTTP or gRPC here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.common import cni
from services.common.config import DaemonConfig
from services.common.logs import get_logger
from services.common.selection import CONFIG_SOURCE_ANNOTATION
from services.gateway.delegate import Delegate
from services.gateway.device_info import CNI_DEVICE_INFO_CAPABILITY, DeviceInfoFiles, with_device_info_file
from services.gateway.gateway_metrics import TEARDOWN_FAILURES
from services.gateway.invoke import NetworkInvoker, Target
from services.gateway.netconf import MultusNetConf, load_netconf
from services.gateway.ownership import ContainerOwners
from services.gateway.plan import PlannedAttachment, plan_attachments
from services.gateway.ports import Cluster, PodView, RouteEditor
from services.gateway.records import AttachmentRecord, RecordStore
from services.gateway.request import CniCall
from services.gateway.resolver import NetworkResolver

log = get_logger(__name__)

# The executor bounds a delegate by executorTimeoutSeconds; the gateway waits
# this much longer for its answer, so it hears "killed after N s" from the
# executor instead of timing out itself.
EXECUTOR_REPLY_MARGIN = 5.0


@dataclass(frozen=True)
class Timeouts:
    """Every deadline of the CNI logic, named once."""

    cluster: float = 5.0  # one cache call (plus any wait for a pod it asks for)
    delegate: float = 60.0 + EXECUTOR_REPLY_MARGIN  # one executor call (a plugin, a route change)
    status_write: float = 5.0  # the network-status write (plus statusWriteWaitMs)

    @classmethod
    def from_config(cls, config: DaemonConfig) -> Timeouts:
        return cls(delegate=config.executor_timeout_seconds + EXECUTOR_REPLY_MARGIN)


def is_static_pod(pod: PodView) -> bool:
    source = pod.annotations.get(CONFIG_SOURCE_ANNOTATION)
    return source is not None and source != "api"


def device_info_file(capability_args: Mapping[str, Any]) -> str:
    path = capability_args.get(CNI_DEVICE_INFO_CAPABILITY)
    return path if isinstance(path, str) else ""


@dataclass
class Core:
    """The gateway's ports and shared steps; one per process."""

    config: DaemonConfig
    cluster: Cluster
    invoker: NetworkInvoker
    records: RecordStore
    resolver: NetworkResolver
    routes: RouteEditor | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    device_files: DeviceInfoFiles = field(default_factory=DeviceInfoFiles)
    owners: ContainerOwners = field(default_factory=ContainerOwners)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    # --- the request ---------------------------------------------------------------
    def netconf(self, call: CniCall, *, require_network: bool = True) -> MultusNetConf:
        return load_netconf(call.config, self.config.raw, require_network=require_network)

    def check_readiness(self, netconf: MultusNetConf, code: int = cni.TRY_AGAIN_LATER) -> None:
        path = netconf.readiness_indicator_file
        if path and not os.path.exists(path):
            raise cni.CniError(code, "default network not ready", f"still waiting for readinessindicatorfile @ {path}")

    async def get_pod(self, call: CniCall, *, wait_ms: int | None = None) -> PodView:
        assert call.pod is not None  # validate_call requires it for pod verbs
        wait = self.config.pod_wait_ms if wait_ms is None else wait_ms
        pod = await self.cluster.get_pod(
            call.pod.namespace, call.pod.name, "", wait_ms=wait, timeout=self.timeouts.cluster + wait / 1000.0
        )
        if call.pod.uid and pod.uid and pod.uid != call.pod.uid and not is_static_pod(pod):
            raise cni.CniError(
                cni.TRY_AGAIN_LATER,
                f"expected pod UID {call.pod.uid!r} but got {pod.uid!r} from the cache",
                f"pod {call.pod}",
            )
        return pod

    # --- planning ------------------------------------------------------------------
    def plan(self, call: CniCall, netconf: MultusNetConf, delegates: Sequence[Delegate]) -> list[PlannedAttachment]:
        """The pure plan, plus each device's CNIDeviceInfoFile capability (device-info spec)."""
        planned = plan_attachments(
            delegates,
            runtime_ifname=call.ifname,
            pod=call.pod,
            runtime_config=netconf.runtime_config,
            extra_args=call.extra_args,
        )
        return [
            replace(
                att,
                capability_args=with_device_info_file(
                    att.capability_args,
                    att.delegate.device_id,
                    self.device_files.path_for(att.network_name, call.container_id, att.ifname),
                ),
            )
            for att in planned
        ]

    # --- records -------------------------------------------------------------------
    def record(self, call: CniCall, att: PlannedAttachment, *, hotplug: bool = False) -> AttachmentRecord:
        pod = call.pod
        return AttachmentRecord(
            container_id=call.container_id,
            ifname=att.ifname,
            index=att.index,
            netns=call.netns,
            network_name=att.network_name,
            config=att.delegate.config,
            capability_args=att.capability_args,
            cni_args=att.cni_args,
            pod_namespace=pod.namespace if pod else "",
            pod_name=pod.name if pod else "",
            pod_uid=pod.uid if pod else "",
            master=att.delegate.master,
            hotplug=hotplug,
            ifname_requested=bool(att.delegate.ifname_request),
        )

    # Records are small local files written without fsync: on the loop they cost
    # less than the two thread hops around them, on every delegate of every call.
    async def load_records(self, container_id: str) -> list[AttachmentRecord]:
        return self.records.load(container_id)

    async def save(self, *records: AttachmentRecord) -> None:
        if records:
            self.records.save(*records)

    @staticmethod
    def target(call: CniCall, record: AttachmentRecord) -> Target:
        """Where a recorded attachment lives; a DEL without CNI_NETNS uses the recorded one."""
        return Target(call.container_id, call.netns or record.netns, record.ifname, record.cni_args)

    async def teardown(self, call: CniCall, records: Sequence[AttachmentRecord], *, fail: bool) -> None:
        """DEL in reverse order, keep going on errors.

        An attachment that had completed ADD (state "added") and whose DEL failed
        keeps its record, so the runtime's retry of DEL runs exactly that delegate
        again; with `fail` (a DEL) the first such error is raised once all are done,
        a rollback only logs it. A delegate whose ADD never completed (state
        "adding": the one that failed, one a crash interrupted, or one resolved
        from the cluster for a container with no record) may well have nothing to
        delete: its DEL failure is logged, evented and counted, and its record
        dropped, so a pod never wedges in Terminating over it."""
        first: cni.CniError | None = None
        done: list[AttachmentRecord] = []  # records to drop, in one pass over the directory
        ordered = sorted(records, key=lambda r: r.index, reverse=True)
        # Every network's DEL in one executor round trip (going on past failures).
        calls = [
            self.invoker.delete_calls(r.config, self.target(call, r), r.capability_args, r.result) for r in ordered
        ]
        try:
            failures = await self.invoker.delete_each(calls)
        except cni.CniError as unavailable:  # no executor: every DEL failed alike
            failures = [unavailable] * len(ordered)
        for record, failure in zip(ordered, failures, strict=True):
            if failure is not None:
                if record.state == "added":
                    TEARDOWN_FAILURES.labels("attached").inc()
                    log.warning(
                        "delegate DEL failed; record kept for the retry",
                        network=record.network_name,
                        ifname=record.ifname,
                        error=str(failure),
                    )
                    first = first or failure
                    continue
                TEARDOWN_FAILURES.labels("unconfirmed").inc()
                log.warning(
                    "delegate DEL failed for an attachment that never completed ADD; not retried",
                    network=record.network_name,
                    ifname=record.ifname,
                    error=str(failure),
                )
                if record.pod_name:
                    pod = PodView(record.pod_namespace, record.pod_name, record.pod_uid, {})
                    self.event(
                        pod,
                        "Warning",
                        "NetworkDeleteFailed",
                        f"DEL of {record.ifname} ({record.network_name}): {failure}",
                    )
            await self.device_files.remove(device_info_file(record.capability_args))
            if record.origin != "upstream":
                done.append(record)
        for container_id in dict.fromkeys(record.container_id for record in done):
            self.records.remove(container_id, *(r.ifname for r in done if r.container_id == container_id))
        if first is not None and fail:
            raise cni.CniError(first.code, f"error deleting container networks: {first.msg}", first.details)

    async def abandon_add(self, call: CniCall, attached: Sequence[AttachmentRecord], reason: str) -> None:
        """After a failed or cancelled ADD: DEL whatever it attached (never raises) and
        mark the container, so the runtime's DEL that follows runs no delegate again."""
        try:
            await self.teardown(call, attached, fail=False)
        except Exception as exc:  # a rollback must not hide the ADD's own failure
            log.error("rollback failed", error=f"{type(exc).__name__}: {exc}")
        try:
            self.records.mark_abandoned(call.container_id, reason)
        except (OSError, cni.CniError) as exc:
            log.warning("cannot mark the container's ADD as rolled back", error=str(exc))

    # --- pod events (best effort, off the hot path) --------------------------------
    def event(self, pod: PodView, type_: str, reason: str, message: str) -> None:
        emit = self.cluster.emit_pod_event(
            pod.namespace, pod.name, pod.uid, type_, reason, message, timeout=self.timeouts.cluster
        )
        self._spawn(emit)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # events are best effort, as upstream's recorder
                log.warning("background call failed", error=str(exc))

        task = asyncio.create_task(guarded())
        self._background.add(task)  # referenced until done
        task.add_done_callback(self._background.discard)

    async def drain_background(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
