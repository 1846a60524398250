"""No daemon on the socket: ADD/CHECK/GC/STATUS fail with 11 after the bounded wait; DEL is spooled."""

from __future__ import annotations

import base64
import json
import re
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.shim.conftest import CONTAINER_ID, call_shim, cni_env, network_conf
from tests.shim.fake_daemon import Answer, FakeDaemon

RESULT = b'{"Result": {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}]}}'
SPOOL_NAME = re.compile(r"^(\d{19})-([A-Za-z0-9_.-]+)\.json$")


def stale_socket(socket_dir: Path) -> None:
    """A socket file nobody listens on: what a crashed daemon leaves behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(socket_dir / "multus.sock"))
    sock.close()


@pytest.mark.parametrize("command", ["ADD", "CHECK", "GC", "STATUS"])
@pytest.mark.parametrize("leftover", ["no socket file", "stale socket file"])
def test_fails_with_11_after_the_bounded_wait(shim_bin: Path, socket_dir: Path, command: str, leftover: str) -> None:
    if leftover == "stale socket file":
        stale_socket(socket_dir)
    started = time.monotonic()
    result = call_shim(shim_bin, cni_env(command, MULTUS_SHIM_READY_TIMEOUT="0.6"), network_conf(socket_dir, "0.4.0"))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    error = result.json()
    assert error["code"] == 11 and error["cniVersion"] == "0.4.0"
    assert str(socket_dir / "multus.sock") in error["details"]
    assert 0.6 <= elapsed < 5, elapsed
    assert not (socket_dir / "del-spool").exists()


def spool_files(socket_dir: Path) -> list[Path]:
    return sorted((socket_dir / "del-spool").iterdir())


def test_del_is_spooled_in_the_exact_format(shim_bin: Path, socket_dir: Path) -> None:
    conf = network_conf(socket_dir, "0.3.1")
    env = cni_env("DEL", MULTUS_SHIM_DEL_TIMEOUT="0.4", CNI_NETNS="")
    before = time.time_ns()
    started = time.monotonic()
    result = call_shim(shim_bin, env, conf)
    assert result.returncode == 0, result
    assert result.stdout == b""
    assert time.monotonic() - started >= 0.4
    spool = socket_dir / "del-spool"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    [entry] = spool_files(socket_dir)
    match = SPOOL_NAME.match(entry.name)
    assert match, entry.name
    assert before <= int(match.group(1)) <= time.time_ns()
    assert match.group(2) == CONTAINER_ID
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    body = json.loads(entry.read_bytes())
    # Exactly the body POST /cni would have carried: CNI_* env and the stdin config as base64.
    assert body == {
        "env": {k: v for k, v in env.items() if k.startswith("CNI_")},
        "config": base64.b64encode(conf).decode(),
    }
    assert str(entry) in result.stderr.decode()


def test_two_dels_make_two_files_and_no_temp_files(shim_bin: Path, socket_dir: Path) -> None:
    for cid in ("aaa", "bbb"):
        assert (
            call_shim(shim_bin, cni_env("DEL", cid, MULTUS_SHIM_DEL_TIMEOUT="0"), network_conf(socket_dir)).returncode
            == 0
        )
    names = [p.name for p in spool_files(socket_dir)]
    assert [SPOOL_NAME.match(n).group(2) for n in names] == ["aaa", "bbb"]  # type: ignore[union-attr]
    assert not [n for n in names if n.startswith(".")]


def test_socket_dir_created_when_missing(shim_bin: Path, socket_dir: Path) -> None:
    missing = socket_dir / "never-created"
    result = call_shim(shim_bin, cni_env("DEL", MULTUS_SHIM_DEL_TIMEOUT="0"), network_conf(missing))
    assert result.returncode == 0
    assert len(list((missing / "del-spool").iterdir())) == 1


def test_add_waits_for_a_daemon_that_comes_up(shim_bin: Path, socket_dir: Path) -> None:
    daemon = FakeDaemon(socket_dir, "ours", cni_answers=[Answer(200, RESULT)])
    timer = threading.Timer(0.5, daemon.start)
    timer.start()
    try:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_READY_TIMEOUT="10"), network_conf(socket_dir))
    finally:
        timer.join()
        daemon.stop()
    assert result.returncode == 0, result
    assert result.json()["ips"] == [{"address": "10.1.0.2/24"}]


def test_del_delivered_when_the_daemon_comes_up_within_its_deadline(shim_bin: Path, socket_dir: Path) -> None:
    daemon = FakeDaemon(socket_dir, "upstream")
    timer = threading.Timer(0.4, daemon.start)
    timer.start()
    try:
        result = call_shim(shim_bin, cni_env("DEL", MULTUS_SHIM_DEL_TIMEOUT="10"), network_conf(socket_dir))
    finally:
        timer.join()
        daemon.stop()
    assert result.returncode == 0
    assert ("POST", "/cni") in daemon.paths()
    assert not (socket_dir / "del-spool").exists()
