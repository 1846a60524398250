"""multus.common.v1.ServiceInfo: what every service says about its own process
(version, pid, start time, config and log file), served on each service's
socket so `multusctl status` and grpcurl users see them without shell access
to the containers."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.api import service_info_pb2, service_info_pb2_grpc
from services.common.config import node_name

DISTRIBUTION = "multus-grpc"
SERVICE_NAME = service_info_pb2.DESCRIPTOR.services_by_name["ServiceInfo"].full_name


@dataclass
class ProcessFacts:
    """Set once at start-up by the entry point (`record_process`)."""

    service: str = ""
    config_path: str = ""
    log_file: str = ""
    started: float = field(default_factory=time.time)


PROCESS = ProcessFacts()


def record_process(service: str, *, config_path: str, log_file: str) -> None:
    PROCESS.service = service
    PROCESS.config_path = os.path.abspath(config_path) if config_path else ""
    PROCESS.log_file = os.path.abspath(log_file) if log_file else ""
    PROCESS.started = time.time()


def package_version() -> str:
    # importlib.metadata (16 modules, about 0.7 MiB per process) is imported only when
    # someone asks: every service would otherwise keep it for one string.
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class ServiceInfoServicer(service_info_pb2_grpc.ServiceInfoServicer):  # type: ignore[misc]
    def __init__(self, service: str, socket_path: str) -> None:
        self._service = service
        self._socket = socket_path
        self._version = ""

    def _version_once(self) -> str:
        if not self._version:
            self._version = package_version()
        return self._version

    async def GetServiceInfo(
        self, request: service_info_pb2.GetServiceInfoRequest, context: Any
    ) -> service_info_pb2.ServiceInfoResponse:
        return service_info_pb2.ServiceInfoResponse(
            service=self._service,
            version=self._version_once(),
            pid=os.getpid(),
            started_unix=PROCESS.started,
            node_name=node_name(),
            config_path=PROCESS.config_path,
            log_file=PROCESS.log_file,
            socket=self._socket,
        )


def add_service_info(server: grpc.aio.Server, service: str, socket_path: str) -> str:
    """Serve ServiceInfo on `server`; returns its full service name (for reflection)."""
    service_info_pb2_grpc.add_ServiceInfoServicer_to_server(ServiceInfoServicer(service, socket_path), server)
    return str(SERVICE_NAME)
