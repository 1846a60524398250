"""Reading kubeconfig files and in-cluster credentials into what a client
needs to reach the API server: where it is, how to trust it, who we are.
Pure but for reading the files the kubeconfig names; the transport that uses
the result is services.common.kube_api.

Paths inside a kubeconfig are relative to its own directory, as client-go and
the Python client resolve them. Credentials this module cannot turn into a
TLS identity or a bearer token (an `exec` or `auth-provider` user, a proxy)
are flagged `delegated`: the transport then lets the official `kubernetes`
client's loader produce them, and only then imports it.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER_TOKEN = f"{IN_CLUSTER_DIR}/token"
IN_CLUSTER_CA = f"{IN_CLUSTER_DIR}/ca.crt"

# User and cluster keys this module handles itself; any other credential key
# hands the whole kubeconfig to the official client's loader.
_OWN_USER_KEYS = frozenset(
    {
        "client-certificate",
        "client-certificate-data",
        "client-key",
        "client-key-data",
        "token",
        "tokenFile",
        "username",
        "password",
        "extensions",
    }
)
_DELEGATED_CLUSTER_KEYS = frozenset({"proxy-url"})


class KubeconfigError(ValueError):
    """A kubeconfig is missing, unreadable, or lacks what we need from it."""


@dataclass(frozen=True)
class ApiEndpoint:
    """Where the API server is and how to trust it (no client identity)."""

    server: str
    ca_pem: bytes = b""
    insecure_skip_tls_verify: bool = False


@dataclass(frozen=True)
class ClientSettings:
    """Everything a transport needs; secrets never appear in repr()."""

    endpoint: ApiEndpoint
    tls_server_name: str = ""
    client_cert_pem: bytes = b""
    client_key_pem: bytes = b""
    token: str = ""  # a fixed bearer token
    token_file: str = ""  # re-read periodically (rotating ServiceAccount tokens)
    username: str = ""
    password: str = ""
    delegated: str = ""  # the kubeconfig path when its user needs the official client's loader

    def __repr__(self) -> str:
        return f"ClientSettings(server={self.endpoint.server!r}, delegated={bool(self.delegated)})"


def load(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a mapping")
    return doc


def named(doc: Mapping[str, Any], section: str, name: str, key: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            return dict(item[key])
    raise KubeconfigError(f"kubeconfig: no {key} named {name!r}")


def context(doc: Mapping[str, Any]) -> dict[str, Any]:
    name = doc.get("current-context")
    contexts = doc.get("contexts") or []
    if not name and len(contexts) == 1:
        name = contexts[0].get("name")
    if not name:
        raise KubeconfigError("kubeconfig: no current-context")
    return named(doc, "contexts", str(name), "context")


def current_user(doc: Mapping[str, Any]) -> dict[str, Any]:
    return named(doc, "users", str(context(doc).get("user", "")), "user")


def file_or_data(section: Mapping[str, Any], file_key: str, data_key: str, base_dir: str) -> bytes | None:
    if data_key and section.get(data_key):
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


def endpoint(doc: Mapping[str, Any], base_dir: str) -> ApiEndpoint:
    cluster = named(doc, "clusters", str(context(doc).get("cluster", "")), "cluster")
    server = str(cluster.get("server") or "")
    if not server:
        raise KubeconfigError("kubeconfig: cluster has no server")
    ca = file_or_data(cluster, "certificate-authority", "certificate-authority-data", base_dir) or b""
    return ApiEndpoint(server, ca, bool(cluster.get("insecure-skip-tls-verify")))


def client_settings(path: str) -> ClientSettings:
    """The current context of a kubeconfig file, ready for a transport."""
    doc = load(path)
    base_dir = os.path.dirname(path)
    ep = endpoint(doc, base_dir)
    cluster = named(doc, "clusters", str(context(doc).get("cluster", "")), "cluster")
    user = current_user(doc) if context(doc).get("user") else {}  # no user: anonymous
    if set(user) - _OWN_USER_KEYS or set(cluster) & _DELEGATED_CLUSTER_KEYS:
        return ClientSettings(ep, delegated=path)
    cert = file_or_data(user, "client-certificate", "client-certificate-data", base_dir) or b""
    key = file_or_data(user, "client-key", "client-key-data", base_dir) or b""
    if bool(cert) != bool(key):
        raise KubeconfigError("kubeconfig: a client certificate needs both the certificate and its key")
    token_file = str(user.get("tokenFile") or "")
    return ClientSettings(
        ep,
        tls_server_name=str(cluster.get("tls-server-name") or ""),
        client_cert_pem=cert,
        client_key_pem=key,
        token=str(user.get("token") or ""),
        token_file=os.path.join(base_dir, token_file) if token_file else "",
        username=str(user.get("username") or ""),
        password=str(user.get("password") or ""),
    )


def in_cluster_settings(
    environ: Mapping[str, str] | None = None, token_file: str = IN_CLUSTER_TOKEN, ca_file: str = IN_CLUSTER_CA
) -> ClientSettings:
    """A pod's ServiceAccount credentials (the token file is re-read as the kubelet rotates it)."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeconfigError("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
    if not os.path.isfile(token_file):
        raise KubeconfigError(f"in-cluster: no ServiceAccount token at {token_file}")
    try:
        with open(ca_file, "rb") as f:
            ca = f.read()
    except OSError as exc:
        raise KubeconfigError(f"in-cluster: cannot read {ca_file}: {type(exc).__name__}") from exc
    server_host = f"[{host}]" if ":" in host else host
    return ClientSettings(ApiEndpoint(f"https://{server_host}:{port}", ca), token_file=token_file)
