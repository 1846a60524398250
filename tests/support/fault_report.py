"""Figures the fault and fuzz suites measure (inputs tried per fuzz target,
recovery time per killed service, slowest call against its deadline, log
lines scanned), printed at the end of the run and written to
build/fault-report.json (docs/reliability.md quotes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.services import REPO

FIGURES: dict[str, dict[str, Any]] = {}
REPORT = REPO / "build" / "fault-report.json"


def record(section: str, **figures: Any) -> None:
    FIGURES.setdefault(section, {}).update(figures)


def add(section: str, key: str, amount: float) -> None:
    bucket = FIGURES.setdefault(section, {})
    bucket[key] = bucket.get(key, 0) + amount


def write(path: Path = REPORT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


def lines() -> list[str]:
    out = []
    for section in sorted(FIGURES):
        figures = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(FIGURES[section].items()))
        out.append(f"  {section}: {figures}")
    return out


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
