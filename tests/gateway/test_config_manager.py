"""The config manager against a real directory, real inotify (watchfiles) and real files."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.config import DaemonConfig, config_from_dict
from services.gateway.config_manager import ConfigManager, ConfigState, cleanup

BRIDGE = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "bridge", "bridge": "cni0"}]}
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}}


def _config(tmp_path: Path, **raw: Any) -> DaemonConfig:
    netd = tmp_path / "net.d"
    netd.mkdir(exist_ok=True)
    base = {
        "cniVersion": "1.0.0",
        "cniConfigDir": str(netd),
        "runDir": str(tmp_path / "run"),
        "socketDir": str(tmp_path / "sock"),
    }
    return config_from_dict({**base, **raw})


def _write(path: Path, obj: Any) -> None:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _multus_conf(netd: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((netd / "00-multus.conf").read_text()))
    except FileNotFoundError:
        return None


@pytest.fixture
async def manager_factory() -> AsyncIterator[Callable[[DaemonConfig], ConfigManager]]:
    started: list[ConfigManager] = []

    def make(config: DaemonConfig) -> ConfigManager:
        mgr = ConfigManager(config, resync_seconds=30.0, debounce_ms=50)
        mgr.start()
        started.append(mgr)
        return mgr

    yield make
    for mgr in started:
        await mgr.stop()


async def test_auto_mode_follows_the_primary(
    tmp_path: Path, manager_factory: Callable[[DaemonConfig], ConfigManager]
) -> None:
    cfg = _config(tmp_path)
    netd = tmp_path / "net.d"
    states: list[ConfigState] = []
    mgr = manager_factory(cfg)
    mgr.add_listener(states.append)
    await _eventually(lambda: mgr.state.reason != "starting")
    assert not mgr.ready and _multus_conf(netd) is None

    _write(netd / "10-bridge.conflist", BRIDGE)
    assert await mgr.wait_ready(5)
    conf = _multus_conf(netd)
    assert conf == {
        "cniVersion": "1.0.0",
        "name": "multus-cni-network",
        "clusterNetwork": str(netd / "10-bridge.conflist"),
        "type": "multus-shim",
        "daemonSocketDir": str(tmp_path / "sock"),  # where this gateway listens: the shim must find it
    }
    assert (netd / "00-multus.conf").stat().st_mode & 0o777 == 0o600

    # The primary changes: capabilities follow.
    _write(netd / "10-bridge.conflist", {**BRIDGE, "plugins": [*BRIDGE["plugins"], PORTMAP]})
    await _eventually(lambda: (_multus_conf(netd) or {}).get("capabilities") == {"portMappings": True})

    # A higher-priority valid config takes over; an invalid one is skipped.
    _write(netd / "01-broken.conf", "{")
    _write(netd / "05-other.conf", {"cniVersion": "1.0.0", "name": "o", "type": "macvlan"})
    await _eventually(lambda: (_multus_conf(netd) or {}).get("clusterNetwork") == str(netd / "05-other.conf"))
    assert mgr.ready and mgr.state.primary == str(netd / "05-other.conf")

    # Someone deletes our file while we run: it comes back.
    (netd / "00-multus.conf").unlink()
    await _eventually(lambda: _multus_conf(netd) is not None)

    # Every primary gone: the file stays, readiness drops.
    for name in ("05-other.conf", "10-bridge.conflist"):
        (netd / name).unlink()
    await _eventually(lambda: not mgr.ready)
    assert _multus_conf(netd) is not None
    assert any(s.ready for s in states) and not states[-1].ready


async def test_stop_and_restart_keep_the_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    netd = tmp_path / "net.d"
    _write(netd / "10-bridge.conflist", BRIDGE)
    first = ConfigManager(cfg, debounce_ms=50)
    first.start()
    assert await first.wait_ready(5)
    await first.stop()
    target = netd / "00-multus.conf"
    assert target.exists(), "stopping must never delete 00-multus.conf"
    before = target.stat()

    second = ConfigManager(cfg, debounce_ms=50)
    second.start()
    try:
        assert await second.wait_ready(5)
        after = target.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "unchanged: not rewritten"
    finally:
        await second.stop()
    assert target.exists()


async def test_readiness_indicator(tmp_path: Path, manager_factory: Callable[[DaemonConfig], ConfigManager]) -> None:
    indicator = tmp_path / "flannel" / "subnet.env"
    cfg = _config(tmp_path, readinessindicatorfile=str(indicator))
    netd = tmp_path / "net.d"
    _write(netd / "10-bridge.conflist", BRIDGE)
    mgr = manager_factory(cfg)
    await _eventually(lambda: "readinessindicatorfile" in mgr.state.reason)
    assert not mgr.ready and _multus_conf(netd) is None, "nothing is written before the default network is ready"

    indicator.parent.mkdir()  # the directory appears later: the manager starts watching it
    indicator.write_text("FLANNEL_NETWORK=10.244.0.0/16\n")
    assert await mgr.wait_ready(5)
    assert _multus_conf(netd) is not None
    assert "readinessindicatorfile" not in json.dumps(_multus_conf(netd))  # upstream blanks it too

    indicator.unlink()
    await _eventually(lambda: not mgr.ready)
    assert _multus_conf(netd) is not None, "the default network going away does not remove the node's CNI config"


async def test_manual_mode_installs_and_keeps_running(
    tmp_path: Path, manager_factory: Callable[[DaemonConfig], ConfigManager]
) -> None:
    source = tmp_path / "given" / "70-multus.conf"
    source.parent.mkdir()
    given = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim", "clusterNetwork": "x"}
    _write(source, given)
    cfg = _config(tmp_path, multusConfigFile=str(source))
    netd = tmp_path / "net.d"
    mgr = manager_factory(cfg)
    assert await mgr.wait_ready(5)
    installed = netd / "70-multus.conf"
    assert json.loads(installed.read_text()) == given
    assert not (netd / "00-multus.conf").exists()

    # Upstream copies once and exits; we keep the installed copy in step with the source.
    _write(source, {**given, "logLevel": "debug"})
    await _eventually(lambda: json.loads(installed.read_text()).get("logLevel") == "debug")
    assert mgr.ready

    source.write_text("{broken")
    await _eventually(lambda: not mgr.ready)
    assert json.loads(installed.read_text()).get("logLevel") == "debug", "a broken source is not installed"

    assert cleanup(cfg) == [], "the installed copy differs from the (broken) source: not ours to remove"
    _write(source, {**given, "logLevel": "debug"})
    await mgr.wait_ready(5)
    await mgr.stop()
    assert installed.exists()
    assert cleanup(cfg) == [str(installed)]
    assert not installed.exists() and source.exists()


def test_cleanup_removes_only_generated(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    target = tmp_path / "net.d" / "00-multus.conf"
    assert cleanup(cfg) == []
    _write(target, {"cniVersion": "0.3.1", "name": "someone-elses", "type": "bridge"})
    assert cleanup(cfg) == [] and target.exists()
    _write(target, {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus-shim", "clusterNetwork": "/x"})
    assert cleanup(cfg) == [str(target)] and not target.exists()


async def test_unwritable_target_is_reported(tmp_path: Path) -> None:
    # cniConfigDir is a file: the write fails; the manager reports it instead of dying.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    autoconf = tmp_path / "auto"
    autoconf.mkdir()
    _write(autoconf / "10-bridge.conflist", BRIDGE)
    cfg = config_from_dict({"cniVersion": "1.0.0", "cniConfigDir": str(blocker), "multusAutoconfigDir": str(autoconf)})
    mgr = ConfigManager(cfg)
    state = await mgr.reconcile()
    assert not state.ready and "cannot write" in state.reason
    assert os.path.isfile(blocker)
