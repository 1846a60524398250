"""What /proc says about processes, for tests that check nothing outlives its owner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    cmdline: tuple[bytes, ...]


def processes() -> Iterator[ProcStat]:
    """Every process still readable in /proc (they may exit while we look)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = tuple((entry / "cmdline").read_bytes().split(b"\0"))
        except OSError:
            continue
        # fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        yield ProcStat(int(entry.name), fields[0], int(fields[1]), int(fields[2]), cmdline)
