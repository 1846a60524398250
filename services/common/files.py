"""Files other processes read while we rewrite them (CNI configs, kubeconfigs,
records): replaced in one rename so a reader sees the old or the new content,
never a mix, and never a half-written file under a name a runtime would load."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile


def write_atomic(
    path: str, data: bytes | str, mode: int = 0o600, dir_mode: int = 0o700, *, durable: bool = True
) -> None:
    """Replace `path` with `data` (temp file in the same directory, fsync, rename, fsync the directory).

    The temp file is hidden and ends in random characters, so a CNI runtime
    scanning the directory for .conf/.conflist/.json never picks it up.
    `durable=False` skips both fsyncs: the rename alone is atomic against a
    crashed process, which is all that per-pod scratch state on the CNI hot
    path needs (a power loss takes the pod's network namespace with it).
    """
    directory = os.path.dirname(path) or "."
    payload = memoryview(data.encode() if isinstance(data, str) else data)
    prefix = f".{os.path.basename(path)}."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    except FileNotFoundError:  # the directory is made only when missing (records: once per container)
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        try:
            # mkstemp made it 0600 (less the umask): a chmod is one more journalled
            # inode change per write, so only when the mode differs.
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                os.fchmod(fd, mode)
            while payload:  # plain writes: no file object around a single small write
                payload = payload[os.write(fd, payload) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_or_none(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
