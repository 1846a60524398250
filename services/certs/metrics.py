"""The certs service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CREDENTIAL_EXPIRY = Gauge(
    "multus_credential_expiry_timestamp_seconds",
    "When each credential expires (Unix seconds); absent for credentials that do not expire",
    ["credential"],
)
CREDENTIAL_ISSUED = Gauge(
    "multus_credential_issued_timestamp_seconds",
    "When each expiring credential was issued (Unix seconds): lifetime = expiry - issued",
    ["credential"],
)
CREDENTIAL_ROTATIONS = Counter(
    "multus_credential_rotations_total",
    "Credential issuance/renewal attempts by result (success, failure, denied)",
    ["credential", "result"],
)
RBAC_PERMISSION_MISSING = Gauge(
    "multus_rbac_permission_missing",
    "1 when the node's identity lacks a permission it needs (RBAC preflight), else 0",
    ["verb", "resource", "subresource"],
)
CREDENTIALS_HEALTHY = Gauge(
    "multus_credentials_healthy",
    "1 when every credential is valid and outside its last 10% and no permission is missing",
)
