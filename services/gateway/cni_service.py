"""The CNI verbs of the gateway: ADD, DEL, CHECK, STATUS, GC and the hot-plug
delegate calls. This is where plan (pure), execute (executor) and report
(network-status, events) meet; no HTTP or gRPC here."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common import cni
from services.common.config import DaemonConfig
from services.common.logs import get_logger
from services.gateway.default_route import reports_interface, rewrite_default_routes
from services.gateway.delegate import Delegate, load_delegate, with_cni_version
from services.gateway.device_info import CNI_DEVICE_INFO_CAPABILITY, DeviceInfoFiles, with_device_info_file
from services.gateway.invoke import NetworkInvoker, Target
from services.gateway.netconf import MultusNetConf, load_netconf
from services.gateway.network_status import network_statuses
from services.gateway.plan import PlannedAttachment, delegate_cni_args, plan_attachments
from services.gateway.ports import Cluster, RouteEditor
from services.gateway.records import AttachmentRecord, RecordStore
from services.gateway.request import CniCall, InterfaceAttributes
from services.gateway.resolver import NetworkNotFound, NetworkResolver
from services.gateway.result import to_current
from services.gateway.selection import CONFIG_SOURCE_ANNOTATION, NetworkSelectionElement
from services.gateway.upstream_cache import forget_upstream_attachments, read_upstream_attachments

log = get_logger(__name__)

DelegateObserver = Callable[[str, str, float, bool], None]  # (plugin type, command, seconds, ok)


@dataclass(frozen=True)
class Timeouts:
    cluster: float = 5.0
    delegate: float = 60.0
    status_write: float = 5.0


def _is_static_pod(pod: Any) -> bool:
    source = dict(pod.annotations).get(CONFIG_SOURCE_ANNOTATION)
    return source is not None and source != "api"


def _ips_of(result: Mapping[str, Any] | None) -> list[str]:
    return [str(ip.get("address")) for ip in to_current(result).get("ips", []) if ip.get("address")]


class CniService:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        cluster: Cluster,
        invoker: NetworkInvoker,
        records: RecordStore,
        resolver: NetworkResolver,
        routes: RouteEditor | None = None,
        timeouts: Timeouts | None = None,
        device_files: DeviceInfoFiles | None = None,
    ) -> None:
        self._config = config
        self._cluster = cluster
        self._invoker = invoker
        self._records = records
        self._resolver = resolver
        self._routes = routes
        self._timeouts = timeouts or Timeouts(delegate=config.executor_timeout_seconds + 5.0)
        self._background: set[asyncio.Task[Any]] = set()
        self._device_files = device_files or DeviceInfoFiles(config.device_info_dir)

    # --- helpers ---------------------------------------------------------------
    def netconf(self, call: CniCall, *, require_network: bool = True) -> MultusNetConf:
        return load_netconf(call.config, self._config.raw, require_network=require_network)

    def _check_readiness(self, netconf: MultusNetConf, code: int = cni.TRY_AGAIN_LATER) -> None:
        path = netconf.readiness_indicator_file
        if path and not os.path.exists(path):
            raise cni.CniError(
                code,
                "default network not ready",
                f"still waiting for readinessindicatorfile @ {path}",
            )

    async def _get_pod(self, call: CniCall, *, wait_ms: int | None = None) -> Any:
        assert call.pod is not None
        pod = await self._cluster.get_pod(
            call.pod.namespace,
            call.pod.name,
            "",
            wait_ms=self._config.pod_wait_ms if wait_ms is None else wait_ms,
            timeout=self._timeouts.cluster + (self._config.pod_wait_ms / 1000.0),
        )
        if call.pod.uid and pod.uid and pod.uid != call.pod.uid and not _is_static_pod(pod):
            raise cni.CniError(
                cni.TRY_AGAIN_LATER,
                f"expected pod UID {call.pod.uid!r} but got {pod.uid!r} from the cache",
                f"pod {call.pod}",
            )
        return pod

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Fire-and-forget work off the hot path (events), kept referenced until done."""

        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # events are best effort, as upstream's recorder
                log.warning("background call failed", error=str(exc))

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event(self, pod: Any, type_: str, reason: str, message: str) -> None:
        self._spawn(
            self._cluster.emit_pod_event(
                pod.namespace, pod.name, pod.uid, type_, reason, message, timeout=self._timeouts.cluster
            )
        )

    async def drain_background(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _target(self, call: CniCall, ifname: str, args: str) -> Target:
        return Target(call.container_id, call.netns, ifname, args)

    def _record(self, call: CniCall, att: PlannedAttachment, *, hotplug: bool = False) -> AttachmentRecord:
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
        )

    def _with_device_info_files(self, call: CniCall, planned: Sequence[PlannedAttachment]) -> list[PlannedAttachment]:
        """Attachments with a device get their CNIDeviceInfoFile capability (device-info spec)."""
        return [
            replace(
                att,
                capability_args=with_device_info_file(
                    att.capability_args,
                    att.delegate.device_id,
                    self._device_files.path_for(att.network_name, call.container_id, att.ifname),
                ),
            )
            for att in planned
        ]

    def _plan(self, call: CniCall, netconf: MultusNetConf, delegates: Sequence[Delegate]) -> list[PlannedAttachment]:
        planned = plan_attachments(
            delegates,
            runtime_ifname=call.ifname,
            pod=call.pod,
            runtime_config=netconf.runtime_config,
            extra_args=call.extra_args,
        )
        return self._with_device_info_files(call, planned)

    async def _save(self, *records: AttachmentRecord) -> None:
        if records:
            await asyncio.to_thread(self._records.save, *records)

    # --- ADD -------------------------------------------------------------------
    async def add(self, call: CniCall) -> dict[str, Any]:
        netconf = self.netconf(call)
        self._check_readiness(netconf)
        pod = await self._get_pod(call)
        try:
            resolution = await self._resolver.resolve(netconf, pod)
        except NetworkNotFound as err:
            self._event(pod, "Warning", "NoNetworkFound", err.details or err.msg)
            raise
        planned = self._plan(call, netconf, resolution.delegates)
        existing = await asyncio.to_thread(self._records.load, call.container_id)
        if existing:
            # A repeated ADD for a container: undo the earlier attachments first so
            # nothing leaks (the runtime only repeats ADD after a failure on its side).
            await self._delete_records(call, existing)
        done = await self._attach_all(call, planned)
        results = [r.result for r in done]
        device_infos = [await self._device_files.load(_device_info_file(a.capability_args)) for a in planned]
        entries = self._statuses(planned, results, device_infos)
        if pod.namespace not in netconf.system_namespaces:
            await self._write_status(call, pod, entries, rollback=done)
        for att, result in zip(planned, results, strict=True):
            if result is not None and (to_current(result).get("interfaces") or to_current(result).get("ips")):
                ips = " ".join(_ips_of(result))
                suffix = f" from {att.network_name}" if att.network_name else ""
                self._event(pod, "Normal", "AddedInterface", f"Add {att.ifname} [{ips}]{suffix}")
        master = next((r for a, r in zip(planned, results, strict=True) if a.delegate.master), None)
        if master is None:
            master = results[0] if results else None
        return to_current(master)

    async def _attach_all(self, call: CniCall, planned: Sequence[PlannedAttachment]) -> list[AttachmentRecord]:
        """ADD each delegate in order; on a failure DEL from the failing delegate itself
        (it may have allocated IPAM before failing) back to the first, then raise the
        failure with its own CNI code."""
        done: list[AttachmentRecord] = []
        # The "added" record of one attachment is written together with the
        # "pending" record of the next (one thread hop instead of two): only the
        # pending record has to be on disk before its delegate runs.
        unsaved: list[AttachmentRecord] = []
        for att in planned:
            record = self._record(call, att)
            await self._save(*unsaved, record)
            unsaved = []
            await self._device_files.prepare(
                _device_info_file(att.capability_args), att.delegate.resource_name, att.delegate.device_id
            )
            try:
                result = await self._invoker.add(
                    att.delegate.config, self._target(call, att.ifname, att.add_args), att.capability_args
                )
                result = await self._apply_default_route(call, att, result)
            except cni.CniError as err:
                log.warning(
                    "delegate ADD failed, rolling back", network=att.network_name, ifname=att.ifname, error=str(err)
                )
                await self._delete_records(call, [*done, record], reason="rollback")
                raise cni.CniError(
                    err.code,
                    f"error adding container to network {att.network_name!r}: {err.msg}",
                    err.details,
                ) from err
            record = replace(record, state="added", result=result)
            unsaved.append(record)
            done.append(record)
        await self._save(*unsaved)
        return done

    async def _apply_default_route(
        self, call: CniCall, att: PlannedAttachment, result: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if not (att.drop_default_v4 or att.drop_default_v6 or att.default_gateways):
            return result
        if not reports_interface(result):
            return result  # as upstream: no interface or address reported, no routes to move
        if self._routes is None:
            raise cni.CniError(cni.UNSUPPORTED_FIELD, "default-route is not available: no route editor configured")
        await self._routes.replace_default_routes(
            call.netns, att.ifname, att.drop_default_v4, att.drop_default_v6, att.default_gateways
        )
        return rewrite_default_routes(
            result, drop_v4=att.drop_default_v4, drop_v6=att.drop_default_v6, gateways=att.default_gateways
        )

    def _statuses(
        self,
        planned: Sequence[PlannedAttachment],
        results: Sequence[Mapping[str, Any] | None],
        device_infos: Sequence[Mapping[str, Any] | None],
    ) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for att, result, device_info in zip(planned, results, device_infos, strict=True):
            entries.extend(
                network_statuses(
                    result,
                    att.network_name,
                    att.ifname,
                    default=att.delegate.master,
                    device_info=device_info,
                )
            )
        return entries

    async def _write_status(
        self, call: CniCall, pod: Any, entries: list[dict[str, Any]], *, rollback: Sequence[AttachmentRecord] = ()
    ) -> None:
        try:
            await self._cluster.update_network_status(
                pod.namespace,
                pod.name,
                pod.uid,
                json.dumps(entries),
                wait_ms=self._config.status_write_wait_ms,
                timeout=self._timeouts.status_write + self._config.status_write_wait_ms / 1000.0,
            )
        except cni.CniError as err:
            if "not found" in str(err).lower():
                log.info("pod gone before its network-status was written", error=str(err))
                return
            if rollback:
                await self._delete_records(call, rollback, reason="rollback")
            raise cni.CniError(err.code, "error setting the networks status", str(err)) from err

    # --- DEL -------------------------------------------------------------------
    async def delete(self, call: CniCall) -> None:
        records = await asyncio.to_thread(self._records.load, call.container_id)
        upstream = False
        if not records:
            records = await self._upstream_records(call, self._cni_dir(call), self._cni_version(call))
            upstream = bool(records)
        if not records:
            records = await self._records_from_cluster(call)
        if not records:
            log.info("DEL: nothing recorded for container, nothing to do")
            return
        await self._delete_records(call, records, reason="del")
        if upstream:
            await asyncio.to_thread(forget_upstream_attachments, self._cni_dir(call), records)

    async def _upstream_records(self, call: CniCall, cni_dir: str, cni_version: str) -> list[AttachmentRecord]:
        return await asyncio.to_thread(
            read_upstream_attachments,
            cni_dir,
            call.container_id,
            call.netns,
            call.ifname,
            cni_version=cni_version,
            cni_args=delegate_cni_args(call.pod, call.extra_args),
        )

    def _cni_version(self, call: CniCall) -> str:
        try:
            return self.netconf(call, require_network=False).cni_version
        except cni.CniError:
            return ""

    def _cni_dir(self, call: CniCall) -> str:
        try:
            return self.netconf(call, require_network=False).cni_dir
        except cni.CniError:
            return self._config.cni_dir

    async def _records_from_cluster(self, call: CniCall) -> list[AttachmentRecord]:
        """No record and no upstream cache: as upstream, resolve the pod's networks again
        (when the pod and config are at hand) so DEL still reaches the delegates."""
        if call.pod is None or not call.pod.name:
            return []
        try:
            netconf = self.netconf(call)
            pod = await self._get_pod(call, wait_ms=0)
            resolution = await self._resolver.resolve(netconf, pod)
            planned = self._plan(call, netconf, resolution.delegates)
        except cni.CniError as err:
            log.info("DEL: no record and the pod's networks cannot be resolved", error=str(err))
            return []
        return [self._record(call, a) for a in planned]

    async def _delete_records(self, call: CniCall, records: Sequence[AttachmentRecord], *, reason: str = "del") -> None:
        """DEL in reverse order, keep going on errors, always drop the records; raise the first error."""
        first: cni.CniError | None = None
        for record in sorted(records, key=lambda r: r.index, reverse=True):
            target = Target(call.container_id, call.netns or record.netns, record.ifname, record.cni_args)
            try:
                await self._invoker.delete(record.config, target, record.capability_args, record.result)
            except cni.CniError as err:
                log.warning("delegate DEL failed", network=record.network_name, ifname=record.ifname, error=str(err))
                first = first or err
            await self._device_files.remove(_device_info_file(record.capability_args))
            if record.origin != "upstream":
                await asyncio.to_thread(self._records.remove, record.container_id, record.ifname)
        if first is not None and reason == "del":
            raise cni.CniError(first.code, f"error deleting container networks: {first.msg}", first.details)

    # --- CHECK -----------------------------------------------------------------
    async def check(self, call: CniCall) -> None:
        netconf = self.netconf(call, require_network=False)
        self._check_readiness(netconf)
        records = await asyncio.to_thread(self._records.load, call.container_id)
        if not records:
            records = await self._upstream_records(call, netconf.cni_dir, netconf.cni_version)
        if not records:
            raise cni.CniError(cni.UNKNOWN_CONTAINER, f"no attachments recorded for container {call.container_id}")
        for record in records:
            if record.state != "added":
                raise cni.CniError(cni.UNKNOWN_CONTAINER, f"attachment {record.ifname} never completed ADD")
            target = Target(call.container_id, call.netns or record.netns, record.ifname, record.cni_args)
            try:
                await self._invoker.check(record.config, target, record.capability_args, record.result)
            except cni.CniError as err:
                raise cni.CniError(
                    err.code,
                    f"CHECK failed for network {record.network_name!r} ({record.ifname}): {err.msg}",
                    err.details,
                ) from err

    # --- STATUS / GC -----------------------------------------------------------
    async def status(self, call: CniCall) -> None:
        netconf = self.netconf(call)
        self._check_readiness(netconf, code=cni.PLUGIN_NOT_AVAILABLE)
        delegates = await self._resolver.cluster_delegates(netconf, None)
        cluster = with_cni_version(delegates[0], netconf.cni_version)
        await self._invoker.status(cluster.config)

    async def gc(self, call: CniCall) -> None:
        """Free what the runtime no longer knows: every recorded attachment of a container
        absent from `cni.dev/valid-attachments` is deleted; then the networks' plugins get
        GC with the attachments still valid."""
        netconf = self.netconf(call)
        valid_ids = _valid_container_ids(netconf.raw)
        stale_cids = [cid for cid in await asyncio.to_thread(self._records.container_ids) if cid not in valid_ids]
        first: cni.CniError | None = None
        for cid in stale_cids:
            records = await asyncio.to_thread(self._records.load, cid)
            gc_call = replace(call, container_id=cid, netns="", ifname=records[0].ifname if records else "eth0")
            try:
                await self._delete_records(gc_call, records, reason="del")
            except cni.CniError as err:
                first = first or err
        remaining = await asyncio.to_thread(self._records.all)
        networks: dict[str, tuple[Mapping[str, Any], list[dict[str, str]]]] = {}
        for record in remaining:
            key = json.dumps(record.config, sort_keys=True)
            networks.setdefault(key, (record.config, []))[1].append(
                {"containerID": record.container_id, "ifname": record.ifname}
            )
        try:
            cluster = with_cni_version((await self._resolver.cluster_delegates(netconf, None))[0], netconf.cni_version)
            networks.setdefault(json.dumps(cluster.config, sort_keys=True), (cluster.config, []))
        except cni.CniError as err:
            log.info("GC: cluster network not resolvable", error=str(err))
        for config, valid in networks.values():
            try:
                await self._invoker.gc(config, valid)
            except cni.CniError as err:
                first = first or err
        if first is not None:
            raise first

    # --- hot-plug (POST /delegate) ----------------------------------------------
    async def delegate(self, call: CniCall, attributes: InterfaceAttributes | None) -> dict[str, Any] | None:
        netconf = self.netconf(call, require_network=False)
        if call.command == "ADD":
            return await self._hotplug_add(call, netconf, attributes)
        if call.command == "DEL":
            await self._hotplug_del(call)
            return None
        if call.command == "CHECK":
            records = [
                r for r in await asyncio.to_thread(self._records.load, call.container_id) if r.ifname == call.ifname
            ]
            for record in records:
                target = Target(call.container_id, call.netns or record.netns, record.ifname, record.cni_args)
                await self._invoker.check(record.config, target, record.capability_args, record.result)
            if not records:
                delegate = load_delegate(call.config)
                target = Target(
                    call.container_id, call.netns, call.ifname, delegate_cni_args(call.pod, call.extra_args)
                )
                await self._invoker.check(delegate.config, target, {}, None)
            return None
        if call.command == "STATUS":
            await self._invoker.status(load_delegate(call.config).config)
            return None
        raise cni.CniError(cni.INVALID_ENV, f"unsupported delegate command {call.command!r}")

    async def _hotplug_add(
        self, call: CniCall, netconf: MultusNetConf, attributes: InterfaceAttributes | None
    ) -> dict[str, Any]:
        pod = await self._get_pod(call)
        element = None
        if attributes is not None:
            element = NetworkSelectionElement(
                name="", ips=attributes.ips, mac=attributes.mac, cni_args=attributes.cni_args
            )
        delegate = with_cni_version(load_delegate(call.config, element), netconf.cni_version)
        existing = await asyncio.to_thread(self._records.load, call.container_id)
        if any(r.ifname == call.ifname for r in existing):
            raise cni.CniError(cni.INVALID_CONFIG, f"interface {call.ifname!r} is already attached to this container")
        index = max((r.index for r in existing), default=-1) + 1
        delegate = replace(delegate, ifname_request=call.ifname)
        (att,) = plan_attachments(
            [delegate],
            runtime_ifname=call.ifname,
            pod=call.pod,
            runtime_config={},
            extra_args=call.extra_args,
            first_index=index,
        )
        record = self._record(call, att, hotplug=True)
        await self._save(record)
        try:
            result = await self._invoker.add(
                delegate.config, self._target(call, att.ifname, att.add_args), att.capability_args
            )
        except cni.CniError as err:
            await self._delete_records(call, [record], reason="rollback")
            raise cni.CniError(err.code, f"error adding interface {call.ifname!r}: {err.msg}", err.details) from err
        await self._save(replace(record, state="added", result=result))
        if result is not None:
            self._event(pod, "Normal", "AddedInterface", f"Add {att.ifname} [{' '.join(_ips_of(result))}]")
        return to_current(result)

    async def _hotplug_del(self, call: CniCall) -> None:
        records = [r for r in await asyncio.to_thread(self._records.load, call.container_id) if r.ifname == call.ifname]
        if not records:
            delegate = load_delegate(call.config)
            target = Target(call.container_id, call.netns, call.ifname, delegate_cni_args(call.pod, call.extra_args))
            await self._invoker.delete(delegate.config, target, {}, None)
            return
        await self._delete_records(call, records, reason="del")

    # --- listing -----------------------------------------------------------------
    async def attachments(self, container_id: str = "", namespace: str = "", name: str = "") -> list[AttachmentRecord]:
        if container_id:
            records = await asyncio.to_thread(self._records.load, container_id)
        else:
            records = await asyncio.to_thread(self._records.all)
        return [
            r for r in records if (not namespace or r.pod_namespace == namespace) and (not name or r.pod_name == name)
        ]


def _valid_container_ids(conf: Mapping[str, Any]) -> set[str]:
    valid = conf.get("cni.dev/valid-attachments")
    if valid is None:
        raise cni.CniError(cni.INVALID_CONFIG, "GC needs cni.dev/valid-attachments in the config")
    if not isinstance(valid, list):
        raise cni.CniError(cni.INVALID_CONFIG, "cni.dev/valid-attachments must be a list")
    return {str(v.get("containerID")) for v in valid if isinstance(v, dict) and v.get("containerID")}


def _device_info_file(capability_args: Mapping[str, Any]) -> str:
    path = capability_args.get(CNI_DEVICE_INFO_CAPABILITY)
    return path if isinstance(path, str) else ""


def now() -> float:
    return time.time()
