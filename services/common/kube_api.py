"""The one Kubernetes client builder (cache and certs), and raw JSON requests
through the official client's ApiClient (auth, TLS, the connection pool),
bypassing its typed methods: those validate arguments and bodies with
pydantic, which costs about 20 MiB of schemas on first use and would turn raw
bodies into model objects. Lists stay bytes until the caller trims them.
Which kubeconfig to use is decided in services.common.credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.keepalive import tcp_keepalive_socket_options

Timeout = tuple[float, float]  # (connect, read)

KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3


def build_api_client(kubeconfig: str) -> k8s.ApiClient:
    """A client for a kubeconfig file, or in-cluster credentials when `kubeconfig` is ""."""
    cfg = k8s.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg, persist_config=False
        )
    else:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    # Watches, live GETs and writes share the pool.
    cfg.connection_pool_maxsize = 16
    # No silent urllib3 retries: they would multiply every timeout (a 3 s live GET
    # becoming 12 s); every caller retries with backoff itself.
    cfg.retries = False
    # TCP keepalive: a watch whose peer vanished (node partitioned, a NAT or load
    # balancer dropped the flow) otherwise goes unnoticed until its read timeout,
    # up to ~6.5 min of silently stale cache. Probes after 30 s idle, every 10 s,
    # 3 unanswered: a dead connection is dropped within ~60 s. (Only the read
    # timeout can catch a peer that is alive but silent.)
    cfg.socket_options = tcp_keepalive_socket_options(
        idle=KEEPALIVE_IDLE, interval=KEEPALIVE_INTERVAL, count=KEEPALIVE_COUNT
    )
    return k8s.ApiClient(cfg)


def _bool(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def request(
    api: Any,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, Any]] = (),
    body: dict[str, Any] | None = None,
    timeout: Timeout,
) -> Any:
    """Send a request; returns the unread urllib3 response (stream it, or read .data).
    A non-2xx answer raises ApiException with the API server's Status body."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=[(k, _bool(v)) for k, v in query if v is not None and v != ""],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized, _request_timeout=timeout)
    if not 200 <= response.status <= 299:
        payload = response.read()
        raise ApiException.from_response(http_resp=response, body=payload.decode(errors="replace"), data=None)
    return response.response


def get_json(api: Any, path: str, timeout: Timeout) -> dict[str, Any] | None:
    """GET one object as a dict; None when it does not exist."""
    try:
        response = request(api, "GET", path, timeout=timeout)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    try:
        body: dict[str, Any] = json.loads(response.data)
        return body
    finally:
        response.release_conn()


def send_json(api: Any, method: str, path: str, body: dict[str, Any], timeout: Timeout) -> None:
    """PUT/POST a raw JSON object (kept exact: nothing the models do not know is dropped)."""
    response = request(api, method, path, body=body, timeout=timeout)
    response.drain_conn()
    response.release_conn()


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
