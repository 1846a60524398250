"""The cache's connections to the real API server carry TCP keepalive, so a
watch whose peer vanished is dropped within about a minute instead of at its
read timeout (minutes of silently stale cache)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.cache.kube_client import build_api_client
from services.common.credentials import ApiCredentials
from services.common.kube_api import KEEPALIVE_COUNT, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, get_json

pytestmark = pytest.mark.kube


def test_api_connections_use_tcp_keepalive(kube_api: Path) -> None:
    api = build_api_client(ApiCredentials("kubeconfig", str(kube_api)))
    try:
        assert get_json(api, "/api/v1/namespaces/default", (5.0, 10.0)) is not None
        idle = api.pool.pool
        socks = [conn.sock for conn in list(idle.queue if idle else ()) if conn is not None and conn.sock]
        assert socks, "the request's connection is back in the pool"
        sock = socks[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT
        # urllib3's own default (no Nagle) is kept alongside.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        api.close()
