"""The Kubernetes API as the certs service uses it (synchronous client: call
through asyncio.to_thread). The client comes from the common builder
(services.common.kube_api) and CSRs are watched with the common watch stream
(services.common.kube_watch). Every call has a request timeout; errors come
back as KubeError with no credential material in them."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from services.certs.approval import SIGNER, USAGES, CsrView
from services.certs.kubeconfig import ApiEndpoint
from services.certs.rbac import Permission
from services.common import kube_api
from services.common.kube_watch import Gone, ResourceCalls, WatchFailed, watch_events
from services.common.logs import redact

# The kubernetes package is only partly typed; this adapter is its one user here,
# and what leaves it is typed.
k8s: Any = kubernetes.client
k8s_config: Any = kubernetes.config
ApiClient = Any

REQUEST_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
WATCH_SECONDS = 30
MIN_WATCH_SECONDS = 1.0  # a shorter watch without events is not re-opened at once
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
# Every CSR, as the approver lists and watches them (raw JSON objects).
CSR_CALLS = ResourceCalls("CertificateSigningRequest", CSR_PATH, (), dict)
ORDERED_USAGES = ("digital signature", "client auth")
assert frozenset(ORDERED_USAGES) == USAGES


class KubeError(Exception):
    """An API call failed. `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(redact(message))
        self.status = status

    @property
    def unauthorized(self) -> bool:
        return self.status in (401, 403)


class CsrDenied(Exception):
    """The CSR was denied or failed; carries the condition's reason and message."""


def _kube_error(what: str, exc: BaseException) -> KubeError:
    if isinstance(exc, ApiException):
        detail = exc.reason or ""
        try:
            body = json.loads(exc.body or "{}")
            detail = body.get("message") or detail
        except (ValueError, TypeError):
            pass
        return KubeError(int(exc.status or 0), f"{what}: HTTP {exc.status}: {detail}")
    return KubeError(0, f"{what}: API server unreachable: {type(exc).__name__}")


_TRANSPORT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


def new_client(kubeconfig_path: str = "") -> ApiClient:
    """A client for a kubeconfig file, or in-cluster credentials when no path is given."""
    try:
        # Fails fast when the server is down: the caller owns retrying, with backoff.
        return kube_api.build_api_client(kubeconfig_path)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise KubeError(0, f"cannot load API credentials: {type(exc).__name__}: {exc}") from exc


def close(api: ApiClient) -> None:
    # Closing a pool must never hide the real outcome of the calls made with it.
    with contextlib.suppress(Exception):
        api.close()


def endpoint_of(api: ApiClient) -> ApiEndpoint:
    """Server and CA of a client (whatever credentials it was built from)."""
    cfg = api.configuration
    ca = b""
    if cfg.ssl_ca_cert and os.path.exists(cfg.ssl_ca_cert):
        with open(cfg.ssl_ca_cert, "rb") as f:
            ca = f.read()
    return ApiEndpoint(str(cfg.host), ca, not cfg.verify_ssl)


# ---------------------------------------------------------------- CSRs ---


def create_csr(api: ApiClient, node: str, request_pem: bytes, expiration_seconds: int) -> str:
    body = k8s.V1CertificateSigningRequest(
        metadata=k8s.V1ObjectMeta(generate_name=f"multus-{node}-", labels={"multus.cni.io/node": node[:63]}),
        spec=k8s.V1CertificateSigningRequestSpec(
            request=base64.b64encode(request_pem).decode(),
            signer_name=SIGNER,
            usages=list(ORDERED_USAGES),
            # Older API servers (1.20) drop this; the rotation follows the real notAfter.
            expiration_seconds=expiration_seconds,
        ),
    )
    try:
        created = k8s.CertificatesV1Api(api).create_certificate_signing_request(body, _request_timeout=REQUEST_TIMEOUT)
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error("create CertificateSigningRequest", exc) from exc
    return str(created.metadata.name)


@dataclass(frozen=True)
class CsrOutcome:
    state: str  # "issued", "denied", "pending"
    certificate: bytes = b""
    reason: str = ""


def csr_outcome(obj: dict[str, Any]) -> CsrOutcome:
    """Where a CSR (as a JSON object) stands: issued once approved and signed, denied or failed, else pending."""
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Denied", "Failed") and cond.get("status", "True") == "True":
            reason = f"{cond.get('type')}: {cond.get('reason', '')} {cond.get('message', '')}".strip()
            return CsrOutcome("denied", reason=reason)
    approved = any(
        c.get("type") == "Approved" and c.get("status", "True") == "True" for c in status.get("conditions") or []
    )
    if approved and status.get("certificate"):
        return CsrOutcome("issued", base64.b64decode(status["certificate"]))
    return CsrOutcome("pending")


def _csr_json(api: ApiClient, name: str) -> dict[str, Any]:
    try:
        obj = kube_api.get_json(api, f"{CSR_PATH}/{name}", (CONNECT_TIMEOUT, REQUEST_TIMEOUT))
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error("get CertificateSigningRequest", exc) from exc
    if obj is None:
        raise KubeError(404, f"get CertificateSigningRequest: {name} not found")
    return obj


def wait_for_certificate(api: ApiClient, name: str, timeout: float) -> bytes:
    """Watch one CSR until it is approved and signed. Raises CsrDenied, TimeoutError or KubeError."""
    deadline = time.monotonic() + timeout
    while True:
        obj = _csr_json(api, name)
        outcome = csr_outcome(obj)
        if outcome.state == "issued":
            return outcome.certificate
        if outcome.state == "denied":
            raise CsrDenied(outcome.reason)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"CertificateSigningRequest {name} not approved and issued within {timeout:.0f}s")
        query = [
            ("fieldSelector", f"metadata.name={name}"),
            ("resourceVersion", obj["metadata"]["resourceVersion"]),
            ("watch", True),
            ("timeoutSeconds", max(1, min(int(remaining), WATCH_SECONDS))),
        ]
        read_timeout = min(remaining, WATCH_SECONDS) + 10
        try:
            response = kube_api.request(api, "GET", CSR_PATH, query=query, timeout=(CONNECT_TIMEOUT, read_timeout))
            try:
                for _kind, raw in watch_events(response, MIN_WATCH_SECONDS):
                    if csr_outcome(raw).state != "pending":
                        break  # the GET above reads it whole
            finally:
                response.close()
                response.release_conn()
        except Gone:
            continue  # the CSR changed past our resourceVersion: read it again
        except WatchFailed:
            # Closed at once with nothing to say: pause instead of a busy GET + watch loop.
            time.sleep(max(0.0, min(MIN_WATCH_SECONDS, deadline - time.monotonic())))
        except _TRANSPORT_ERRORS as exc:
            raise _kube_error("watch CertificateSigningRequest", exc) from exc


def csr_view(obj: dict[str, Any]) -> CsrView:
    spec = obj.get("spec") or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    try:
        request = base64.b64decode(spec.get("request") or "")
    except ValueError:
        request = b""
    return CsrView(
        name=str((obj.get("metadata") or {}).get("name", "")),
        signer_name=str(spec.get("signerName", "")),
        username=str(spec.get("username", "")),
        usages=tuple(spec.get("usages") or ()),
        request=request,
        decided=any(c.get("type") in ("Approved", "Denied") for c in conditions),
    )


def list_csrs(api: ApiClient) -> list[dict[str, Any]]:
    try:
        response = kube_api.request(api, "GET", CSR_PATH, timeout=(CONNECT_TIMEOUT, REQUEST_TIMEOUT))
        try:
            doc = json.loads(response.data)
        finally:
            response.release_conn()
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error("list CertificateSigningRequests", exc) from exc
    return list(doc.get("items") or [])


def approve_csr(api: ApiClient, name: str, message: str) -> None:
    certs = k8s.CertificatesV1Api(api)
    try:
        csr = certs.read_certificate_signing_request(name, _request_timeout=REQUEST_TIMEOUT)
        csr.status = csr.status or k8s.V1CertificateSigningRequestStatus()
        csr.status.conditions = [
            *(csr.status.conditions or []),
            k8s.V1CertificateSigningRequestCondition(
                type="Approved", status="True", reason="MultusAutoApproved", message=message
            ),
        ]
        certs.replace_certificate_signing_request_approval(name, csr, _request_timeout=REQUEST_TIMEOUT)
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error(f"approve CertificateSigningRequest {name}", exc) from exc


# -------------------------------------------------------- TokenRequest ---


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires: float

    def __repr__(self) -> str:  # never print the token
        return f"IssuedToken(expires={self.expires})"


def request_token(api: ApiClient, namespace: str, service_account: str, audience: str, seconds: int) -> IssuedToken:
    body = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[audience] if audience else [], expiration_seconds=seconds)
    )
    try:
        resp = k8s.CoreV1Api(api).create_namespaced_service_account_token(
            service_account, namespace, body, _request_timeout=REQUEST_TIMEOUT
        )
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error(f"TokenRequest for serviceaccount {namespace}/{service_account}", exc) from exc
    return IssuedToken(str(resp.status.token), resp.status.expiration_timestamp.timestamp())


# ------------------------------------------------- access review ---


def access_allowed(api: ApiClient, perm: Permission) -> bool:
    review = k8s.V1SelfSubjectAccessReview(
        spec=k8s.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.V1ResourceAttributes(
                verb=perm.verb,
                group=perm.group,
                resource=perm.resource,
                subresource=perm.subresource or None,
                namespace=perm.namespace or None,
                name=perm.name or None,
            )
        )
    )
    try:
        resp = k8s.AuthorizationV1Api(api).create_self_subject_access_review(review, _request_timeout=REQUEST_TIMEOUT)
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error("SelfSubjectAccessReview", exc) from exc
    return bool(resp.status.allowed)
