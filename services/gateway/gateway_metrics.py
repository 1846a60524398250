"""The gateway's Prometheus metrics: upstream's request counter plus latency
histograms per CNI command and per delegate, and the DEL spool replay count."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS

# Upstream's name and labels, kept so existing dashboards work.
REQUESTS = Counter("multus_server_request_total", "Counter of HTTP requests", ["handler", "code", "method"])
COMMAND_SECONDS = Histogram(
    "multus_gateway_cni_command_duration_seconds",
    "Time to serve one CNI command, by command and outcome",
    ["command", "outcome"],
    buckets=LATENCY_BUCKETS,
)
DELEGATE_SECONDS = Histogram(
    "multus_gateway_delegate_duration_seconds",
    "Time one delegate plugin call took, by plugin type and command",
    ["plugin", "command", "outcome"],
    buckets=LATENCY_BUCKETS,
)
SPOOL_REPLAYS = Counter(
    "multus_gateway_del_spool_replays_total",
    "Spooled DEL replays, by outcome (replayed, failed: retried with backoff, given_up: moved to dead/)",
    ["outcome"],
)
TEARDOWN_FAILURES = Counter(
    "multus_gateway_delegate_del_failures_total",
    "Delegate DELs that failed, by whether the attachment had completed ADD (`attached`: the record is kept"
    " and the DEL fails so the runtime retries) or not (`unconfirmed`: logged, evented, not returned)",
    ["attachment"],
)
CALLS_CANCELLED = Counter(
    "multus_gateway_cni_calls_cancelled_total",
    "CNI calls cancelled before they finished, by reason (deadline, superseded, caller_gone)",
    ["command", "reason"],
)
DYNAMIC_CHANGES = Counter(
    "multus_gateway_dynamic_network_changes_total",
    "Dynamic networks: interfaces added or removed on running pods (operation add, remove) and"
    " network-status rewrites (status), by outcome (ok, failed)",
    ["operation", "outcome"],
)
DYNAMIC_RECONCILES = Counter(
    "multus_gateway_dynamic_reconciles_total",
    "Dynamic networks: passes over one pod, by outcome (converged: nothing to change; changed; failed:"
    " retried on the next annotation change or after a backoff; ignored: deleting, sandbox gone or"
    " not attached by this node; deferred: a failed change still in its backoff)",
    ["outcome"],
)
DYNAMIC_STREAM_RECONNECTS = Counter(
    "multus_gateway_dynamic_stream_reconnects_total",
    "Dynamic networks: times the pod-change stream from the cache was (re)opened after it ended",
)
