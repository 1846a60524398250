"""The config manager: keeps the node's Multus CNI config in place for as long
as the gateway runs, and never removes it when the gateway stops.

- `multusConfigFile: auto`: watch `multusAutoconfigDir`, pick the primary
  network (multus_conf.select_primary) and keep `<cniConfigDir>/00-multus.conf`
  in upstream's thick shape pointing at it.
- `multusConfigFile: <path>` (manual mode): install that file into
  `cniConfigDir` and keep it installed (upstream copies once and stops caring).
- `readinessindicatorfile`: nothing is written until it exists, and the
  manager is not ready while it is missing.

Upstream deletes 00-multus.conf on every exit, which makes a node NotReady for
the length of a plain restart; here removal is an explicit command only:
`python -m services.gateway.config_manager cleanup --config <daemon-config.json>`.

Deciding what the file should hold (plan_auto/plan_manual) is pure; reading
the directory and writing the file happen in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from watchfiles import awatch

from services.common.cli import base_parser, config_from_args
from services.common.config import ConfigError, DaemonConfig
from services.common.files import read_or_none, write_atomic
from services.common.logs import get_logger, setup_logging
from services.gateway.multus_conf import (
    MULTUS_CONF_NAME,
    ConfigFile,
    SkippedFile,
    is_config_file_name,
    is_generated_multus_conf,
    render_multus_conf,
    select_primary,
)

log = get_logger(__name__)

AUTO = "auto"
MANUAL = "manual"
GENERATED_MODE = 0o600  # upstream writes 00-multus.conf owner-only
INSTALLED_MODE = 0o644  # upstream's manual copy is created with default permissions
WATCH_TICK_MS = 500  # how often the watch loop wakes without events (resync check)


@dataclass(frozen=True)
class ConfigState:
    """What the manager reports to the gateway's readiness and to operators."""

    ready: bool
    reason: str
    mode: str
    path: str  # the file the manager maintains
    primary: str = ""  # auto mode: the cluster network's config file


@dataclass(frozen=True)
class Observation:
    """What one reconcile pass read from disk."""

    indicator_present: bool = True
    files: tuple[ConfigFile, ...] = ()  # auto mode: the autoconfig directory
    source: bytes | None = None  # manual mode: the given file
    source_error: str = ""
    current: bytes | None = None  # what the maintained file holds now


@dataclass(frozen=True)
class Plan:
    state: ConfigState
    write: bytes | None = None  # new content for state.path, None = leave it as is
    skipped: tuple[SkippedFile, ...] = ()


def mode_of(config: DaemonConfig) -> str:
    return AUTO if config.multus_config_file in ("", AUTO) else MANUAL


def target_path(config: DaemonConfig) -> str:
    """The file this configuration makes the manager maintain."""
    if mode_of(config) == AUTO:
        return os.path.join(config.cni_config_dir, MULTUS_CONF_NAME)
    return os.path.join(config.cni_config_dir, os.path.basename(config.multus_config_file))


def _installs_in_place(config: DaemonConfig) -> bool:
    return os.path.realpath(config.multus_config_file) == os.path.realpath(target_path(config))


def _waiting_for_indicator(config: DaemonConfig, mode: str, path: str) -> ConfigState:
    reason = f"waiting for readinessindicatorfile {config.readiness_indicator_file}"
    return ConfigState(False, reason, mode, path)


def plan_auto(config: DaemonConfig, seen: Observation) -> Plan:
    path = target_path(config)
    selection = select_primary(
        seen.files,
        config.autoconfig_dir,
        multus_cni_version=config.cni_version,
        force_cni_version=config.force_cni_version,
        master_file_name=config.multus_master_cni,
    )
    if not seen.indicator_present:
        return Plan(_waiting_for_indicator(config, AUTO, path), skipped=selection.skipped)
    if selection.primary is None:
        where = f"{config.multus_master_cni} in " if config.multus_master_cni else ""
        reason = f"no valid primary CNI config ({where}{config.autoconfig_dir}); {MULTUS_CONF_NAME} left as is"
        return Plan(ConfigState(False, reason, AUTO, path), skipped=selection.skipped)
    content = render_multus_conf(config.raw, selection.primary, config.socket_dir)
    state = ConfigState(
        True, f"{MULTUS_CONF_NAME} delegates to {selection.primary.path}", AUTO, path, selection.primary.path
    )
    return Plan(state, None if seen.current == content else content, selection.skipped)


