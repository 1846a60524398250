"""The executor's Prometheus metrics (served on its own metricsPort)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

DELEGATE_EXEC_DURATION = Histogram(
    "multus_delegate_exec_duration_seconds",
    "Time one delegate plugin process ran, by plugin type, CNI command and result.",
    ["plugin", "command", "result"],
    buckets=LATENCY_BUCKETS,
)
DELEGATES_IN_FLIGHT = Gauge(
    "multus_executor_delegates_in_flight",
    "Delegate plugin processes running right now.",
)
QUEUE_WAIT = Histogram(
    "multus_executor_queue_wait_seconds",
    "Time a delegate call waited for a free slot (executorMaxConcurrency).",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0),
)
MAX_CONCURRENCY = Gauge(
    "multus_executor_max_concurrency",
    "Delegate processes allowed at once (executorMaxConcurrency); more calls queue.",
)
QUEUED = Gauge(
    "multus_executor_delegates_queued",
    "Delegate calls waiting for a free slot.",
)
REJECTED = Counter(
    "multus_executor_rejected_total",
    "Calls refused before any plugin ran, by reason.",
    ["reason"],
)
