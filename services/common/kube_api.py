"""The one Kubernetes API transport (cache and certs): raw JSON requests over
one urllib3 connection pool with the kubeconfig's TLS material.

Why not the official client's ApiClient: importing `kubernetes` at all loads
its config loaders, `pydantic`, `requests` and `oauthlib` (about 15 MiB of
anonymous memory per process before the first call, and 20 MiB more of
schemas once a typed method runs), for a handful of JSON requests the cache
and certs services make. The official client's loader is still used, lazily,
for the kubeconfigs only it understands (`exec` or `auth-provider` users, a
proxy): see services.common.kubeconfig. Which kubeconfig to use is decided in
services.common.credentials.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.connection import HTTPConnection

from services.common.kubeconfig import (
    ApiEndpoint,
    ClientSettings,
    KubeconfigError,
    client_settings,
    in_cluster_settings,
)

Timeout = tuple[float, float]  # (connect, read)

KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3
POOL_SIZE = 16  # watches, live GETs and writes share the pool
TOKEN_FILE_REREAD_SECONDS = 60.0  # as client-go's cached token source
USER_AGENT = "multus-grpc"


class ApiError(Exception):
    """A non-2xx answer: `status` (0 when the server was not reached), `reason`,
    and the server's Status body as text. Never carries credentials."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def message(self) -> str:
        """The Status object's message (else the HTTP reason)."""
        try:
            return str(json.loads(self.body or "{}").get("message") or self.reason)
        except (ValueError, AttributeError):
            return self.reason

    def caused_by(self, field: str) -> bool:
        """Whether the Status names `field` among its causes (e.g. metadata.uid of a 422)."""
        try:
            causes = (json.loads(self.body or "{}").get("details") or {}).get("causes") or []
        except (ValueError, AttributeError):
            return False
        return any(isinstance(c, dict) and c.get("field") == field for c in causes)


def _keepalive_socket_options() -> list[tuple[int, int, int]]:
    """TCP keepalive: a watch whose peer vanished (node partitioned, a NAT or load
    balancer dropped the flow) otherwise goes unnoticed until its read timeout,
    up to ~6.5 min of silently stale cache. Probes after 30 s idle, every 10 s,
    3 unanswered: a dead connection is dropped within ~60 s. urllib3's own
    default (no Nagle) is kept: a list replaces its defaults."""
    return [
        *HTTPConnection.default_socket_options,
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT),
    ]


