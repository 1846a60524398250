"""Pruning of old timestamped credential files (atomic writes are
services.common.files)."""

from __future__ import annotations

import contextlib
import os


def prune(directory: str, prefix: str, suffix: str, keep: int, protect: tuple[str, ...] = ()) -> list[str]:
    """Delete all but the `keep` newest files named <prefix>*<suffix> (by name, which sorts by timestamp)."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(suffix))
    except FileNotFoundError:
        return []
    removed = []
    for name in names[: max(len(names) - keep, 0)]:
        if name in protect:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
        removed.append(name)
    return removed
