"""Running multusctl as an operator would (a real process against the real
services' sockets) and reading what it printed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import REPO


@dataclass(frozen=True)
class CtlRun:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def multusctl(config: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> CtlRun:
    done = subprocess.run(
        [sys.executable, "-m", "services.ctl", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
    )
    return CtlRun(done.returncode, done.stdout, done.stderr)


def one_line_error(run: CtlRun) -> str:
    """The error a failed command printed: exactly one line on stderr, nothing on stdout."""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("multusctl: "), run.stderr
    assert run.stdout == "", run.stdout
    return lines[0]
