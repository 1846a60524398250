"""Prometheus helpers: one registry per process, served on the service's own port."""

from __future__ import annotations

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import Collector

_started: set[int] = set()

# Latency buckets for CNI work: plugin calls take milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` (idempotent within a process)."""
    if port and port not in _started:
        start_http_server(port, addr=addr)
        _started.add(port)


_collectors: dict[str, Collector] = {}


def register_collector(key: str, collector: Collector) -> None:
    """Register a scrape-time collector, replacing the one registered under `key`
    before (a service wired twice in one process must not fail on duplicates)."""
    previous = _collectors.pop(key, None)
    if previous is not None:
        REGISTRY.unregister(previous)
    REGISTRY.register(collector)
    _collectors[key] = collector
