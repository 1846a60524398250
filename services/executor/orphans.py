"""Killing what a dead executor left running: every process still in its session.

The executor leads its own session and starts each plugin in a process group
of its own inside that session (services/executor/guardian.py), so when the
executor dies, whatever it started (plugins, and anything they started that
did not call setsid) is exactly the set of processes whose session ID is the
executor's PID. The kernel does not hand that ID to a new session while any
member is alive, so nothing else can match it.

Standard library only: the guardian runs this file as a script
(`python3 -I -S orphans.py <session-id>`), after the executor is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator

# A plugin may fork while we look; sweep until one pass finds nobody (bounded).
_MAX_PASSES = 50
_PASS_PAUSE = 0.01


def session_of(stat: str) -> int | None:
    """The session ID in a /proc/<pid>/stat line (the command may hold spaces
    and parentheses: the fields start after the last ')'); None when unreadable."""
    close = stat.rfind(")")
    if close < 0:
        return None
    fields = stat[close + 2 :].split()
    # state, ppid, pgrp, session, ...
    if len(fields) < 4 or fields[0] == "Z":
        return None  # a zombie is already dead; its parent reaps it
    try:
        return int(fields[3])
    except ValueError:
        return None


def session_members(stats: Iterable[tuple[int, str]], sid: int) -> list[int]:
    """The PIDs among (pid, stat line) pairs that are live members of session `sid`,
    the session's leader itself excepted (the executor, possibly still exiting)."""
    return [pid for pid, stat in stats if pid != sid and session_of(stat) == sid]


def read_stats() -> Iterator[tuple[int, str]]:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                yield int(name), fh.read()
        except OSError:
            continue  # it exited while we looked


def sweep(sid: int) -> int:
    """SIGKILL every member of session `sid` until none is left; returns how many were killed."""
    killed = 0
    for _ in range(_MAX_PASSES):
        members = session_members(read_stats(), sid)
        if not members:
            break
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                continue
        time.sleep(_PASS_PAUSE)
    return killed


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) <= 1:
        print("usage: orphans.py <session-id>", file=sys.stderr)
        return 2
    killed = sweep(int(argv[0]))
    if killed:
        print(f"multus-executor guardian: killed {killed} process(es) left by the executor", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
