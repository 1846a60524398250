"""Prometheus helpers: one registry per process, served on the service's own port."""

from __future__ import annotations

from prometheus_client import start_http_server

_started: set[int] = set()

# Latency buckets for CNI work: plugin calls take milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` (idempotent within a process)."""
    if port and port not in _started:
        start_http_server(port, addr=addr)
        _started.add(port)
