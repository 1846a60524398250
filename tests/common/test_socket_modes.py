"""Every socket is born with its final mode (umask before bind), never
chmod-ed after bind: a chmod after leaves a moment in which the socket has the
process umask's looser mode (issue 12). In-process: the real gRPC server
wiring and the gateway's HTTP socket, with os.chmod watched."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web

from services.common.grpc_server import start_service
from services.gateway import http_api


@pytest.fixture
def chmods(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    real = os.chmod

    def watched(path: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        seen.append(str(path))
        real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", watched)
    old = os.umask(0o022)  # a typical umask: a chmod-after design would bind 0755 first
    try:
        yield seen
    finally:
        os.umask(old)


def _register(server: grpc.aio.Server) -> Iterable[str]:
    return ()


async def test_grpc_sockets_are_born_0600(tmp_path: Path, chmods: list[str]) -> None:
    socket = tmp_path / "grpc" / "svc.sock"
    svc = await start_service("svc", str(socket), _register)
    try:
        assert stat.S_IMODE(os.stat(socket).st_mode) == 0o600
        assert str(socket) not in chmods
    finally:
        await svc.stop(0)


async def test_grpc_sockets_with_a_group_are_born_0660(tmp_path: Path, chmods: list[str]) -> None:
    socket = tmp_path / "grpc" / "svc.sock"
    svc = await start_service("svc", str(socket), _register, socket_group=str(os.getgid()))
    try:
        assert stat.S_IMODE(os.stat(socket).st_mode) == 0o660
        assert str(socket) not in chmods
        assert stat.S_IMODE(os.stat(socket.parent).st_mode) == 0o1770
    finally:
        await svc.stop(0)


async def test_the_gateways_http_socket_is_born_0600(tmp_path: Path, chmods: list[str]) -> None:
    socket = tmp_path / "sock" / "multus.sock"
    runner = await http_api.start_unix_site(web.Application(), str(socket))
    try:
        assert stat.S_IMODE(os.stat(socket).st_mode) == 0o600
        assert str(socket) not in chmods
    finally:
        await runner.cleanup()
