"""Dynamic networks: keep each running pod's interfaces equal to its
`k8s.v1.cni.cncf.io/networks` annotation (daemon config `dynamicNetworks`).

The cache streams this node's pod changes (services/cache/pod_stream.py); for
a pod this gateway attached (it holds the pod's attachment records and netns
path) a pass, under the container's turn like ADD/DEL/CHECK/hot-plug, diffs
the annotation against the records (services/gateway/dynamic_plan.py), DELs
what is no longer selected, ADDs what is new with the same resolution and
naming rules as the first ADD, and rewrites network-status to list exactly
what is attached. Level-triggered: a pass reads the pod's latest state, so a
missed, repeated or coalesced event changes nothing, and a reconnect (either
side restarted) passes over every pod again.

A failure never touches the interfaces already there: the failed element is
rolled back alone, the pod gets a Warning event, the metric counts it, and
the pod is retried on its next annotation change or after a jittered backoff,
never in a loop. Pods being deleted, and pods whose sandbox (netns) is gone,
are left alone: their DEL is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from services.common import cni
from services.common.backoff import backoff_delay
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
from services.gateway.gateway_metrics import DYNAMIC_CHANGES, DYNAMIC_RECONCILES, DYNAMIC_STREAM_RECONNECTS
from services.gateway.invoke import Target
from services.gateway.netconf import MultusNetConf, load_netconf
from services.gateway.network_status import network_statuses
from services.gateway.ownership import run_to_completion
from services.gateway.plan import plan_attachments
from services.gateway.ports import PodView
from services.gateway.records import AttachmentRecord
from services.gateway.request import CniCall, split_cni_args

log = get_logger(__name__)

Key = tuple[str, str]
# The ownership turn a pass takes: not ADD or DEL, so it supersedes nothing and waits its turn.
TURN = "RECONCILE"
STREAM_RETRY_BASE, STREAM_RETRY_MAX = 0.5, 30.0
STOP_GRACE = 30.0


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


@dataclass
class _Failure:
    networks: str  # the annotation text that failed
    attempts: int
    not_before: float


class DynamicNetworks:
    """One per gateway: follows the cache's pod stream and reconciles pods."""

    def __init__(
        self,
        core: Core,
        *,
        retry_base: float | None = None,
        retry_max: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sandbox_exists: Callable[[str], bool] = netns_exists,
    ) -> None:
        self.core = core
        self._sandbox_exists = sandbox_exists
        self._retry_base = core.config.dynamic_networks_retry_seconds if retry_base is None else retry_base
        self._retry_max = core.config.dynamic_networks_retry_max_seconds if retry_max is None else retry_max
        self._clock = clock
        self._latest: dict[Key, PodView] = {}
        self._dirty: set[Key] = set()
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._failures: dict[Key, _Failure] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._converged: dict[Key, str] = {}  # pod -> networks text a pass found nothing to do for
        self._snapshot: set[Key] = set()  # pods the current stream's snapshot named so far

    # --- the stream --------------------------------------------------------------
    async def follow(self, stream: Callable[[], AsyncIterator[tuple[str, PodView]]]) -> None:
        """Read the pod stream forever, reopening it (with backoff) whenever it ends."""
        attempt = 0
        while True:
            self._snapshot = set()
            try:
                async for kind, pod in stream():
                    attempt = 0
                    self.observe(kind, pod)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cache restarting: reopen, re-read everything
                log.info("pod stream from the cache ended; reopening", error=f"{type(exc).__name__}: {exc}")
            attempt += 1
            DYNAMIC_STREAM_RECONNECTS.inc()
            await asyncio.sleep(backoff_delay(attempt, STREAM_RETRY_BASE, STREAM_RETRY_MAX))

    def observe(self, kind: str, pod: PodView) -> None:
        key = (pod.namespace, pod.name)
        if kind == "SNAPSHOT":
            self._snapshot.add(key)
            self._converged.pop(key, None)  # a (re)connect: look at every pod again
        if kind == "SYNCED":
            # Pods deleted while the stream was down never get a DELETED: drop them here.
            for gone in [k for k in self._latest if k not in self._snapshot]:
                self._latest.pop(gone, None)
                self._forget(gone)
            return
        if kind == "DELETED":
            self._latest.pop(key, None)
            self._forget(key)
            return
        self._latest[key] = pod
        failure = self._failures.get(key)
        if failure is not None and failure.networks != pod.annotations.get(NETWORKS_ANNOTATION, ""):
            self._forget(key)  # a new edit: retry now, with a fresh backoff
        self.kick(key)

    def _forget(self, key: Key) -> None:
        self._failures.pop(key, None)
        self._converged.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def kick(self, key: Key) -> None:
        """Reconcile the pod (its latest state) soon; one pass per pod at a time."""
        self._dirty.add(key)
        if key not in self._workers:
            task = asyncio.create_task(self._work(key))
            self._workers[key] = task

    async def _work(self, key: Key) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                pod = self._latest.get(key)
                if pod is None:
                    continue
                try:
                    await self.reconcile(pod)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug must not end the follower
                    log.error("dynamic networks pass failed", pod=str(pod), error=f"{type(exc).__name__}: {exc}")
        finally:
            self._workers.pop(key, None)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Let passes in flight finish (bounded), then cancel what is left."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._dirty.clear()
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no pass runs or is due (tests)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    # --- one pass ----------------------------------------------------------------
    async def reconcile(self, pod: PodView) -> Outcome:
        key = (pod.namespace, pod.name)
        networks = pod.annotations.get(NETWORKS_ANNOTATION, "")
        if pod.deleting:
            return self._count(Outcome("ignored"))
        if self._converged.get(key) == networks:
            return self._count(Outcome("converged"))
        failure = self._failures.get(key)
        if failure is not None and failure.networks == networks and self._clock() < failure.not_before:
            return self._count(Outcome("deferred"))
        containers = await self._containers_of(pod)
        if not containers:
            return self._count(Outcome("ignored"))
        outcomes = []
        for container_id in containers:
            async with self.core.owners.turn(container_id, TURN):
                # Under the turn: what an ADD or DEL that ran meanwhile left is what counts.
                outcomes.append(await run_to_completion(self._reconcile_container(pod, container_id)))
        outcome = Outcome(
            "failed"
            if any(o.result == "failed" for o in outcomes)
            else "changed"
            if any(o.result == "changed" for o in outcomes)
            else outcomes[0].result,
            tuple(a for o in outcomes for a in o.added),
            tuple(r for o in outcomes for r in o.removed),
            tuple(e for o in outcomes for e in o.errors),
        )
        if outcome.result == "failed":
            self._failed(key, networks)
        elif outcome.result in ("converged", "changed"):
            self._failures.pop(key, None)
            if outcome.result == "converged":
                self._converged[key] = networks
        return self._count(outcome)

    def _count(self, outcome: Outcome) -> Outcome:
        DYNAMIC_RECONCILES.labels(outcome.result).inc()
        return outcome

    def _failed(self, key: Key, networks: str) -> None:
        previous = self._failures.get(key)
        attempts = previous.attempts + 1 if previous is not None and previous.networks == networks else 1
        delay = backoff_delay(attempts, self._retry_base, self._retry_max)
        self._failures[key] = _Failure(networks, attempts, self._clock() + delay)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._retry, key)
        log.info("dynamic networks change failed; retried later", pod=f"{key[0]}/{key[1]}", retry_in=round(delay, 1))

    def _retry(self, key: Key) -> None:
        self._timers.pop(key, None)
        if key in self._latest:
            self.kick(key)

    async def _containers_of(self, pod: PodView) -> list[str]:
        """The pod's sandboxes this gateway attached whose netns still exists."""

        def scan() -> list[str]:
            found = []
            for container_id in self.core.records.container_ids():
                records = self.core.records.load(container_id)
                if not records or records[0].origin != "gateway":
                    continue
                first = records[0]
                same_pod = (first.pod_namespace, first.pod_name) == (pod.namespace, pod.name)
                same_uid = not pod.uid or not first.pod_uid or first.pod_uid == pod.uid
                if same_pod and same_uid and self._sandbox_exists(first.netns):
                    found.append(container_id)
            return found

        return await asyncio.to_thread(scan)

    async def _reconcile_container(self, pod: PodView, container_id: str) -> Outcome:
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
