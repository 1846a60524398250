"""Run a Python snippet as another uid/gid (setpriv, no preexec_fn), with this
checkout and its virtualenv's packages importable, to test what the services
allow to peers of another identity. The venv's interpreter lives under /root
(unreadable to other users), so the snippet runs under /usr/bin/python3 (the
same 3.11 ABI) with the venv's site-packages on sys.path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import REPO

SYSTEM_PYTHON = "/usr/bin/python3"
SITE_PACKAGES = REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def run_as(uid: int, gid: int, code: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(SITE_PACKAGES)!r}]\n"
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", SYSTEM_PYTHON, "-I", "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


@contextmanager
def shared_tmpdir(prefix: str) -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
