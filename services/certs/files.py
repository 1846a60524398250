"""Credential files on disk: written atomically (temp file + rename in the same
directory) and readable only by their owner from the first byte."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one rename: readers see the old or the new content, never a mix."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


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
