"""Long-lived gRPC channels to peer services and the one place a failed call
becomes a CNI error (the gRPC status table). Every call has a deadline and
waits for a restarting peer within it (wait_for_ready); a peer still down at
the deadline is PeerUnavailable, CNI code 11."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from services.common import cni
from services.common.errors import PeerUnavailable
from services.common.logs import context_metadata

Response = TypeVar("Response")

_RETRY_SERVICE_CONFIG = '{"methodConfig": [{"name": [{}], "waitForReady": true}]}'


def unix_channel(socket_path: str) -> grpc.aio.Channel:
    """One channel per peer for the life of the process (never a channel per call)."""
    return grpc.aio.insecure_channel(
        f"unix://{socket_path}",
        options=[
            ("grpc.service_config", _RETRY_SERVICE_CONFIG),
            # Reconnect quickly after a peer restarts instead of backing off for seconds.
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 500),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )


# gRPC status -> CNI code for failures that are about the peer, not the request.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
_STATUS_TO_CNI = {
    grpc.StatusCode.INVALID_ARGUMENT: cni.INVALID_CONFIG,
    grpc.StatusCode.NOT_FOUND: cni.INVALID_CONFIG,
    grpc.StatusCode.FAILED_PRECONDITION: cni.INVALID_CONFIG,
    grpc.StatusCode.PERMISSION_DENIED: cni.IO_FAILURE,
    grpc.StatusCode.UNAUTHENTICATED: cni.IO_FAILURE,
}


# What a call means by a status of its own (NOT_FOUND for a pod, a NAD, ...):
# the status -> typed error, given the peer's details text.
Meanings = Mapping[grpc.StatusCode, Callable[[str], cni.CniError]]


def cni_error_from_rpc(peer: str, err: grpc.aio.AioRpcError, meanings: Meanings | None = None) -> cni.CniError:
    return cni_error_from_status(peer, err.code(), err.details() or "", meanings)


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """A status code sent as its number (e.g. a refusal inside a batch answer)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def cni_error_from_status(
    peer: str, code: grpc.StatusCode, details: str, meanings: Meanings | None = None
) -> cni.CniError:
    if meanings and code in meanings:
        return meanings[code](details)
    if code in _TRANSIENT:
        return PeerUnavailable(f"{peer} unavailable", f"{code.name}: {details}")
    return cni.CniError(_STATUS_TO_CNI.get(code, cni.IO_FAILURE), details or f"{peer} call failed", code.name)


async def call(
    peer: str,
    method: Callable[..., Awaitable[Response]],
    request: Any,
    timeout: float,
    meanings: Meanings | None = None,
) -> Response:
    """Call a peer with a deadline, wait_for_ready and the request's log context;
    gRPC failures come back as CniError with the right code (`meanings` first)."""
    try:
        return await method(request, timeout=timeout, wait_for_ready=True, metadata=context_metadata())
    except grpc.aio.AioRpcError as err:
        raise cni_error_from_rpc(peer, err, meanings) from err
