"""Replaying DELs the shim spooled while the gateway was unreachable.

The shim writes `<socketDir>/del-spool/<time_ns>-<containerid>.json`, each holding
exactly the JSON body it would have POSTed to /cni. Before the gateway reports
ready, each file is replayed through the normal /cni path in name (= time)
order: removed on success, kept (with the reason logged and counted) on failure.
Files starting with '.' are the shim's partial writes and are ignored."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common import cni
from services.common.logs import get_logger
from services.gateway.gateway_metrics import SPOOL_REPLAYS
from services.gateway.request import CniRequest, decode_request_body

log = get_logger(__name__)

SPOOL_DIRNAME = "del-spool"


def spool_dir(socket_dir: str) -> Path:
    return Path(socket_dir) / SPOOL_DIRNAME


def spooled_files(directory: Path) -> list[Path]:
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    return sorted(p for p in entries if p.is_file() and not p.name.startswith(".") and p.suffix == ".json")


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def replay_spool(directory: Path, handle: Callable[[CniRequest], Awaitable[Any]]) -> ReplayReport:
    report = ReplayReport()
    for path in await asyncio.to_thread(spooled_files, directory):
        try:
            body = await asyncio.to_thread(path.read_bytes)
            request = decode_request_body(body)
            if request.command != "DEL":
                raise cni.CniError(cni.INVALID_ENV, f"spooled request is {request.command!r}, not DEL")
            await handle(request)
        except (cni.CniError, OSError) as err:
            reason = str(err)
            report.failed[path.name] = reason
            SPOOL_REPLAYS.labels("failed").inc()
            log.error("spooled DEL replay failed; kept for the next start", file=path.name, reason=reason)
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        report.replayed.append(path.name)
        SPOOL_REPLAYS.labels("replayed").inc()
        log.info("spooled DEL replayed", file=path.name)
    return report
