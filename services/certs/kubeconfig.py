"""Kubeconfig files: reading the server, CA and client identity out of one, and
rendering the ones the certs service writes. Paths inside the written files are
relative to the kubeconfig's own directory (client-go and the Python client both
resolve them so), which keeps a kubeconfig valid wherever its directory is
mounted: on the host, in a container, or inside a delegate's chroot."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

import yaml

from services.certs import pki

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class KubeconfigError(ValueError):
    """A kubeconfig is missing, unreadable, or lacks what we need from it."""


@dataclass(frozen=True)
class ApiEndpoint:
    """Where the API server is and how to trust it (no client identity)."""

    server: str
    ca_pem: bytes = b""
    insecure_skip_tls_verify: bool = False


def load(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a mapping")
    return doc


def _named(doc: dict[str, Any], section: str, name: str, key: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            return dict(item[key])
    raise KubeconfigError(f"kubeconfig: no {key} named {name!r}")


def _context(doc: dict[str, Any]) -> dict[str, Any]:
    name = doc.get("current-context")
    contexts = doc.get("contexts") or []
    if not name and len(contexts) == 1:
        name = contexts[0].get("name")
    if not name:
        raise KubeconfigError("kubeconfig: no current-context")
    return _named(doc, "contexts", str(name), "context")


def _file_or_data(section: dict[str, Any], file_key: str, data_key: str, base_dir: str) -> bytes | None:
    if section.get(data_key):
        try:
            return base64.b64decode(section[data_key])
        except (binascii.Error, ValueError) as exc:
            raise KubeconfigError(f"kubeconfig: {data_key} is not base64") from exc
    if section.get(file_key):
        path = os.path.join(base_dir, str(section[file_key]))
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise KubeconfigError(f"kubeconfig: cannot read {file_key} {path}: {type(exc).__name__}") from exc
    return None


def endpoint(doc: dict[str, Any], base_dir: str) -> ApiEndpoint:
    cluster = _named(doc, "clusters", str(_context(doc).get("cluster", "")), "cluster")
    server = str(cluster.get("server") or "")
    if not server:
        raise KubeconfigError("kubeconfig: cluster has no server")
    ca = _file_or_data(cluster, "certificate-authority", "certificate-authority-data", base_dir) or b""
    return ApiEndpoint(server, ca, bool(cluster.get("insecure-skip-tls-verify")))


def user_expiry(doc: dict[str, Any], base_dir: str) -> tuple[float, float]:
    """(issued, not_after) of the current user's credential when it can be
    known: a client certificate, or a JWT bearer token with `exp`. (0, 0) if not."""
    user = _named(doc, "users", str(_context(doc).get("user", "")), "user")
    cert = _file_or_data(user, "client-certificate", "client-certificate-data", base_dir)
    if cert:
        try:
            facts = pki.certificate_facts(cert)
        except ValueError:
            return (0.0, 0.0)
        return (facts.not_before, facts.not_after)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_bytes = _file_or_data(user, "tokenFile", "", base_dir)
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
