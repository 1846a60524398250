"""Running one plugin process: its own session (so its whole process group can
be killed), stdin fed, stdout capped, stderr tail kept, and nothing left behind
on success, failure, timeout or cancellation.

The process is driven straight from the event loop: subprocess.Popen (vfork)
starts it, its three pipes and a pidfd are watched with add_reader/add_writer,
and it is reaped when its pidfd says it exited. asyncio's subprocess
transports did the same with about twice the event-loop work per plugin
(protocols, transports, a child watcher, a dozen callbacks), which is a good
part of the executor's CPU on every delegate call. The exit is learnt from the
pidfd, not from the pipes, so a grandchild holding stdout cannot stall a
finished call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# After SIGKILL a process is gone within milliseconds; this only bounds a stuck reap.
_REAP_TIMEOUT = 5.0
_READ_SIZE = 65536


class OutputTooLarge(Exception):
    """The plugin wrote more than the cap to stdout; it was killed."""


@dataclass(frozen=True)
class Completed:
    exit_code: int
    stdout: bytes
    stderr: bytes  # the tail, at most stderr_cap bytes
    duration: float


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process still in the plugin's group (it is the group's leader).
    Plugins that setsid() their own children escape this."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _PluginRun:
    """One started plugin process: its pipes and exit as futures on the loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes], stdout_cap: int, stderr_cap: int
    ):
        self.loop = loop
        self.proc = proc
        self.pgid = proc.pid  # the plugin leads its own group (a session of its own, or a group in ours)
        self.stdout_cap = stdout_cap
        self.stderr_cap = stderr_cap
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.overflowed: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._outputs: dict[int, tuple[Any, bytearray]] = {}  # fd -> (pipe, what it collects)
        self._stdin_fd = -1
        self._pending_stdin = memoryview(b"")
        self._pidfd = -1

    def start(self, stdin: bytes) -> None:
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        for pipe, sink in ((proc.stdout, self.stdout), (proc.stderr, self.stderr)):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self._outputs[fd] = (pipe, sink)
            self.loop.add_reader(fd, self._read, fd)
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except OSError:  # a kernel before 5.3: a worker thread waits instead
            waiting = self.loop.run_in_executor(None, proc.wait)
            waiting.add_done_callback(lambda _: self._exit_seen())
        else:
            self.loop.add_reader(self._pidfd, self._exit_seen)
        self._stdin_fd = proc.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        self._pending_stdin = memoryview(stdin)
        self._feed()

    def _feed(self) -> None:
        """Write what the pipe takes now; the rest when it is writable again."""
        try:
            while self._pending_stdin:
                written = os.write(self._stdin_fd, self._pending_stdin)
                self._pending_stdin = self._pending_stdin[written:]
        except BlockingIOError:
            self.loop.add_writer(self._stdin_fd, self._more_stdin)
            return
        except OSError:  # EPIPE: the plugin exited (or closed stdin) without reading it all
            pass
        self._close_stdin()

    def _more_stdin(self) -> None:
        self.loop.remove_writer(self._stdin_fd)
        self._feed()

    def _close_stdin(self) -> None:
        if self._stdin_fd >= 0:
            self.loop.remove_writer(self._stdin_fd)
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self._stdin_fd = -1
            self._pending_stdin = memoryview(b"")

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        sink = self._outputs[fd][1]
        if not data:
            self._close_output(fd)
            return
        if sink is self.stdout:
            if len(sink) + len(data) > self.stdout_cap:
                if not self.overflowed.done():
                    kill_process_group(self.pgid)
                    self.overflowed.set_result(None)
                return  # keep draining (the group is dead): nothing more is kept
            sink += data
        else:
            sink += data
            if len(sink) > self.stderr_cap:
                del sink[: len(sink) - self.stderr_cap]

    def _close_output(self, fd: int) -> None:
        self.loop.remove_reader(fd)
        pipe, _ = self._outputs.pop(fd)
        pipe.close()
        if not self._outputs and not self.output_closed.done():
            self.output_closed.set_result(None)

    def _exit_seen(self) -> None:
        if self._pidfd >= 0:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        self.proc.wait()  # it has exited: reaps at once
        if not self.exited.done():
            self.exited.set_result(None)

    def close(self) -> None:
        """Drop every watch and pipe (after success, failure or cancellation)."""
        self._close_stdin()
        for fd in list(self._outputs):
            self._close_output(fd)
        if self._pidfd >= 0:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


async def run_plugin_process(
    argv: Sequence[str],
    env: dict[str, str],
    stdin: bytes,
    *,
    timeout: float,
    stdout_cap: int,
    stderr_cap: int = 64 * 1024,
    cwd: str = "/",
    new_session: bool = True,
) -> Completed:
    """Run argv to completion within `timeout` seconds, leading its own process
    group: in a session of its own, or with `new_session=False` in the executor's
    session (where the guardian finds it if the executor dies: guardian.py).

    Raises TimeoutError (process group killed), OutputTooLarge (killed), OSError
    (could not start) and lets CancelledError through after killing the group.
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        bufsize=0,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        # pgid == pid either way: one killpg reaches every descendant
        start_new_session=new_session,
        process_group=None if new_session else 0,
        close_fds=True,
    )
    run = _PluginRun(loop, proc, stdout_cap, stderr_cap)
    pgid = run.pgid
    try:
        try:
            async with asyncio.timeout(timeout):
                run.start(stdin)
                await asyncio.wait({run.exited, run.overflowed}, return_when=asyncio.FIRST_COMPLETED)
                # Children the plugin left running would hold the pipes open (and
                # outlive the call): end the group, then drain the output.
                kill_process_group(pgid)
                await asyncio.wait({run.output_closed, run.overflowed}, return_when=asyncio.FIRST_COMPLETED)
                if run.overflowed.done():
                    raise OutputTooLarge(f"plugin wrote more than {stdout_cap} bytes to stdout")
                await run.exited
        except BaseException:
            kill_process_group(pgid)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(run.exited), _REAP_TIMEOUT)
            raise
        exit_code = proc.returncode
    finally:
        run.close()
    return Completed(
        -1 if exit_code is None else exit_code,
        bytes(run.stdout),
        bytes(run.stderr),
        time.monotonic() - started,
    )
