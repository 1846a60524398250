"""The delegate runner: validates a call, waits for a free slot
(executorMaxConcurrency), runs the plugin process within the deadline, and
reports the outcome in metrics and (redacted) logs. No gRPC here."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass

from services.common import cni
from services.common.config import DaemonConfig
from services.common.logs import get_logger, redact
from services.executor import metrics
from services.executor.guardian import Guardian
from services.executor.invocation import MINIMAL_PATH, Invocation, cni_environment, plugin_argv, plugin_error
from services.executor.process import OutputTooLarge, run_plugin_process
from services.executor.rejection import Reason, Rejected
from services.executor.validation import (
    find_plugin,
    validate_add_runtime,
    validate_command,
    validate_env_value,
    validate_extra_env,
    validate_netns,
)
from shim.rootfs import resolve_in_root

log = get_logger(__name__)

DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ExecRequest:
    """A delegate call as the caller sent it (not yet validated)."""

    plugin: str
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    config: bytes = b""
    extra_env: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ExecOutcome:
    exit_code: int
    stdout: bytes
    error: cni.CniError | None
    duration: float


@dataclass(frozen=True)
class RunnerSettings:
    bin_dirs: tuple[str, ...]
    netns_prefixes: tuple[str, ...]
    max_concurrency: int
    timeout_ceiling: float
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    chroot_dir: str = ""
    chroot_program: str = ""
    setpriv_program: str = ""
    delegate_kubeconfig: str = ""

    @classmethod
    def from_config(cls, config: DaemonConfig) -> RunnerSettings:
        chroot_program = ""
        if config.chroot_dir:
            chroot_program = shutil.which("chroot", path=MINIMAL_PATH) or ""
        return cls(
            bin_dirs=config.bin_dirs,
            netns_prefixes=config.executor_netns_prefixes,
            max_concurrency=max(1, config.executor_max_concurrency),
            timeout_ceiling=config.executor_timeout_seconds,
            max_output_bytes=config.executor_max_output_bytes,
            chroot_dir=config.chroot_dir,
            chroot_program=chroot_program,
            setpriv_program=shutil.which("setpriv", path=MINIMAL_PATH) or "",
            delegate_kubeconfig=config.delegate_kubeconfig_path,
        )

    def problems(self) -> list[str]:
        """What keeps the executor from running delegates at all (health is NOT_SERVING while any)."""
        found = []
        if self.chroot_dir and not self.chroot_program:
            found.append("chrootDir is set but no chroot program was found")
        if self.chroot_dir and not os.path.isdir(self.chroot_dir):
            found.append(f"chrootDir {self.chroot_dir} is not a directory")
        if not self.bin_dirs:
            found.append("binDir names no directory")
        return found


def validate(req: ExecRequest, settings: RunnerSettings) -> Invocation:
    command = validate_command(req.command)
    plugin_path = find_plugin(req.plugin, settings.bin_dirs, settings.chroot_dir)
    for key, value in (("CNI_CONTAINERID", req.container_id), ("CNI_IFNAME", req.ifname), ("CNI_ARGS", req.args)):
        validate_env_value(key, value)
    if command == "ADD":
        validate_add_runtime(req.container_id, req.ifname)
    netns = validate_netns(req.netns, command, settings.netns_prefixes)
    return Invocation(
        plugin=req.plugin,
        plugin_path=plugin_path,
        command=command,
        container_id=req.container_id,
        netns=netns,
        ifname=req.ifname,
        args=req.args,
        config=req.config,
        extra_env=validate_extra_env(req.extra_env or {}),
    )


class DelegateRunner:
    def __init__(self, settings: RunnerSettings, guardian: Guardian | None = None) -> None:
        self.settings = settings
        # While a guardian watches the executor's session, plugins need no setpriv (guardian.py).
        self.guardian = guardian
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        # The load, for GetStats (the gauges below say the same to Prometheus).
        self.in_flight = 0
        self.queued = 0
        metrics.MAX_CONCURRENCY.set(settings.max_concurrency)

    def _kubeconfig(self) -> str | None:
        """The delegate kubeconfig (written by the certs service) once it exists
        where the delegate will open it: under chrootDir when set, because the
        delegate runs chrooted into the host root and the executor's own
        filesystem need not have the host's CNI config dir mounted at all."""
        path = self.settings.delegate_kubeconfig
        if not path:
            return None
        try:
            seen_at = resolve_in_root(self.settings.chroot_dir, path)
        except (OSError, ValueError):
            return None
        return path if os.path.isfile(seen_at) else None

    async def run(self, req: ExecRequest, timeout: float | None) -> ExecOutcome:
        """Run one delegate within `timeout` seconds (queueing included).

        Raises Rejected for request-level problems and deadlines; a plugin's own
        failure is returned in the outcome."""
        try:
            inv = validate(req, self.settings)
        except Rejected as exc:
            metrics.REJECTED.labels(reason=exc.reason.value).inc()
            raise
        if self.settings.problems():
            raise Rejected(Reason.UNAVAILABLE, "; ".join(self.settings.problems()))
        budget = self.settings.timeout_ceiling if timeout is None else min(timeout, self.settings.timeout_ceiling)
        deadline = time.monotonic() + budget
        queued_at = time.monotonic()
        metrics.QUEUED.inc()
        self.queued += 1
        try:
            async with asyncio.timeout(budget):
                await self._slots.acquire()
        except TimeoutError:
            metrics.REJECTED.labels(reason=Reason.DEADLINE.value).inc()
            raise Rejected(Reason.DEADLINE, f"no free executor slot within {budget:.3f}s") from None
        finally:
            metrics.QUEUED.dec()
            self.queued -= 1
        metrics.QUEUE_WAIT.observe(time.monotonic() - queued_at)
        try:
            return await self._run_slot(inv, deadline - time.monotonic())
        finally:
            self._slots.release()

    async def _run_slot(self, inv: Invocation, timeout: float) -> ExecOutcome:
        env = cni_environment(inv, self.settings.bin_dirs, self._kubeconfig())
        guarded = self.guardian is not None and self.guardian.active
        argv = plugin_argv(
            inv.plugin_path,
            self.settings.chroot_dir,
            self.settings.chroot_program,
            "" if guarded else self.settings.setpriv_program,
        )
        started = time.monotonic()
        result = "cancelled"
        metrics.DELEGATES_IN_FLIGHT.inc()
        self.in_flight += 1
        try:
            try:
                done = await run_plugin_process(
                    argv,
                    env,
                    inv.config,
                    timeout=max(timeout, 0.001),
                    stdout_cap=self.settings.max_output_bytes,
                    new_session=not guarded,
                )
            except TimeoutError:
                result = "timeout"
                raise Rejected(Reason.DEADLINE, f"{inv.plugin} {inv.command} killed after {timeout:.3f}s") from None
            except OutputTooLarge as exc:
                result = "output_too_large"
                log.warning("delegate output too large", plugin=inv.plugin, cni_command=inv.command)
                err = cni.CniError(cni.IO_FAILURE, f"{inv.plugin}: {exc}")
                return ExecOutcome(-9, b"", err, time.monotonic() - started)
            except OSError as exc:
                result = "spawn_error"
                err = cni.CniError(cni.IO_FAILURE, f"{inv.plugin}: cannot start plugin", exc.strerror or str(exc))
                return ExecOutcome(-1, b"", err, time.monotonic() - started)
            error = plugin_error(done.exit_code, done.stdout, done.stderr)
            result = "success" if error is None else "error"
            self._log(inv, done.exit_code, done.stderr, error, done.duration)
            return ExecOutcome(done.exit_code, done.stdout, error, done.duration)
        finally:
            metrics.DELEGATES_IN_FLIGHT.dec()
            self.in_flight -= 1
            metrics.DELEGATE_EXEC_DURATION.labels(plugin=inv.plugin, command=inv.command, result=result).observe(
                time.monotonic() - started
            )

    def _log(self, inv: Invocation, exit_code: int, stderr: bytes, error: cni.CniError | None, duration: float) -> None:
        fields = {
            "plugin": inv.plugin,
            "cni_command": inv.command,
            "netns": inv.netns,
            "ifname": inv.ifname,
            "exit_code": exit_code,
            "duration_ms": round(duration * 1000, 1),
        }
        if stderr:
            fields["stderr"] = redact(stderr.decode(errors="replace"))
        if error is None:
            log.debug("delegate finished", **fields)
        else:
            log.warning("delegate failed", cni_code=error.code, cni_msg=error.msg, **fields)