def plan_manual(config: DaemonConfig, seen: Observation) -> Plan:
    path = target_path(config)
    if not seen.indicator_present:
        return Plan(_waiting_for_indicator(config, MANUAL, path))
    source = config.multus_config_file
    if seen.source is None:
        reason = f"multusConfigFile {source} is unreadable: {seen.source_error or 'missing'}"
        return Plan(ConfigState(False, reason, MANUAL, path))
    try:
        parsed = json.loads(seen.source)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Plan(ConfigState(False, f"multusConfigFile {source} is not valid JSON: {exc}", MANUAL, path))
    if not isinstance(parsed, dict):
        return Plan(ConfigState(False, f"multusConfigFile {source} is not a JSON object", MANUAL, path))
    state = ConfigState(True, f"{source} installed as {path}", MANUAL, path)
    if _installs_in_place(config) or seen.current == seen.source:
        return Plan(state)
    return Plan(state, seen.source)


def _read_config_files(directory: str) -> tuple[ConfigFile, ...]:
    try:
        names = os.listdir(directory)
    except OSError:
        return ()
    files = []
    for name in names:
        if not is_config_file_name(name):
            continue
        try:
            with open(os.path.join(directory, name), "rb") as f:
                files.append(ConfigFile(name, f.read()))
        except OSError as exc:
            files.append(ConfigFile(name, None, exc.strerror or str(exc)))
    return tuple(files)


def observe(config: DaemonConfig) -> Observation:
    """Read what a reconcile pass needs (blocking: call from a worker thread)."""
    indicator = config.readiness_indicator_file
    present = not indicator or os.path.exists(indicator)
    current = read_or_none(target_path(config))
    if mode_of(config) == AUTO:
        return Observation(present, _read_config_files(config.autoconfig_dir), current=current)
    try:
        with open(config.multus_config_file, "rb") as f:
            return Observation(present, source=f.read(), current=current)
    except OSError as exc:
        return Observation(present, source_error=exc.strerror or str(exc), current=current)


def plan(config: DaemonConfig, seen: Observation) -> Plan:
    return plan_auto(config, seen) if mode_of(config) == AUTO else plan_manual(config, seen)


def apply(pending: Plan) -> None:
    if pending.write is None:
        return
    mode = GENERATED_MODE if pending.state.mode == AUTO else INSTALLED_MODE
    write_atomic(pending.state.path, pending.write, mode=mode, dir_mode=0o755)
    log.info("wrote CNI config", path=pending.state.path, mode=pending.state.mode, primary=pending.state.primary)


def cleanup(config: DaemonConfig) -> list[str]:
    """Uninstall: remove the config file this manager maintains, if it is still ours."""
    path = target_path(config)
    content = read_or_none(path)
    if content is None:
        return []
    if mode_of(config) == AUTO:
        if not is_generated_multus_conf(content):
            log.warning("not removing a file Multus did not generate", path=path)
            return []
    elif _installs_in_place(config) or content != read_or_none(config.multus_config_file):
        log.warning("not removing a file that is not the installed copy of multusConfigFile", path=path)
        return []
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    log.info("removed CNI config", path=path)
    return [path]


