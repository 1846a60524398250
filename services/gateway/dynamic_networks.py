"""Dynamic networks: keep each running pod's interfaces equal to its
`k8s.v1.cni.cncf.io/networks` annotation (daemon config `dynamicNetworks`).

The cache streams this node's pod changes (services/cache/pod_stream.py); for
a pod this gateway attached (it holds the pod's attachment records and netns
path) a pass, under the container's turn like ADD/DEL/CHECK/hot-plug, applies
the change (services/gateway/dynamic_apply.py): it diffs the annotation
against the records (services/gateway/dynamic_plan.py), DELs
what is no longer selected, ADDs what is new with the same resolution and
naming rules as the first ADD, and rewrites network-status to list exactly
what is attached. Level-triggered: a pass reads the pod's latest state, so a
missed, repeated or coalesced event changes nothing, and a reconnect (either
side restarted) passes over every pod again.

A failure never touches the interfaces already there: the failed element is
rolled back alone, the pod gets a Warning event, the metric counts it, and
the pod is retried on its next annotation change or after a jittered backoff,
never in a loop. Pods being deleted, and pods whose sandbox (netns) is gone,
are left alone: their DEL is on its way. This module schedules the passes
(the stream, one pass per pod at a time, backoff after a failure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.common.backoff import backoff_delay
from services.common.logs import get_logger
from services.common.selection import (
    NETWORKS_ANNOTATION,
)
from services.gateway.core import Core
from services.gateway.dynamic_apply import ContainerChange, Outcome, netns_exists
from services.gateway.gateway_metrics import DYNAMIC_RECONCILES, DYNAMIC_STREAM_RECONNECTS
from services.gateway.ownership import run_to_completion
from services.gateway.ports import PodView

log = get_logger(__name__)

Key = tuple[str, str]
# The ownership turn a pass takes: not ADD or DEL, so it supersedes nothing and waits its turn.
TURN = "RECONCILE"
STREAM_RETRY_BASE, STREAM_RETRY_MAX = 0.5, 30.0
STOP_GRACE = 30.0


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
        self._change = ContainerChange(core, sandbox_exists)
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
                outcomes.append(await run_to_completion(self._change.apply(pod, container_id)))
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