def _load_client_identity(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl loads a certificate chain only from files: hand it anonymous memory
    files, so key material never lands on a disk."""
    fds = []
    try:
        for name, data in (("cert", cert_pem), ("key", key_pem)):
            fd = os.memfd_create(f"kube-client-{name}", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, data)
        context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)


def _ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    ep = settings.endpoint
    if ep.ca_pem:
        context = ssl.create_default_context(cadata=ep.ca_pem.decode(errors="replace"))
    else:
        context = ssl.create_default_context()
    if ep.insecure_skip_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert_pem:
        _load_client_identity(context, settings.client_cert_pem, settings.client_key_pem)
    return context


class _TokenFile:
    """A bearer token read from a file the kubelet (or the certs service) rotates."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._token = ""
        self._read_at = -TOKEN_FILE_REREAD_SECONDS

    def __call__(self) -> str:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= TOKEN_FILE_REREAD_SECONDS or not self._token:
                try:
                    with open(self._path) as f:
                        self._token = f.read().strip()
                    self._read_at = now
                except OSError:
                    pass  # keep the last token; the API server's 401 says the rest
            return self._token


def _authorization(settings: ClientSettings) -> Callable[[], str]:
    """The Authorization header value for each request ("" for none)."""
    if settings.token:
        fixed = f"Bearer {settings.token}"
        return lambda: fixed
    if settings.token_file:
        token = _TokenFile(settings.token_file)
        return lambda: f"Bearer {value}" if (value := token()) else ""
    if settings.username:
        basic = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        return lambda: f"Basic {basic}"
    return lambda: ""


def _delegated(path: str) -> tuple[ClientSettings, Callable[[], str]]:
    """Credentials only the official client's loader understands (exec plugins,
    auth providers): it fills a Configuration, we take the TLS files and the
    (refreshing) token from it. The one place a service imports `kubernetes`."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=path, client_configuration=cfg, persist_config=False)  # type: ignore[no-untyped-call]

    def read(name: str | None) -> bytes:
        if not name:
            return b""
        with open(name, "rb") as f:
            return f.read()

    endpoint = ApiEndpoint(str(cfg.host), read(cfg.ssl_ca_cert), not cfg.verify_ssl)
    settings = ClientSettings(
        endpoint,
        tls_server_name=str(cfg.tls_server_name or ""),
        client_cert_pem=read(cfg.cert_file),
        client_key_pem=read(cfg.key_file),
    )
    basic = cfg.get_basic_auth_token() if cfg.username else ""
    # get_api_key_with_prefix runs the loader's refresh hook (exec plugins re-run on expiry).
    return settings, lambda: str(cfg.get_api_key_with_prefix("BearerToken") or basic or "")


class KubeClient:
    """One API server, one connection pool; thread-safe (urllib3's pool is)."""

    def __init__(self, settings: ClientSettings, authorization: Callable[[], str] | None = None) -> None:
        self.endpoint = settings.endpoint
        url = urlsplit(settings.endpoint.server)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise KubeconfigError(f"kubeconfig: server {settings.endpoint.server!r} is not an http(s) URL")
        self._prefix = url.path.rstrip("/")
        self._authorization = authorization or _authorization(settings)
        common: dict[str, Any] = {
            "maxsize": POOL_SIZE,
            "block": False,
            # No silent retries: they would multiply every timeout (a 3 s live GET
            # becoming 12 s); every caller retries with backoff itself.
            "retries": False,
            "socket_options": _keepalive_socket_options(),
        }
        self.pool: urllib3.HTTPConnectionPool
        if url.scheme == "https":
            self.pool = urllib3.HTTPSConnectionPool(
                url.hostname,
                url.port or 443,
                ssl_context=_ssl_context(settings),
                server_hostname=settings.tls_server_name or None,
                # urllib3 sets the context's verify_mode from this, whatever the context says.
                cert_reqs="CERT_NONE" if settings.endpoint.insecure_skip_tls_verify else "CERT_REQUIRED",
                assert_hostname=False if settings.endpoint.insecure_skip_tls_verify else None,
                **common,
            )
        else:
            self.pool = urllib3.HTTPConnectionPool(url.hostname, url.port or 80, **common)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: Timeout,
    ) -> Any:
        """Send a request; returns the unread urllib3 response (stream it, or read .data,
        then release_conn()). A non-2xx answer raises ApiError with the server's Status."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if auth := self._authorization():
            headers["Authorization"] = auth
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body, separators=(",", ":")).encode()
        pairs = [(k, _query_value(v)) for k, v in query if v is not None and v != ""]
        url = self._prefix + path + (f"?{urlencode(pairs)}" if pairs else "")
        response = self.pool.urlopen(
            method,
            url,
            body=payload,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            retries=False,
            redirect=False,
            preload_content=False,
            release_conn=False,
        )
        if not 200 <= response.status <= 299:
            try:
                text = response.data.decode(errors="replace")
            finally:
                response.release_conn()
            raise ApiError(response.status, response.reason or "", text)
        return response

    def close(self) -> None:
        self.pool.close()


def _query_value(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def build_api_client(kubeconfig: str) -> KubeClient:
    """A client for a kubeconfig file, or in-cluster credentials when `kubeconfig` is "".
    Raises KubeconfigError (a ValueError) when the credentials cannot be used."""
    settings = client_settings(kubeconfig) if kubeconfig else in_cluster_settings()
    if settings.delegated:
        settings, authorization = _delegated(settings.delegated)
        return KubeClient(settings, authorization)
    return KubeClient(settings)


def request(
    api: KubeClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, Any]] = (),
    body: dict[str, Any] | None = None,
    timeout: Timeout,
) -> Any:
    """KubeClient.request, for callers holding the client as a value."""
    return api.request(method, path, query=query, body=body, timeout=timeout)


def get_json(api: KubeClient, path: str, timeout: Timeout) -> dict[str, Any] | None:
    """GET one object as a dict; None when it does not exist."""
    try:
        response = api.request("GET", path, timeout=timeout)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    try:
        body: dict[str, Any] = json.loads(response.data)
        return body
    finally:
        response.release_conn()


def send_json(
    api: KubeClient,
    method: str,
    path: str,
    body: dict[str, Any],
    timeout: Timeout,
    *,
    content_type: str = "application/json",
    answer: bool = False,
) -> dict[str, Any]:
    """PUT/POST/PATCH a raw JSON object (kept exact: nothing a model does not know is
    dropped); with `answer`, returns the object the server answered (else {}: the
    body is drained unparsed)."""
    response = api.request(method, path, body=body, content_type=content_type, timeout=timeout)
    try:
        if not answer:
            response.drain_conn()
            return {}
        data = response.data
    finally:
        response.release_conn()
    obj = json.loads(data) if data else {}
    return obj if isinstance(obj, dict) else {}


def iter_lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited watch events from a chunked response, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


# Transport failures every caller handles alike (the server was not reached, or the
# connection broke): urllib3's and the socket layer's.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (ApiError, urllib3.exceptions.HTTPError, OSError)
