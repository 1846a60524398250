"""Running one plugin process: its own session (so its whole process group can
be killed), stdin fed, stdout capped, stderr tail kept, and nothing left behind
on success, failure, timeout or cancellation.

A SubprocessProtocol of our own rather than asyncio's streams: on Python 3.11
`Process.wait()` also waits for the pipes to close, so a grandchild holding
stdout would stall a finished call; the protocol learns of the exit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

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


class _PluginProtocol(asyncio.SubprocessProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, stdout_cap: int, stderr_cap: int) -> None:
        self.stdout_cap = stdout_cap
        self.stderr_cap = stderr_cap
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.overflowed: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._open_outputs = {1, 2}
        self.pgid = 0

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            if len(self.stdout) + len(data) > self.stdout_cap:
                if not self.overflowed.done():
                    kill_process_group(self.pgid)
                    self.overflowed.set_result(None)
                return
            self.stdout += data
        elif fd == 2:
            self.stderr += data
            if len(self.stderr) > self.stderr_cap:
                del self.stderr[: len(self.stderr) - self.stderr_cap]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_outputs.discard(fd)
        if not self._open_outputs and not self.output_closed.done():
            self.output_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.output_closed.done():
            self.output_closed.set_result(None)


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
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    transport, protocol = await loop.subprocess_exec(
        lambda: _PluginProtocol(loop, stdout_cap, stderr_cap),
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # pgid == pid: one killpg reaches every descendant
        close_fds=True,
    )
    pgid = protocol.pgid = transport.get_pid()
    try:
        try:
            async with asyncio.timeout(timeout):
                stdin_pipe = transport.get_pipe_transport(0)
                if stdin_pipe is not None:
                    # A plugin may exit without reading its config: the pipe just closes.
                    stdin_pipe.write(stdin)  # type: ignore[attr-defined]
                    stdin_pipe.close()
                await asyncio.wait({protocol.exited, protocol.overflowed}, return_when=asyncio.FIRST_COMPLETED)
                # Children the plugin left running would hold the pipes open (and
                # outlive the call): end the group, then drain the output.
                kill_process_group(pgid)
                await asyncio.wait({protocol.output_closed, protocol.overflowed}, return_when=asyncio.FIRST_COMPLETED)
                if protocol.overflowed.done():
                    raise OutputTooLarge(f"plugin wrote more than {stdout_cap} bytes to stdout")
                await protocol.exited
        except BaseException:
            kill_process_group(pgid)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(protocol.exited), _REAP_TIMEOUT)
            raise
        exit_code = transport.get_returncode()
    finally:
        transport.close()
    return Completed(
        -1 if exit_code is None else exit_code,
        bytes(protocol.stdout),
        bytes(protocol.stderr),
        time.monotonic() - started,
    )
