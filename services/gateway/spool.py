"""Replaying DELs the shim spooled while the gateway was unreachable.

The shim writes `<socketDir>/del-spool/<time_ns>-<containerid>.json`, each holding
exactly the JSON body it would have POSTed to /cni. The gateway replays them
through the normal /cni path (so under the container's turn) in name (= time)
order: removed on success; on failure kept and retried with jittered
exponential backoff (1 s doubling up to `spoolRetryMaxSeconds`). Bounds: a DEL
older than `spoolMaxAgeSeconds`, or beyond the newest `spoolMaxEntries`, is
moved to `del-spool/dead/` (kept for operators, itself bounded, counted in
`multus_gateway_del_spool_pending{...}`/`..._dead`; GC is the backstop for what
it would have freed). The first pass holds the gateway's readiness, for at most
`spoolReadinessHoldSeconds` (server.py); replay goes on in the background.
Files starting with '.' are the shim's partial writes and are ignored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common import cni
from services.common.backoff import backoff_delay
from services.common.config import DaemonConfig
from services.common.logs import get_logger
from services.gateway.gateway_metrics import SPOOL_REPLAYS
from services.gateway.request import CniRequest, decode_request_body

log = get_logger(__name__)

SPOOL_DIRNAME = "del-spool"
DEAD_DIRNAME = "dead"
FIRST_RETRY_SECONDS = 1.0
# How often the directory is looked at when nothing is due (the shim may spool
# while the gateway is briefly unreachable, e.g. mid-restart of its socket).
SCAN_SECONDS = 5.0
# The spool's health condition turns bad when a DEL waits longer than this.
OVERDUE_SECONDS = 600.0


def spool_dir(socket_dir: str) -> Path:
    return Path(socket_dir) / SPOOL_DIRNAME


def spooled_files(directory: Path) -> list[Path]:
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    return sorted(p for p in entries if p.is_file() and not p.name.startswith(".") and p.suffix == ".json")


def spooled_at(path: Path) -> float:
    """When the shim spooled it (the name's time_ns), else the file's mtime."""
    stamp, _, _ = path.name.partition("-")
    if stamp.isdigit():
        return int(stamp) / 1e9
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


@dataclass(frozen=True)
class SpoolBounds:
    max_entries: int = 1000
    max_age: float = 86400.0
    retry_max: float = 300.0

    @classmethod
    def from_config(cls, config: DaemonConfig) -> SpoolBounds:
        return cls(config.spool_max_entries, config.spool_max_age_seconds, config.spool_retry_max_seconds)


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpoolCondition:
    """The spool as a health condition: fine unless a DEL was given up or waits too long."""

    pending: int
    dead: int
    oldest_age: float

    @property
    def healthy(self) -> bool:
        return self.dead == 0 and self.oldest_age < OVERDUE_SECONDS

    @property
    def reason(self) -> str:
        if self.dead:
            return f"{self.dead} spooled DEL(s) given up (see {SPOOL_DIRNAME}/{DEAD_DIRNAME}/)"
        if self.oldest_age >= OVERDUE_SECONDS:
            return f"a spooled DEL has waited {self.oldest_age:.0f}s"
        return ""


def spool_condition(directory: Path, now: float | None = None) -> SpoolCondition:
    now = time.time() if now is None else now
    pending = spooled_files(directory)
    dead = spooled_files(directory / DEAD_DIRNAME)
    oldest = max((now - spooled_at(p) for p in pending), default=0.0)
    return SpoolCondition(len(pending), len(dead), max(oldest, 0.0))


class SpoolReplayer:
    """Replays the spool, retrying failures with backoff, within bounds."""

    def __init__(
        self,
        directory: Path,
        handle: Callable[[CniRequest], Awaitable[Any]],
        bounds: SpoolBounds | None = None,
        *,
        clock: Callable[[], float] = time.time,
        first_retry: float = FIRST_RETRY_SECONDS,
    ) -> None:
        self.directory = directory
        self._handle = handle
        self._bounds = bounds or SpoolBounds()
        self._clock = clock
        self._first_retry = first_retry
        self._attempts: dict[str, int] = {}
        self._due: dict[str, float] = {}

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)

    async def replay_due(self) -> ReplayReport:
        """One pass: enforce the bounds, then replay every DEL that is due."""
        report = ReplayReport()
        now = self._clock()
        files = await asyncio.to_thread(spooled_files, self.directory)
        keep = files[-self._bounds.max_entries :]
        for path in files:
            too_old = now - spooled_at(path) > self._bounds.max_age
            if too_old or path not in keep:
                await self._give_up(path, "too old" if too_old else "spool over capacity", report)
        for path in keep:
            if path.name in report.dead or self._due.get(path.name, 0.0) > now:
                continue
            await self._replay(path, report)
        live = {p.name for p in keep}
        for name in [n for n in self._due if n not in live]:  # removed by someone else
            self._due.pop(name, None)
            self._attempts.pop(name, None)
        return report

    async def _replay(self, path: Path, report: ReplayReport) -> None:
        try:
            body = await asyncio.to_thread(path.read_bytes)
            request = decode_request_body(body)
            if request.command != "DEL":
                raise cni.CniError(cni.INVALID_ENV, f"spooled request is {request.command[:16]!r}, not DEL")
            await self._handle(request)
        except FileNotFoundError:
            return  # replayed by an overlapping pass, or removed by an operator
        except (cni.CniError, OSError) as err:
            attempt = self._attempts.get(path.name, 0) + 1
            self._attempts[path.name] = attempt
            delay = backoff_delay(attempt, self._first_retry, self._bounds.retry_max)
            self._due[path.name] = self._clock() + delay
            report.failed[path.name] = str(err)
            SPOOL_REPLAYS.labels("failed").inc()
            log.error(
                "spooled DEL replay failed; retrying later",
                file=path.name,
                attempt=attempt,
                retry_in=round(delay, 1),
                reason=str(err),
            )
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._due.pop(path.name, None)
        self._attempts.pop(path.name, None)
        report.replayed.append(path.name)
        SPOOL_REPLAYS.labels("replayed").inc()
        log.info("spooled DEL replayed", file=path.name)

    async def _give_up(self, path: Path, why: str, report: ReplayReport) -> None:
        """Move a DEL out of the replay queue into dead/ (bounded), for operators to see."""
        dead = self.directory / DEAD_DIRNAME

        def move() -> None:
            dead.mkdir(mode=0o700, exist_ok=True)
            os.replace(path, dead / path.name)
            for old in spooled_files(dead)[: -self._bounds.max_entries]:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

        try:
            await asyncio.to_thread(move)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot move a spooled DEL to dead/", file=path.name, error=str(exc))
            return
        self._due.pop(path.name, None)
        self._attempts.pop(path.name, None)
        report.dead.append(path.name)
        SPOOL_REPLAYS.labels("given_up").inc()
        log.error("spooled DEL given up; GC frees what it held", file=path.name, reason=why)

    async def run_forever(self) -> None:
        """Replay in the background: whenever a retry is due, and every SCAN_SECONDS."""
        while True:
            due = self.next_due()
            wait = SCAN_SECONDS if due is None else min(SCAN_SECONDS, max(due - self._clock(), 0.05))
            await asyncio.sleep(wait)
            try:
                await self.replay_due()
            except Exception as exc:  # the loop must survive anything a pass throws
                log.error("DEL spool pass failed", error=f"{type(exc).__name__}: {exc}")


async def replay_spool(directory: Path, handle: Callable[[CniRequest], Awaitable[Any]]) -> ReplayReport:
    """One pass over the spool with default bounds (tests, tools)."""
    return await SpoolReplayer(directory, handle).replay_due()
