"""network-status write-back: the caller waits a bounded time, and a write not
delivered by then stays queued and is retried in the background until it is
delivered or the pod is gone. A newer write for the same pod supersedes a
queued one. A write the caller stopped waiting for is kept on disk
(services/cache/status_journal.py) before the caller hears "queued", and queued
again at the next start, so a cache restart loses none. (Upstream fails the
ADD instead; see docs/cache.md.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.cache import metrics
from services.cache.errors import PodGone, SourceUnavailable
from services.cache.objects import Key
from services.cache.source import PodEvent, StatusWrite
from services.cache.status_journal import StatusJournal
from services.common.backoff import backoff_delay
from services.common.logs import get_logger

log = get_logger(__name__)

DELIVERED = "delivered"
DELIVERED_LATE = "delivered_late"
POD_GONE = "pod_gone"
SUPERSEDED = "superseded"


@dataclass
class _Job:
    write: StatusWrite
    done: asyncio.Future[str]
    queued_at: float = field(default_factory=time.monotonic)
    caller_gave_up: bool = False
    attempts: int = 0


@dataclass(frozen=True)
class WriteResult:
    delivered: bool
    message: str


class StatusWriter:
    def __init__(
        self,
        deliver: Callable[[StatusWrite], Awaitable[None]],
        emit: Callable[[PodEvent], Awaitable[None]],
        *,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
        journal: StatusJournal | None = None,
    ) -> None:
        self._journal = journal
        # Pods written since start and before resume(): newer than anything on disk.
        self._submitted: set[Key] = set()
        self._resumed = journal is None
        self._deliver = deliver
        self._emit = emit
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._jobs: dict[Key, _Job] = {}
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._events: set[asyncio.Task[None]] = set()

    def _queue(self, write: StatusWrite) -> _Job:
        job = _Job(write, asyncio.get_running_loop().create_future())
        previous = self._jobs.get(write.key)
        self._jobs[write.key] = job
        if previous is not None and not previous.done.done():
            previous.done.set_result(SUPERSEDED)
        if write.key not in self._workers:
            self._workers[write.key] = asyncio.create_task(self._work(write.key))
        metrics.STATUS_QUEUED.set(len(self._jobs))
        return job

    async def resume(self) -> int:
        """Queue again the writes a previous run kept on disk; returns how many."""
        if self._journal is None:
            return 0
        writes = await asyncio.to_thread(self._journal.load)
        for write in writes:
            if write.key not in self._submitted:  # a write submitted since start is newer
                self._queue(write).caller_gave_up = True
        self._resumed = True
        self._submitted.clear()
        if writes:
            log.info("queued network-status writes resumed", count=len(writes))
        return len(writes)

    async def submit(self, write: StatusWrite, wait: float) -> WriteResult:
        """Queue a write and wait up to `wait` seconds for its delivery."""
        if not self._resumed:
            self._submitted.add(write.key)
        job = self._queue(write)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(job.done), wait)
        except TimeoutError:
            job.caller_gave_up = True
            if self._journal is not None and self._jobs.get(write.key) is job:
                try:
                    await asyncio.to_thread(self._journal.save, write)
                except (OSError, ValueError) as exc:
                    # The caller must not believe in a write a restart would lose: fail it.
                    log.error("cannot keep a queued network-status write on disk", error=str(exc))
                    return WriteResult(False, f"not written within {wait:.1f}s and not kept: {exc}")
                if job.done.done():  # delivered while the file was being written
                    await asyncio.to_thread(self._journal.remove, write.key)
            return WriteResult(False, f"not written within {wait:.1f}s; queued for background retry")
        if outcome == POD_GONE:
            return WriteResult(False, f"pod {write.namespace}/{write.name} is gone; network-status not written")
        if outcome == SUPERSEDED:
            return WriteResult(False, "superseded by a newer network-status for the same pod")
        return WriteResult(True, "written")

    async def _work(self, key: Key) -> None:
        try:
            while (job := self._jobs.get(key)) is not None:
                job.attempts += 1
                try:
                    await self._deliver(job.write)
                except PodGone as exc:
                    self._finish(key, job, POD_GONE)
                    log.info("network-status dropped: pod gone", pod=f"{key[0]}/{key[1]}", reason=str(exc))
                except SourceUnavailable as exc:
                    metrics.STATUS_WRITES.labels("retried").inc()
                    delay = backoff_delay(job.attempts, self._backoff_base, self._backoff_cap)
                    log.warning(
                        "network-status write failed; retrying",
                        pod=f"{key[0]}/{key[1]}",
                        attempt=job.attempts,
                        retry_in=round(delay, 2),
                        error=str(exc),
                    )
                    await asyncio.sleep(delay)
                except Exception:
                    # An unexpected failure must not kill the worker silently: log and retry.
                    log.exception("network-status write crashed; retrying", pod=f"{key[0]}/{key[1]}")
                    await asyncio.sleep(backoff_delay(job.attempts, self._backoff_base, self._backoff_cap))
                else:
                    self._finish(key, job, DELIVERED_LATE if job.caller_gave_up else DELIVERED)
        finally:
            self._workers.pop(key, None)

    def _finish(self, key: Key, job: _Job, outcome: str) -> None:
        if self._jobs.get(key) is job:
            del self._jobs[key]
            if self._journal is not None and job.caller_gave_up:
                self._forget(key)
        metrics.STATUS_QUEUED.set(len(self._jobs))
        metrics.STATUS_WRITES.labels(outcome).inc()
        if not job.done.done():
            job.done.set_result(outcome)
        if outcome == DELIVERED_LATE:
            took = time.monotonic() - job.queued_at
            log.info("network-status delivered late", pod=f"{key[0]}/{key[1]}", attempts=job.attempts, seconds=took)
            event = PodEvent(
                key[0],
                key[1],
                job.write.uid,
                "Normal",
                "NetworkStatusUpdated",
                f"network-status written after {job.attempts} attempts ({took:.1f}s); the API server was unavailable",
            )
            task = asyncio.create_task(self._emit_quietly(event))
            self._events.add(task)  # a reference until it has run
            task.add_done_callback(self._events.discard)

    def _forget(self, key: Key) -> None:
        async def remove() -> None:
            if self._journal is not None and key not in self._jobs:  # not re-queued meanwhile
                await asyncio.to_thread(self._journal.remove, key)

        task = asyncio.create_task(remove())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _emit_quietly(self, event: PodEvent) -> None:
        try:
            await self._emit(event)
        except Exception as exc:
            log.warning("cannot emit pod event", reason=event.reason, error=str(exc))

    async def stop(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._jobs:
            log.warning("network-status writes not delivered at shutdown", pods=[f"{k[0]}/{k[1]}" for k in self._jobs])
