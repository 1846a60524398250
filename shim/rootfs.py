"""Paths as a process chrooted into a root sees them. Standard library only, so
it lives in shim/ (the shim installer uses it) and the executor and the
uninstall import it from here.

With `chrootDir` the executor runs `chroot <root> <binDir>/<plugin>`, so the
kernel resolves that path, and every symlink on it, inside the host root: an
absolute link target starts again at the root and `..` stops there. A plain
`os.path` look from our own filesystem follows the same links to the wrong
place (distro packages leave `/opt/cni/bin/bridge -> /usr/lib/cni/bridge`,
which dangles in the executor's container). `resolve_in_root` resolves a path
exactly as the chrooted process will, without entering the chroot, so lookups
and the execution agree; the shim installer checks the host's interpreter the
same way.
"""

from __future__ import annotations

import errno
import os
import stat

# The kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40


def resolve_in_root(root: str | os.PathLike[str], path: str) -> str:
    """Our own path for `path` as seen by a process chrooted into `root`.

    `path` is absolute as the chrooted process names it. Every component that is
    a symlink is followed inside `root` (absolute targets restart at `root`, `..`
    never climbs above it), the last one included. From the first component that
    does not exist on, the rest is appended as given, so the caller's stat/open
    answers "missing" exactly as the chrooted process would see it. Raises
    OSError(ELOOP) after MAX_SYMLINKS links. With an empty `root` the path is
    resolved on our own filesystem.
    """
    base = os.fspath(root)
    if not base:
        return os.path.realpath(path)
    base = os.path.abspath(base)
    pending = [part for part in path.split("/") if part]
    resolved: list[str] = []
    followed = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(base, *resolved, part)
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except OSError:  # missing (or below a non-directory): nothing more to resolve
            return os.path.join(base, *resolved, part, *[p for p in pending if p != "."])
        if not is_link:
            resolved.append(part)
            continue
        followed += 1
        if followed > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending = [p for p in target.split("/") if p] + pending
    return os.path.join(base, *resolved)
