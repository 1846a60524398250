"""Raw JSON requests through the official client's ApiClient (auth, TLS, the
connection pool), bypassing its typed methods: those validate arguments and
bodies with pydantic, which costs about 20 MiB of schemas on first use and
would turn raw bodies into model objects. Lists stay bytes until we trim them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

Timeout = tuple[float, float]  # (connect, read)


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
