"""Local supervisor: runs the four services on one host, in dependency order,
restarts one that dies (with backoff), and stops them all cleanly.

Start order is certs (credentials) -> cache (needs credentials) -> executor ->
gateway (needs cache and executor); stop order is the reverse, so the gateway
drains in-flight CNI requests while its peers are still up.

With `--split-privileges` it runs gateway, cache and certs as the DaemonSet does
(their own non-root uids, the sockets' group; compose/prepare_node.py first
gives them their paths), the executor staying root. The interpreter must be
one those uids may run (`--interpreter`; a virtualenv under /root is not).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.cli import base_parser, config_from_args
from services.common.config import SERVICES, ConfigError, DaemonConfig
from services.common.logs import get_logger, setup_logging

START_ORDER = ("certs", "cache", "executor", "gateway")
log = get_logger("supervisor")


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    # A service that stayed up this long is considered healthy again: backoff resets.
    stable_after: float = 30.0


async def wait_serving(socket_path: str, timeout: float) -> bool:
    """True once the service's grpc.health.v1 answers SERVING within `timeout`."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(f"unix://{socket_path}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
    return False


@dataclass
class SupervisedService:
    name: str
    argv: list[str]
    socket_path: str
    log_file: Path | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    credentials: tuple[int, int] | None = None  # (uid, gid) to run as; None: the supervisor's
    _stopping: bool = False

    async def spawn(self) -> None:
        stderr: IO[bytes] | None = self.log_file.open("ab") if self.log_file else None
        # uid/gid are set by Popen itself after fork (no preexec_fn); None keeps the supervisor's.
        uid, gid = self.credentials if self.credentials is not None else (None, None)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        finally:
            if stderr is not None:
                stderr.close()
        log.info("service started", child=self.name, pid=self.process.pid)

    async def keep_running(self) -> None:
        """Restart the service whenever it exits, until stop() is called."""
        backoff = self.policy.initial_backoff
        while not self._stopping:
            assert self.process is not None
            started = time.monotonic()
            code = await self.process.wait()
            if self._stopping:
                return
            if time.monotonic() - started > self.policy.stable_after:
                backoff = self.policy.initial_backoff
            log.warning("service exited; restarting", child=self.name, exit_code=code, backoff_seconds=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.policy.max_backoff)
            if self._stopping:
                return
            self.restarts += 1
            await self.spawn()

    async def stop(self, grace: float) -> None:
        self._stopping = True
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning("service did not stop in time; killing", child=self.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        log.info("service stopped", child=self.name, exit_code=proc.returncode)


def service_argv(service: str, passthrough: Sequence[str], interpreter: str = "") -> list[str]:
    return [interpreter or sys.executable, "-m", f"services.{service}", *passthrough]


def split_credentials(config: DaemonConfig) -> dict[str, tuple[int, int]]:
    """(uid, gid) per non-root service under --split-privileges (the DaemonSet's)."""
    from compose.prepare_node import Identities
    from services.common.grpc_server import socket_gid

    defaults = Identities()
    group = socket_gid(config.grpc_socket_group) if config.grpc_socket_group else defaults.group
    return {
        "gateway": (config.gateway_uid or defaults.gateway, group),
        "cache": (defaults.cache, group),
        "certs": (defaults.certs, group),
    }


def prepare_split(config: DaemonConfig) -> None:
    from compose.prepare_node import Identities, apply, prepare_plan

    creds = split_credentials(config)
    ids = Identities(creds["gateway"][0], creds["cache"][0], creds["certs"][0], creds["gateway"][1])
    done: list[str] = []
    apply(prepare_plan(config, ids), ids, done)
    log.info("node paths prepared for the privilege split", steps=done)


def passthrough_flags(args: argparse.Namespace) -> list[str]:
    """The flags every service takes, passed on as given to the supervisor."""
    flags = ["--config", args.config] if args.config is not None else []
    for name in ("run_dir", "socket_dir", "log_level", "cluster_dir", "bin_dir", "cni_dir"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", value]
    return flags


def stderr_file(config: DaemonConfig, log_dir: Path | None, service: str) -> Path | None:
    """Where a service's stderr goes: <log-dir>/<service>.log, unless the daemon
    config's logDir is that directory, where the service itself writes (and
    rotates) <service>.log: then stderr (crash tracebacks) goes to <service>.stderr.log,
    so one file never has two writers."""
    if log_dir is None:
        return None
    if config.log_dir and os.path.realpath(config.log_dir) == os.path.realpath(log_dir):
        return log_dir / f"{service}.stderr.log"
    return log_dir / f"{service}.log"


async def supervise(
    config: DaemonConfig,
    services: Sequence[str],
    passthrough: Sequence[str],
    log_dir: Path | None,
    start_timeout: float,
    grace: float,
    *,
    split: bool = False,
    interpreter: str = "",
) -> int:
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    credentials: dict[str, tuple[int, int]] = {}
    if split:
        if not config.grpc_socket_group:
            raise ConfigError("--split-privileges needs grpcSocketGroup (the group the services share)")
        prepare_split(config)
        credentials = split_credentials(config)
        if log_dir:
            os.chown(log_dir, -1, credentials["gateway"][1])
            log_dir.chmod(0o1770)
    supervised = [
        SupervisedService(
            name,
            service_argv(name, passthrough, interpreter),
            config.grpc_socket(name),
            log_file=stderr_file(config, log_dir, name),
            credentials=credentials.get(name),
        )
        for name in START_ORDER
        if name in services
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    watchers: list[asyncio.Task[None]] = []
    try:
        for svc in supervised:
            await svc.spawn()
            watchers.append(asyncio.create_task(svc.keep_running()))
            # Later services ride out a slow peer (wait_for_ready), so a slow start is logged, not
            # fatal; a stop request during start-up is honoured at once.
            serving = asyncio.create_task(wait_serving(svc.socket_path, start_timeout))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                serving.cancel()
                break
            if not serving.result():
                log.warning("service not SERVING yet; continuing", child=svc.name, timeout_seconds=start_timeout)
        log.info("all services started", services=[s.name for s in supervised])
        await stop.wait()
    finally:
        for svc in reversed(supervised):
            await svc.stop(grace)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("supervisor")
    parser.add_argument("--services", default=",".join(START_ORDER), help="comma-separated subset to run")
    parser.add_argument("--log-dir", type=Path, help="write each service's log to <dir>/<service>.log")
    parser.add_argument("--start-timeout", type=float, default=30.0, help="seconds to wait for each service")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds a service gets to stop on SIGTERM")
    parser.add_argument(
        "--split-privileges",
        action="store_true",
        help="run gateway, cache and certs as non-root uids (the DaemonSet's); needs grpcSocketGroup",
    )
    parser.add_argument("--interpreter", default="", help="the Python that runs the services (default: this one)")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"multus-supervisor: {exc}", file=sys.stderr)
        return 2
    services = [s for s in args.services.split(",") if s]
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown services: {', '.join(unknown)}")
    setup_logging(
        "supervisor",
        config.log_level,
        config.service_log_file("supervisor"),
        config.log_options,
        to_stderr=config.log_to_stderr,
    )
    try:
        return asyncio.run(
            supervise(
                config,
                services,
                passthrough_flags(args),
                args.log_dir,
                args.start_timeout,
                args.grace,
                split=args.split_privileges,
                interpreter=args.interpreter,
            )
        )
    except ConfigError as exc:
        print(f"multus-supervisor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