def _nearest_existing_dir(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


# Called on every state change; may be a coroutine function (awaited in order).
StateListener = Callable[[ConfigState], Awaitable[None] | None]


class ConfigManager:
    """Runs the reconcile loop: on start, on every change in the watched
    directories, and every `resync_seconds` in case an event was missed.

    `start()` inside a running event loop, `ready`/`state` at any time,
    `await stop()` to end it: stopping never removes the file.
    """

    def __init__(self, config: DaemonConfig, *, resync_seconds: float = 30.0, debounce_ms: int = 100) -> None:
        self.config = config
        self.resync_seconds = resync_seconds
        self.debounce_ms = debounce_ms
        self.listeners: list[StateListener] = []
        self._state: ConfigState | None = None
        self._skipped: tuple[SkippedFile, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._changed = asyncio.Condition()

    @property
    def state(self) -> ConfigState:
        if self._state is None:
            mode = mode_of(self.config)
            return ConfigState(False, "starting", mode, target_path(self.config))
        return self._state

    @property
    def ready(self) -> bool:
        return self.state.ready

    def add_listener(self, listener: StateListener) -> None:
        self.listeners.append(listener)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="config-manager")

    async def stop(self) -> None:
        """Stop watching. The maintained file stays: the node must keep its CNI config across restarts."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_ready(self, timeout: float) -> bool:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.ready), timeout)
        return self.ready

    async def reconcile(self) -> ConfigState:
        """One pass: read, decide, write if needed, publish the state."""
        try:
            pending = await asyncio.to_thread(self._reconcile_blocking)
            state, skipped = pending.state, pending.skipped
        except OSError as exc:
            state = ConfigState(False, f"cannot write {self.state.path}: {exc}", self.state.mode, self.state.path)
            skipped = self._skipped
            log.error("config manager pass failed", path=self.state.path, error=str(exc))
        self._report_skipped(skipped)
        await self._publish(state)
        return state

    def _reconcile_blocking(self) -> Plan:
        pending = plan(self.config, observe(self.config))
        apply(pending)
        return pending

    def _report_skipped(self, skipped: tuple[SkippedFile, ...]) -> None:
        if skipped == self._skipped:
            return
        self._skipped = skipped
        for item in skipped:
            log.warning("skipping CNI config for the primary network", file=item.name, reason=item.reason)

    async def _publish(self, state: ConfigState) -> None:
        if state == self._state:
            return
        self._state = state
        (log.info if state.ready else log.warning)(
            "config manager state", ready=state.ready, reason=state.reason, path=state.path
        )
        for listener in list(self.listeners):
            try:
                outcome = listener(state)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("config manager listener failed")
        async with self._changed:
            self._changed.notify_all()

    def _watch_paths(self) -> tuple[str, ...]:
        cfg = self.config
        dirs = [cfg.cni_config_dir]
        if mode_of(cfg) == AUTO:
            dirs.append(cfg.autoconfig_dir)
        else:
            dirs.append(os.path.dirname(os.path.abspath(cfg.multus_config_file)))
        if cfg.readiness_indicator_file:
            dirs.append(os.path.dirname(os.path.abspath(cfg.readiness_indicator_file)))
        # A directory that does not exist yet is watched through its nearest
        # existing parent, so its creation is noticed at once, not at the next resync.
        return tuple(dict.fromkeys(_nearest_existing_dir(d) for d in dirs))

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run(self) -> None:
        log.info("config manager started", mode=mode_of(self.config), path=self.state.path)
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await self.reconcile()
            paths = self._watch_paths()
            # The watch is set up when the iteration starts, a moment after the
            # pass above: a change in between is caught by the pass after the
            # first (short) timeout, so nothing falls into the gap.
            first = True
            last_pass = loop.time()
            try:
                async for changes in awatch(
                    *paths,
                    stop_event=self._stop,
                    debounce=self.debounce_ms,
                    step=20,
                    rust_timeout=WATCH_TICK_MS,
                    yield_on_timeout=True,
                    recursive=False,
                ):
                    if changes or first or loop.time() - last_pass >= self.resync_seconds:
                        first = False
                        await self.reconcile()
                        last_pass = loop.time()
                        if self._watch_paths() != paths:
                            break  # a watched directory appeared or vanished: watch the new set
            except Exception as exc:  # the watcher died (directory removed, inotify limits): retry
                log.warning("config watch failed; retrying", paths=list(paths), error=str(exc))
                await self._sleep_or_stop(1.0)
        log.info("config manager stopped; CNI config left in place", path=self.state.path)


async def _run_standalone(config: DaemonConfig) -> None:
    manager = ConfigManager(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    manager.start()
    await stop.wait()
    await manager.stop()


def _render(config: DaemonConfig) -> int:
    pending = plan(config, observe(config))
    for item in pending.skipped:
        print(f"skipped {item.name}: {item.reason}", file=sys.stderr)
    content = pending.write
    if content is None and pending.state.ready:
        content = read_or_none(pending.state.path)
    if content is None:
        print(pending.state.reason, file=sys.stderr)
        return 1
    sys.stdout.write(content.decode(errors="replace") + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("gateway")
    parser.prog = "python -m services.gateway.config_manager"
    parser.description = "Multus CNI config manager: run it alone, print what it would write, or uninstall its file"
    parser.add_argument(
        "command",
        choices=("run", "render", "cleanup"),
        help="run: keep the config in place until SIGTERM; render: print it; cleanup: remove it (uninstall)",
    )
    args: argparse.Namespace = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    setup_logging("gateway", config.log_level)
    if args.command == "render":
        return _render(config)
    if args.command == "cleanup":
        removed = cleanup(config)
        print("\n".join(f"removed {p}" for p in removed) or f"nothing to remove at {target_path(config)}")
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_standalone(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
