"""The node's services as the daemon config places them, and the one place a
failed gRPC call becomes a multusctl error: a service that is down is named
with its socket and the reason, on one line."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import DaemonConfig
from services.common.grpc_server import LIVENESS, OVERALL
from services.ctl.errors import DENIED, FAILED, NOT_FOUND, UNAVAILABLE, USAGE, CtlError, ServiceDown

Response = TypeVar("Response")


@dataclass(frozen=True)
class Endpoint:
    service: str  # "gateway", "cache", "executor", "certs"
    socket: str


def endpoints(config: DaemonConfig) -> list[Endpoint]:
    """Every service socket of the node, in the order operators read them."""
    executors = config.executor_sockets or (config.grpc_socket("executor"),)
    return [
        Endpoint("gateway", config.grpc_socket("gateway")),
        Endpoint("cache", config.grpc_socket("cache")),
        *(Endpoint("executor", s) for s in executors),
        Endpoint("certs", config.grpc_socket("certs")),
    ]


def endpoint(config: DaemonConfig, service: str) -> Endpoint:
    return next(e for e in endpoints(config) if e.service == service)


def _reason(details: str) -> str:
    lowered = details.lower()
    if "connection refused" in lowered:
        return "connection refused (is the service running?)"
    if "permission denied" in lowered:
        return "permission denied (the sockets are root-only)"
    if "no such file" in lowered:
        return "no such socket (is the service running?)"
    return details.splitlines()[0] if details else "unavailable"


def rpc_error(target: Endpoint, method: str, err: grpc.RpcError, timeout: float) -> CtlError:
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (err.details() if isinstance(err, grpc.Call) else "") or ""
    where = f"{target.service} ({target.socket})"
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServiceDown(target.service, target.socket, _reason(details))
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServiceDown(target.service, target.socket, f"no answer to {method} within {timeout:g}s")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return CtlError(DENIED, f"{where} refused {method}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return CtlError(USAGE, f"{where} refused {method} as invalid: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return CtlError(NOT_FOUND, f"{where}: {details}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CtlError(UNAVAILABLE, f"{where} does not serve {method} (an older version?)")
    return CtlError(FAILED, f"{where} {method} failed: {code.name}: {details}")


def _check_socket(target: Endpoint) -> None:
    """Fail fast, with the reason an operator can act on, before gRPC's generic one."""
    if not os.path.exists(target.socket):
        raise ServiceDown(target.service, target.socket, "no such socket (is the service running?)")
    if not os.access(target.socket, os.R_OK | os.W_OK):
        raise ServiceDown(target.service, target.socket, "permission denied (the sockets are root-only)")


class Node:
    """Calls to one node's services, each with a deadline and no waiting for a
    service that is down (an operator wants to know now)."""

    def __init__(self, config: DaemonConfig, timeout: float) -> None:
        self.config = config
        self.timeout = timeout

    @contextmanager
    def channel(self, target: Endpoint) -> Iterator[grpc.Channel]:
        _check_socket(target)
        with grpc.insecure_channel(f"unix://{target.socket}") as channel:
            yield channel

    def call(
        self,
        target: Endpoint,
        stub: Callable[[grpc.Channel], Any],
        method: str,
        request: Any,
        timeout: float | None = None,
    ) -> Any:
        deadline = timeout or self.timeout
        with self.channel(target) as channel:
            try:
                return getattr(stub(channel), method)(request, timeout=deadline)
            except grpc.RpcError as err:
                raise rpc_error(target, method, err, deadline) from err

    def health(self, target: Endpoint, liveness: bool = False) -> str:
        """The health status name (SERVING, NOT_SERVING, ...) of the service or its liveness."""
        request = health_pb2.HealthCheckRequest(service=LIVENESS if liveness else OVERALL)
        response = self.call(target, health_pb2_grpc.HealthStub, "Check", request)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
