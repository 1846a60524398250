"""Rendering for people and for scripts: kubectl-like tables (upper-case
headers, columns padded, three spaces apart), durations as kubectl prints
ages, and the same document as JSON or YAML. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h).upper() for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """kubectl's age style: 45s, 12m, 3h20m, 2d4h; '-' for unknown."""
    if seconds is None:
        return "-"
    total = int(max(seconds, 0))
    if total < 120:
        return f"{total}s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 3600:
        return f"{minutes}m"
    if total < 86400:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest and hours < 10 else f"{hours}h"
    rest = hours % 24
    return f"{days}d{rest}h" if rest and days < 10 else f"{days}d"


def relative(seconds: float | None) -> str:
    """A signed span: 'in 5m' for the future, '5m ago' for the past."""
    if seconds is None:
        return "-"
    return f"in {duration(seconds)}" if seconds >= 0 else f"{duration(-seconds)} ago"


def iso(unix: float | None) -> str | None:
    """RFC 3339 UTC for JSON/YAML; None when unknown (0)."""
    if not unix:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def yes(value: bool) -> str:
    return "yes" if value else "no"


def short_id(container_id: str) -> str:
    return container_id[:12]


def dump(document: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=False)
    if fmt == "yaml":
        return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False)).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}")


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())
