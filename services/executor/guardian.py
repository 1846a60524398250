"""No plugin outlives the executor, without a wrapper exec per plugin.

Plugins used to start through `setpriv --pdeathsig KILL`, so a plugin died
with the executor (an ADD the gateway already rolled back must not complete
afterwards). That costs a second exec per plugin: about 0.7 ms on an idle
machine and 2 ms under load, on every delegate of every ADD and DEL.
(`prctl(PR_SET_PDEATHSIG)` in the child would need preexec_fn, which is
unsafe in this threaded process.)

Instead the executor leads its own session, starts each plugin in a process
group of its own inside it (so one killpg still ends a plugin and what it
left), and keeps one guardian: `/bin/sh` blocked reading a pipe whose only
write end the executor holds (close-on-exec, so no plugin inherits it). When
the executor exits, however it dies, the kernel closes that end, the read
returns, and the shell execs services/executor/orphans.py, which SIGKILLs
every process still in the executor's session. Race-free: a plugin is in
the session from its first instruction, and the session ID cannot be
reused while any member lives. The idle guardian is one small shell (about
0.3 MiB of PSS); Python starts only to sweep, after the executor is gone.

When the executor does not lead its session (run by hand from a shell, or
under a wrapper that did not exec it), or the guardian cannot run, plugins
go through setpriv as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys

from services.common.logs import get_logger

log = get_logger(__name__)

SHELL = "/bin/sh"
ORPHANS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "orphans.py")
# Blocks until EOF on stdin (the executor gone), then replaces itself with the sweep.
_WAIT_THEN_SWEEP = 'read -r _line; exec "$@"'
# A guardian that keeps dying is given up on (setpriv again) after this many restarts.
MAX_RESTARTS = 5


def leads_session() -> bool:
    """Whether this process leads its own session, as the container runtime, the
    local supervisor and the tests start services. It does not make itself one:
    that would take it away from a terminal's Ctrl-C when run by hand."""
    return os.getsid(0) == os.getpid()


def guardian_argv(session_id: int, python: str = sys.executable, shell: str = SHELL) -> list[str]:
    sweep = [python, "-I", "-S", ORPHANS_SCRIPT, str(session_id)]
    return [shell, "-c", _WAIT_THEN_SWEEP, "multus-executor-guardian", *sweep]


class Guardian:
    """The executor's guardian process; `active` says whether plugins may skip setpriv."""

    def __init__(self, session_id: int, argv: list[str] | None = None) -> None:
        self.session_id = session_id
        self._argv = argv or guardian_argv(session_id)
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_end = -1
        self._pidfd = -1
        self._restarts = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and not self._closing

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start the guardian and watch it (restarted when it dies); False when it cannot run."""
        self._loop = loop
        read_end, write_end = os.pipe()  # both close-on-exec: no plugin inherits the write end
        try:
            proc = subprocess.Popen(
                self._argv,
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                cwd="/",
                close_fds=True,
                start_new_session=True,  # outside the session it sweeps, and out of the executor's group
            )
            pidfd = os.pidfd_open(proc.pid)
        except OSError as exc:
            os.close(write_end)
            log.warning("cannot start the plugin guardian; plugins go through setpriv", error=str(exc))
            return False
        finally:
            os.close(read_end)
        self._proc, self._write_end, self._pidfd = proc, write_end, pidfd
        loop.add_reader(pidfd, self._exited)
        return True

    def _exited(self) -> None:
        assert self._proc is not None and self._loop is not None
        self._unwatch()
        self._proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        self._write_end = -1
        if self._closing:
            return
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            log.error("the plugin guardian keeps exiting; plugins go through setpriv", code=self._proc.returncode)
            return
        log.warning("the plugin guardian exited; restarting it", code=self._proc.returncode)
        self.start(self._loop)

    def _unwatch(self) -> None:
        if self._pidfd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    async def close(self, timeout: float = 2.0) -> None:
        """At a clean stop: let the guardian sweep what is left (it spares the executor) and reap it."""
        self._closing = True
        self._unwatch()
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1
        proc = self._proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        except TimeoutError:
            proc.kill()
            proc.wait()
