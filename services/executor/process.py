"""Running one plugin process: its own session (so its whole process group can
be killed), stdin fed, stdout capped, stderr tail kept, and nothing left behind
on success, failure, timeout or cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_CHUNK = 64 * 1024
# After SIGKILL a process is gone within milliseconds; this only bounds a stuck reap.
_REAP_TIMEOUT = 5.0


class OutputTooLarge(Exception):
    """The plugin wrote more than the cap to stdout; it was killed."""


@dataclass(frozen=True)
class Completed:
    exit_code: int
    stdout: bytes
    stderr: bytes  # the tail, at most stderr_cap bytes
    duration: float


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process still in the plugin's group (it is the group's leader:
    start_new_session). Plugins that setsid() their own children escape this."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    if stdin is None:
        return
    # A plugin may exit without reading its config (VERSION, an early error).
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()


async def _read_capped(stream: asyncio.StreamReader | None, cap: int, pgid: int) -> bytes:
    if stream is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(_CHUNK):
        size += len(chunk)
        if size > cap:
            kill_process_group(pgid)
            raise OutputTooLarge(f"plugin wrote more than {cap} bytes to stdout")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    if stream is None:
        return b""
    tail = b""
    while chunk := await stream.read(_CHUNK):
        tail = (tail + chunk)[-cap:]
    return tail


async def run_plugin_process(
    argv: Sequence[str],
    env: dict[str, str],
    stdin: bytes,
    *,
    timeout: float,
    stdout_cap: int,
    stderr_cap: int = 64 * 1024,
    cwd: str = "/",
) -> Completed:
    """Run argv to completion within `timeout` seconds.

    Raises TimeoutError (process group killed), OutputTooLarge (killed), OSError
    (could not start) and lets CancelledError through after killing the group.
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # pgid == pid: one killpg reaches every descendant
        close_fds=True,
    )
    pgid = proc.pid
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with asyncio.timeout(timeout):
            feeder = asyncio.create_task(_feed(proc.stdin, stdin))
            out = asyncio.create_task(_read_capped(proc.stdout, stdout_cap, pgid))
            err = asyncio.create_task(_read_tail(proc.stderr, stderr_cap))
            exited = asyncio.create_task(proc.wait())
            tasks = [feeder, out, err, exited]
            # Returns early only when stdout overflows (the reader raises).
            await asyncio.wait({out, exited}, return_when=asyncio.FIRST_EXCEPTION)
            if out.done() and (overflow := out.exception()) is not None:
                raise overflow
            exit_code = await exited
            # Children the plugin left running would hold the pipes open (and
            # outlive the call): end the group before draining the output.
            kill_process_group(pgid)
            stdout = await out
            stderr = await err
            await feeder
    except BaseException:
        kill_process_group(pgid)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(proc.wait()), _REAP_TIMEOUT)
        raise
    return Completed(exit_code, stdout, stderr, time.monotonic() - started)
