"""Paths as a process chrooted into `root` sees them.

With `chrootDir` the executor runs `chroot <root> <binDir>/<plugin>`, so the
kernel resolves that path, and every symlink on it, inside the host root: an
absolute link target starts again at the root and `..` stops there. A plain
`os.path` look from the executor's own filesystem follows the same links to
the wrong place (distro packages leave `/opt/cni/bin/bridge ->
/usr/lib/cni/bridge`, which dangles in the executor's container). This module
resolves a path exactly as the chrooted process will, without entering the
chroot, so lookups and the execution agree.
"""

from __future__ import annotations

import errno
import os
import stat

# The kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40


def resolve_in_root(root: str, path: str) -> str:
    """The executor-side path of `path` as seen by a process chrooted into `root`.

    `path` is absolute as the chrooted process names it. Every component that is
    a symlink is followed inside `root` (absolute targets restart at `root`,
    `..` never climbs above it). The final component is followed too. Raises
    FileNotFoundError when a component is missing and OSError(ELOOP) on too many
    links. With an empty `root` the path is resolved on our own filesystem.
    """
    if not root:
        return os.path.realpath(path, strict=True)
    root = os.path.abspath(root)
    pending = [part for part in path.split("/") if part]
    resolved: list[str] = []  # components below root, all existing non-links (directories but the last)
    followed = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        st = os.lstat(candidate)  # FileNotFoundError propagates: the chrooted exec would fail the same way
        if stat.S_ISLNK(st.st_mode):
            followed += 1
            if followed > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", os.path.join("/", *resolved, part))
        resolved.append(part)
    return os.path.join(root, *resolved)
