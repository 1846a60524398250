"""`multusctl logs --pod ns/name`: the services' structured log lines about one
pod or container, merged by time, read from each service's log file on the
node (`logDir`, upstream's `logFile` for the gateway, or --log-dir) and its
rotated backups. Lines in the CRI log format (kubelet's /var/log/pods) are
read too. Parsing, filtering and merging are pure."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.config import SERVICES, DaemonConfig
from services.ctl.errors import NOT_FOUND, USAGE, CtlError
from services.ctl.output import table
from services.ctl.result import Result

# Also read: the local supervisor's own log.
LOG_SOURCES = (*SERVICES, "supervisor")
_CRI_PREFIX = re.compile(r"^\S+ (?:stdout|stderr) [FP] (?=\{)")
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHOWN_ELSEWHERE = ("timestamp", "service", "level", "event")


@dataclass(frozen=True)
class LogLine:
    at: datetime
    service: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class LogQuery:
    pod: str = ""  # "namespace/name"
    container_id: str = ""  # a prefix, as crictl takes short IDs
    services: tuple[str, ...] = ()
    since: datetime | None = None


def parse_since(text: str, now: datetime) -> datetime:
    match = _SINCE.match(text.strip())
    if not match:
        raise CtlError(USAGE, f"--since takes a duration like 30s, 10m, 2h or 1d, got {text!r}")
    return now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_line(text: str, service: str) -> LogLine | None:
    """One structured log line (JSON, optionally after a CRI prefix); None for anything else."""
    text = _CRI_PREFIX.sub("", text.strip(), count=1)
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
        at = datetime.fromisoformat(str(obj["timestamp"]))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(obj, dict):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return LogLine(at, str(obj.get("service") or service), obj)


def select(lines: Sequence[LogLine], query: LogQuery) -> list[LogLine]:
    """The lines about the pod (or container), merged by time. A pod's lines include
    those that carry only one of its container IDs (e.g. a DEL without pod args)."""
    containers: set[str] = set()
    if query.pod:
        containers = {
            str(line.fields["container_id"])
            for line in lines
            if line.fields.get("pod") == query.pod and line.fields.get("container_id")
        }
    chosen = []
    for line in lines:
        if query.services and line.service not in query.services:
            continue
        if query.since is not None and line.at < query.since:
            continue
        cid = str(line.fields.get("container_id") or "")
        if query.container_id and not cid.startswith(query.container_id):
            continue
        if query.pod and line.fields.get("pod") != query.pod and cid not in containers:
            continue
        chosen.append(line)
    return sorted(chosen, key=lambda line: line.at)


def rotated(path: str) -> list[str]:
    """A log file and its RotatingFileHandler backups (path.1 is the newest), oldest first."""
    backups = []
    index = 1
    while os.path.exists(f"{path}.{index}"):
        backups.append(f"{path}.{index}")
        index += 1
    return [*reversed(backups), *([path] if os.path.exists(path) else [])]


def log_sources(config: DaemonConfig, log_dir: str = "") -> list[tuple[str, str]]:
    """(service, log file) pairs: --log-dir's <dir>/<service>.log, else the daemon config's."""
    if log_dir:
        return [(s, os.path.join(log_dir, f"{s}.log")) for s in LOG_SOURCES]
    return [(s, path) for s in LOG_SOURCES if (path := config.service_log_file(s))]


def read_lines(sources: Iterable[tuple[str, str]]) -> Iterator[LogLine]:
    for service, path in sources:
        for name in rotated(path):
            try:
                with open(name, encoding="utf-8", errors="replace") as handle:
                    for text in handle:
                        line = parse_line(text, service)
                        if line is not None:
                            yield line
            except OSError:
                continue  # rotated away between listing and opening


def _detail(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def render(lines: Sequence[LogLine]) -> str:
    if not lines:
        return "No log lines found."
    return table(
        ["time", "service", "level", "event", "details"],
        [
            [
                line.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                line.service,
                line.fields.get("level", ""),
                line.fields.get("event", ""),
                " ".join(f"{k}={_detail(v)}" for k, v in line.fields.items() if k not in _SHOWN_ELSEWHERE),
            ]
            for line in lines
        ],
    )


def run(config: DaemonConfig, query: LogQuery, log_dir: str = "") -> Result:
    sources = log_sources(config, log_dir)
    if not sources:
        raise CtlError(USAGE, "no log files to read: set logDir in the daemon config, or pass --log-dir")
    existing = [(s, p) for s, p in sources if rotated(p)]
    if not existing:
        raise CtlError(NOT_FOUND, f"none of the log files exist: {', '.join(p for _, p in sources)}")
    lines = select(list(read_lines(existing)), query)
    return Result({"lines": [{**line.fields, "service": line.service} for line in lines]}, render(lines))
