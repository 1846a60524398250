"""One way to wire a grpc.aio service: Unix socket (0600, optional group),
grpc.health.v1, server reflection (v1alpha and v1), ServiceInfo, an optional TCP port
serving only health, Prometheus metrics, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from services.common.config import DaemonConfig
from services.common.logs import bound_context, context_from_metadata, get_logger
from services.common.metrics import start_metrics_server
from services.common.peercred import PeerCredFront, prepare_private_directory
from services.common.service_info import add_service_info

log = get_logger(__name__)

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
OVERALL = ""  # health's name for the whole server
# Health name that is SERVING while the process is up (until graceful shutdown),
# whatever its readiness: liveness probes check it, so a service that is merely
# not ready (API down, informers not synced) is not restarted in a loop.
LIVENESS = "liveness"


class ContextInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Binds the request context carried in metadata (container ID, pod, command) to log lines."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        ctx = context_from_metadata(handler_call_details.invocation_metadata)
        if handler is None or not ctx or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def wrapped(request: Any, context: Any) -> Any:
            with bound_context(**ctx):
                return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _reflection_v1_handler(service_names: Iterable[str]) -> Any:
    """grpcio-reflection ships only v1alpha; v1's messages are identical on the wire,
    so the same servicer answers clients (newer grpcurl) that ask for v1 first."""
    servicer = reflection.ReflectionServicer(tuple(service_names))  # type: ignore[no-untyped-call]
    return grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )


@dataclass
class ServiceServer:
    """A started service: the gRPC server(s) and its health servicer."""

    name: str
    socket_path: str
    server: grpc.aio.Server
    health: health_aio.HealthServicer
    health_server: grpc.aio.Server | None = None
    full_service_names: tuple[str, ...] = ()
    front: PeerCredFront | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def set_serving(self, serving: bool, service: str | None = None) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        names = [service] if service is not None else [OVERALL, *self.full_service_names]
        for name in names:
            await self.health.set(name, status)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_for_stop(self) -> None:
        await self._stopping.wait()

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self.front is not None:
            await self.front.stop()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)


def _prepare_socket_path(path: str, group: str = "") -> None:
    # With a group, every service of the node creates its own socket here: group-writable
    # and sticky (1770: none removes another's), as compose/prepare_node.py makes it.
    # Without one, owner only.
    directory = os.path.dirname(path)
    mode = 0o1770 if group else 0o700
    os.makedirs(directory, mode=mode, exist_ok=True)
    st = os.stat(directory)
    if group and st.st_uid == os.geteuid():  # only its owner may fix it
        if st.st_gid != socket_gid(group):
            os.chown(directory, -1, socket_gid(group))
        if st.st_mode & 0o7777 != mode:
            os.chmod(directory, mode)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket from a previous run


def socket_gid(group: str) -> int:
    """`grpcSocketGroup` as a gid: a group name, or a number (containers often
    have no /etc/group entry for the gid they run with)."""
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


@contextlib.contextmanager
def final_socket_mode(group: str) -> Iterator[None]:
    """Bind inside this block and the socket is born with its final mode (0600, or
    0660 with a group): the umask is set before bind, never a chmod after it, so
    there is no moment a looser mode lets another user connect. With a group the
    socket is then given to it (a no-op when it is already the process's group,
    as in the shipped manifests)."""
    old = os.umask(0o117 if group else 0o177)
    try:
        yield
    finally:
        os.umask(old)


def give_socket_to_group(path: str, group: str) -> None:
    if group:
        gid = socket_gid(group)
        if os.stat(path).st_gid != gid:
            os.chown(path, -1, gid)


async def start_service(
    name: str,
    socket_path: str,
    register: Callable[[grpc.aio.Server], Iterable[str]],
    *,
    socket_group: str = "",
    health_port: int = 0,
    metrics_port: int = 0,
    serving: bool = False,
    peer_front: PeerCredFront | None = None,
) -> ServiceServer:
    """Create, wire and start a service's gRPC server.

    `register` adds the servicers and returns their full service names. The
    health status starts NOT_SERVING unless `serving` is true: a service flips
    it once it can do its job (informers synced, credentials valid, ...).
    With `peer_front`, gRPC listens on the front's private socket and the front
    serves `socket_path`, so servicers learn each call's SO_PEERCRED
    (services/common/peercred.py).
    """
    server = grpc.aio.server(interceptors=[ContextInterceptor()], options=[("grpc.so_reuseport", 0)])
    names = tuple(register(server))
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    info_name = add_service_info(server, name, socket_path)
    all_names = (*names, info_name, health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
    reflection.enable_server_reflection(all_names, server)
    server.add_generic_rpc_handlers((_reflection_v1_handler(all_names),))
    _prepare_socket_path(socket_path, socket_group)
    if peer_front is not None:
        prepare_private_directory(peer_front.private_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(peer_front.private_path)
        with final_socket_mode(""):
            server.add_insecure_port(f"unix://{peer_front.private_path}")
            await server.start()
        with final_socket_mode(socket_group):
            await peer_front.start()
    else:
        with final_socket_mode(socket_group):
            server.add_insecure_port(f"unix://{socket_path}")
            await server.start()
    give_socket_to_group(socket_path, socket_group)

    health_server = None
    if health_port:
        # Kubernetes gRPC probes are TCP: this port serves health and nothing else.
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_server.add_insecure_port(f"0.0.0.0:{health_port}")
        await health_server.start()
    if metrics_port:
        start_metrics_server(metrics_port)

    svc = ServiceServer(name, socket_path, server, health_servicer, health_server, names, front=peer_front)
    await svc.set_serving(serving)
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.request_stop)
    log.info("service started", socket=socket_path, health_port=health_port, metrics_port=metrics_port)
    return svc


async def start_configured_service(
    name: str,
    config: DaemonConfig,
    register: Callable[[grpc.aio.Server], Iterable[str]],
    *,
    socket_path: str | None = None,
    health_port: int | None = None,
    metrics_port: int | None = None,
    peer_front: PeerCredFront | None = None,
) -> ServiceServer:
    """start_service with the socket, group and ports the daemon config gives
    `name`; explicit arguments (command-line flags) override them."""
    ports = config.ports(name)
    return await start_service(
        name,
        socket_path or config.grpc_socket(name),
        register,
        socket_group=config.grpc_socket_group,
        health_port=ports.health_port if health_port is None else health_port,
        metrics_port=ports.metrics_port if metrics_port is None else metrics_port,
        peer_front=peer_front,
    )
