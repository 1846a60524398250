"""Dynamic networks, one change applied: under the container's turn, bring one
sandbox of a running pod to its networks annotation (DEL what is no longer
selected, ADD what is new with the first ADD's resolution and naming rules),
then write network-status to list exactly what is attached. The scheduling
(the pod stream, one pass per pod, backoff) is services/gateway/dynamic_networks.py;
the pure diff is services/gateway/dynamic_plan.py."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from services.common import cni
from services.common.errors import NetworkNotFound, PodGone
from services.common.logs import get_logger
from services.common.selection import (
    NETWORK_STATUS_ANNOTATION,
    NETWORKS_ANNOTATION,
    check_namespace_isolation,
    parse_networks_annotation,
)
from services.gateway.add import ips_of
from services.gateway.core import Core, device_info_file
from services.gateway.delegate import with_cni_version
from services.gateway.dynamic_plan import (
    Addition,
    annotation_attachments,
    diff_networks,
    element_network,
    fixed_attachments,
)
from services.gateway.gateway_metrics import DYNAMIC_CHANGES
from services.gateway.invoke import Target
from services.gateway.netconf import MultusNetConf, load_netconf
from services.gateway.network_status import network_statuses
from services.gateway.plan import plan_attachments
from services.gateway.ports import PodView
from services.gateway.records import AttachmentRecord
from services.gateway.request import CniCall, split_cni_args

log = get_logger(__name__)


def netns_exists(path: str) -> bool:
    """Whether the sandbox's netns is still there (a /proc path of another user's
    process may refuse stat to this non-root gateway: that still means it exists)."""
    if not path:
        return False
    try:
        os.stat(path)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Outcome:
    """What one pass over a pod did (for logs, metrics and tests)."""

    result: str  # converged, changed, failed, ignored, deferred
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


class ContainerChange:
    """Applies a pod's networks annotation to one of its sandboxes (the caller holds
    the container's turn)."""

    def __init__(self, core: Core, sandbox_exists: Callable[[str], bool] = netns_exists) -> None:
        self.core = core
        self._sandbox_exists = sandbox_exists

    async def apply(self, pod: PodView, container_id: str) -> Outcome:
        records = await self.core.load_records(container_id)
        if (
            not records
            or not self._sandbox_exists(records[0].netns)
            or any(r.state != "added" and not r.dynamic for r in records)
        ):
            return Outcome("ignored")  # DEL'd meanwhile, sandbox gone, or an ADD rolled back
        netconf = load_netconf(b"", self.core.config.raw, require_network=False)
        anchor = min(records, key=lambda r: r.index)
        pod_ref, extra_args = split_cni_args(anchor.cni_args)
        call = CniCall("ADD", container_id=container_id, netns=anchor.netns, pod=pod_ref, extra_args=extra_args)
        cni_version = str(anchor.config.get("cniVersion") or netconf.cni_version)
        errors: list[str] = []
        added: list[str] = []
        removed: list[str] = []

        # A change a crash or restart interrupted: undo it, then decide afresh.
        interrupted = [r for r in records if r.dynamic and r.state != "added"]
        if interrupted:
            await self.core.teardown(call, interrupted, fail=False)
            records = await self.core.load_records(container_id)

        try:
            elements = parse_networks_annotation(pod.annotations.get(NETWORKS_ANNOTATION, ""), pod.namespace)
            if netconf.namespace_isolation:
                check_namespace_isolation(pod.namespace, elements, netconf.global_namespaces)
        except cni.CniError as err:
            self._event(pod, "Warning", "NetworkChangeFailed", f"cannot apply the networks annotation: {err}")
            return Outcome("failed", errors=(str(err),))
        managed = annotation_attachments(records, fixed_attachments(netconf, pod.namespace))
        others = [r.ifname for r in records if r not in managed]
        changes = diff_networks(elements, managed, others)
        if not changes.empty:
            log.info(
                "dynamic networks: changing a running pod",
                pod=str(pod),
                container_id=container_id,
                remove=[r.ifname for r in changes.remove],
                add=[a.ifname for a in changes.add],
            )
        for record in changes.remove:
            try:
                await self.core.teardown(call, [record], fail=True)
            except cni.CniError as err:
                DYNAMIC_CHANGES.labels("remove", "failed").inc()
                errors.append(str(err))
                message = f"cannot remove {record.ifname} ({record.network_name}): {err}"
                self._event(pod, "Warning", "RemoveInterfaceFailed", message)
                continue
            DYNAMIC_CHANGES.labels("remove", "ok").inc()
            removed.append(record.ifname)
            self._event(pod, "Normal", "RemovedInterface", f"Remove {record.ifname} from {record.network_name}")
        next_index = max((r.index for r in records), default=-1) + 1
        for addition in changes.add:
            try:
                await self._check_free(container_id, addition.ifname, element_network(addition.element))
                record = await self._attach(call, netconf, cni_version, pod, addition, next_index)
            except cni.CniError as err:
                DYNAMIC_CHANGES.labels("add", "failed").inc()
                errors.append(str(err))
                reason = "NoNetworkFound" if isinstance(err, NetworkNotFound) else "AddInterfaceFailed"
                self._event(
                    pod,
                    "Warning",
                    reason,
                    f"cannot add {addition.ifname} ({element_network(addition.element)}): {err};"
                    " the pod's other interfaces are unchanged",
                )
                continue
            next_index += 1
            DYNAMIC_CHANGES.labels("add", "ok").inc()
            added.append(record.ifname)
            ips = " ".join(ips_of(record.result))
            self._event(pod, "Normal", "AddedInterface", f"Add {record.ifname} [{ips}] from {record.network_name}")

        status_error = await self._write_status(pod, container_id, netconf)
        if status_error:
            errors.append(status_error)
        if errors:
            return Outcome("failed", tuple(added), tuple(removed), tuple(errors))
        return Outcome("changed" if added or removed else "converged", tuple(added), tuple(removed))

    async def _check_free(self, container_id: str, ifname: str, network: str) -> None:
        """An interface name the pod already uses is refused before any plugin runs: the
        rollback of a failed ADD would DEL that name, i.e. the interface already there."""
        taken = {r.ifname: r.network_name for r in await self.core.load_records(container_id)}
        if ifname in taken:
            raise cni.CniError(
                cni.INVALID_CONFIG,
                f"duplicate interface name {ifname!r}",
                f"networks {taken[ifname]!r} and {network!r} both use it; name one with '@<ifname>'",
            )

    async def _attach(
        self, call: CniCall, netconf: MultusNetConf, cni_version: str, pod: PodView, addition: Addition, index: int
    ) -> AttachmentRecord:
        """ADD one element into the running pod (the same resolution, validation and
        naming rules as its first ADD); on failure only this element is rolled back."""
        element = addition.element
        if element.default_route is not None:
            raise cni.CniError(cni.UNSUPPORTED_FIELD, "default-route cannot be changed on a running pod")
        delegate = await self.core.resolver.nad_delegate(element, netconf, pod, None)
        delegate = with_cni_version(replace(delegate, ifname_request=addition.ifname), cni_version)
        (att,) = plan_attachments(
            [delegate],
            runtime_ifname=addition.ifname,
            pod=call.pod,
            runtime_config={},
            extra_args=call.extra_args,
            first_index=index,
        )
        record = replace(
            self.core.record(replace(call, ifname=att.ifname), att, hotplug=True),
            dynamic=True,
            ifname_requested=bool(element.interface),
        )
        await self.core.save(record)
        try:
            target = Target(call.container_id, call.netns, att.ifname, att.add_args)
            result = await self.core.invoker.add(delegate.config, target, att.capability_args)
        except cni.CniError as err:
            await self.core.teardown(call, [record], fail=False)
            raise cni.CniError(err.code, f"error adding interface {att.ifname!r}: {err.msg}", err.details) from err
        record = replace(record, state="added", result=result)
        await self.core.save(record)
        return record

    async def _write_status(self, pod: PodView, container_id: str, netconf: MultusNetConf) -> str:
        """network-status := exactly what is attached (written only when it differs)."""
        if pod.namespace in netconf.system_namespaces:
            return ""
        records = [r for r in await self.core.load_records(container_id) if r.state == "added"]
        entries: list[dict[str, Any]] = []
        for record in sorted(records, key=lambda r: r.index):
            device_info = await self.core.device_files.load(device_info_file(record.capability_args))
            entries.extend(
                network_statuses(
                    record.result, record.network_name, record.ifname, default=record.master, device_info=device_info
                )
            )
        current: Any = None
        with contextlib.suppress(ValueError):
            current = json.loads(pod.annotations.get(NETWORK_STATUS_ANNOTATION, "null"))
        if current == entries:
            return ""
        try:
            await self.core.cluster.update_network_status(
                pod.namespace,
                pod.name,
                pod.uid,
                json.dumps(entries),
                wait_ms=self.core.config.status_write_wait_ms,
                timeout=self.core.timeouts.status_write + self.core.config.status_write_wait_ms / 1000.0,
            )
        except PodGone:
            return ""
        except cni.CniError as err:
            DYNAMIC_CHANGES.labels("status", "failed").inc()
            return f"error setting the networks status: {err}"
        DYNAMIC_CHANGES.labels("status", "ok").inc()
        return ""

    def _event(self, pod: PodView, type_: str, reason: str, message: str) -> None:
        self.core.event(pod, type_, reason, message)
