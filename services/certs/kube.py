"""The Kubernetes API as the certs service uses it (synchronous: call through
asyncio.to_thread): raw JSON over the common transport
(services.common.kube_api), CSRs watched with the common watch stream
(services.common.kube_watch). No typed client: its models and their pydantic
schemas were most of this service's memory. Every call has a request
timeout; errors come back as KubeError with no credential material in them."""

from __future__ import annotations

import base64
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.certs.csr_spec import SIGNER, USAGES, CsrView
from services.certs.kubeconfig import ApiEndpoint
from services.certs.rbac import Permission
from services.common import kube_api
from services.common.kube_api import TRANSPORT_ERRORS, ApiError, KubeClient
from services.common.kube_watch import Gone, ResourceCalls, WatchFailed, watch_events
from services.common.logs import redact

ApiClient = KubeClient

REQUEST_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
WATCH_SECONDS = 30
MIN_WATCH_SECONDS = 1.0  # a shorter watch without events is not re-opened at once
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
TIMEOUT = (CONNECT_TIMEOUT, REQUEST_TIMEOUT)
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
    if isinstance(exc, ApiError):
        return KubeError(exc.status, f"{what}: HTTP {exc.status}: {exc.message}")
    return KubeError(0, f"{what}: API server unreachable: {type(exc).__name__}")


_TRANSPORT_ERRORS = TRANSPORT_ERRORS


def new_client(kubeconfig_path: str = "") -> ApiClient:
    """A client for a kubeconfig file, or in-cluster credentials when no path is given."""
    try:
        # Fails fast when the server is down: the caller owns retrying, with backoff.
        return kube_api.build_api_client(kubeconfig_path)
    except Exception as exc:  # the official loader (exec plugins) raises its own kinds too
        raise KubeError(0, f"cannot load API credentials: {type(exc).__name__}: {exc}") from exc


def close(api: ApiClient) -> None:
    # Closing a pool must never hide the real outcome of the calls made with it.
    with contextlib.suppress(Exception):
        api.close()


def endpoint_of(api: ApiClient) -> ApiEndpoint:
    """Server and CA of a client (whatever credentials it was built from)."""
    return api.endpoint


def _send(api: ApiClient, what: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return kube_api.send_json(api, method, path, body, TIMEOUT, answer=True)
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error(what, exc) from exc


# ---------------------------------------------------------------- CSRs ---


def create_csr(api: ApiClient, node: str, request_pem: bytes, expiration_seconds: int) -> str:
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": f"multus-{node}-", "labels": {"multus.cni.io/node": node[:63]}},
        "spec": {
            "request": base64.b64encode(request_pem).decode(),
            "signerName": SIGNER,
            "usages": list(ORDERED_USAGES),
            # Older API servers (1.20) drop this; the rotation follows the real notAfter.
            "expirationSeconds": expiration_seconds,
        },
    }
    created = _send(api, "create CertificateSigningRequest", "POST", CSR_PATH, body)
    return str((created.get("metadata") or {}).get("name", ""))


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
        obj = kube_api.get_json(api, f"{CSR_PATH}/{name}", TIMEOUT)
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
        doc = kube_api.get_json(api, CSR_PATH, TIMEOUT) or {}
    except _TRANSPORT_ERRORS as exc:
        raise _kube_error("list CertificateSigningRequests", exc) from exc
    return list(doc.get("items") or [])


def approve_csr(api: ApiClient, name: str, message: str) -> None:
    what = f"approve CertificateSigningRequest {name}"
    csr = _csr_json(api, name)
    status = csr.setdefault("status", {}) or {}
    status["conditions"] = [
        *(status.get("conditions") or []),
        {"type": "Approved", "status": "True", "reason": "MultusAutoApproved", "message": message},
    ]
    csr["status"] = status
    # The resourceVersion read above makes a concurrent decision a 409, not a lost update.
    _send(api, what, "PUT", f"{CSR_PATH}/{name}/approval", csr)


# -------------------------------------------------------- TokenRequest ---


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires: float

    def __repr__(self) -> str:  # never print the token
        return f"IssuedToken(expires={self.expires})"


def request_token(api: ApiClient, namespace: str, service_account: str, audience: str, seconds: int) -> IssuedToken:
    what = f"TokenRequest for serviceaccount {namespace}/{service_account}"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [audience] if audience else [], "expirationSeconds": seconds},
    }
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
    status = _send(api, what, "POST", path, body).get("status") or {}
    try:
        expires = datetime.fromisoformat(str(status["expirationTimestamp"])).timestamp()
        return IssuedToken(str(status["token"]), expires)
    except (KeyError, ValueError) as exc:
        raise KubeError(0, f"{what}: the answer has no token or expiry") from exc


# ------------------------------------------------- access review ---


def access_allowed(api: ApiClient, perm: Permission) -> bool:
    attributes = {
        "verb": perm.verb,
        "group": perm.group,
        "resource": perm.resource,
        "subresource": perm.subresource,
        "namespace": perm.namespace,
        "name": perm.name,
    }
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v or k == "group"}},
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    answer = _send(api, "SelfSubjectAccessReview", "POST", path, review)
    return bool((answer.get("status") or {}).get("allowed"))
