"""Prometheus metrics of the cache service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OBJECTS = Gauge("multus_cache_objects", "Objects held in the cache", ["kind"])
WATCH_RESTARTS = Counter(
    "multus_cache_watch_restarts_total",
    "Watches re-established after an error, a 410 Gone relist or a credential reload",
    ["kind"],
)
SYNC_SECONDS = Gauge(
    "multus_cache_sync_seconds", "Duration of the last full list (initial sync or relist) per kind", ["kind"]
)
STATUS_WRITES = Counter(
    "multus_cache_network_status_writes_total",
    "network-status writes by outcome (delivered, delivered_late, pod_gone, retried)",
    ["outcome"],
)
STATUS_QUEUED = Gauge("multus_cache_network_status_queued", "network-status writes waiting for background delivery")
LIVE_LOOKUPS = Counter(
    "multus_cache_live_lookups_total", "Live GETs after a cache miss, by kind and result", ["kind", "result"]
)
GET_POD_SECONDS = Histogram(
    "multus_cache_get_pod_seconds",
    "GetPod latency, including the wait for a pod not cached yet",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0),
)
EVENTS_DROPPED = Counter(
    "multus_cache_events_dropped_total",
    "Pod events not sent: the pod had used up its share (a burst of 25, then one per 5 minutes, as upstream)",
)
STATUS_CONFLICTS = Counter(
    "multus_cache_network_status_conflicts_total", "pods/status writes that met a 409 conflict and were re-read"
)
