"""Kubeconfig files: reading the server, CA and client identity out of one, and
rendering the ones the certs service writes. Paths inside the written files are
relative to the kubeconfig's own directory (client-go and the Python client both
resolve them so), which keeps a kubeconfig valid wherever its directory is
mounted: on the host, in a container, or inside a delegate's chroot."""

from __future__ import annotations

import base64
import json
from typing import Any

import yaml

from services.common.kubeconfig import IN_CLUSTER_TOKEN as IN_CLUSTER_TOKEN
from services.common.kubeconfig import ApiEndpoint as ApiEndpoint
from services.common.kubeconfig import KubeconfigError as KubeconfigError
from services.common.kubeconfig import current_user, file_or_data
from services.common.kubeconfig import endpoint as endpoint
from services.common.kubeconfig import load as load


def user_client_certificate(doc: dict[str, Any], base_dir: str) -> bytes:
    """The current user's client certificate (PEM), b"" when it authenticates otherwise.
    Its expiry is read by the PKI worker (services.certs.pki_client), not here."""
    return file_or_data(current_user(doc), "client-certificate", "client-certificate-data", base_dir) or b""


def user_token_lifetime(doc: dict[str, Any], base_dir: str) -> tuple[float, float]:
    """(issued, not_after) of the current user's JWT bearer token (inline or tokenFile)
    when it has `exp`; (0, 0) if not."""
    user = current_user(doc)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_bytes = file_or_data(user, "tokenFile", "", base_dir)
        token = token_bytes.decode(errors="replace").strip() if token_bytes else ""
    return jwt_lifetime(str(token or ""))


def jwt_lifetime(token: str) -> tuple[float, float]:
    """(iat, exp) of a JWT without verifying it (for expiry monitoring only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return (0.0, 0.0)
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return (float(claims.get("iat", 0)), float(claims.get("exp", 0)))
    except (ValueError, TypeError, AttributeError):
        return (0.0, 0.0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _cluster_entry(ep: ApiEndpoint) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": ep.server}
    if ep.ca_pem:
        cluster["certificate-authority-data"] = _b64(ep.ca_pem)
    if ep.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    return cluster


def _document(ep: ApiEndpoint, user_name: str, user: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": _cluster_entry(ep)}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "multus-context", "context": {"cluster": "local", "user": user_name}}],
        "current-context": "multus-context",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def render_client_certificate(ep: ApiEndpoint, cert_file: str, key_file: str) -> str:
    """Kubeconfig for the per-node client certificate (cert and key by file, so rotation needs no rewrite)."""
    return _document(ep, "multus", {"client-certificate": cert_file, "client-key": key_file})


def render_token_file(ep: ApiEndpoint, token_file: str) -> str:
    """Kubeconfig for delegates: the token by file, so a refresh is one atomic file replace."""
    return _document(ep, "multus", {"tokenFile": token_file})
