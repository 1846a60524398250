"""The gateway's client for the executor service(s).

One long-lived channel per executor socket (`executorSockets`, default the
single `<runDir>/grpc/executor.sock`). Calls go round-robin to an executor
that is ready; when none is, a call waits (within its deadline) for the first
that becomes ready, so a restarting executor is ridden out. A call in flight
when its executor dies is retried on another (or the restarted) executor if
it is safe to repeat (DEL, CHECK, STATUS, GC, VERSION, netlink calls including
SetDefaultRoutes); an ADD in flight fails with CNI code 11 and the gateway
rolls the attachment back.
Every call carries the `x-multus-caller: gateway` marker the executor's
operator guard looks for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from services.api import executor_pb2, executor_pb2_grpc
from services.common.callers import CALLER_METADATA_KEY, GATEWAY_CALLER
from services.common.config import DaemonConfig
from services.common.errors import PeerUnavailable
from services.common.grpc_client import cni_error_from_rpc, unix_channel
from services.common.logs import context_metadata, get_logger

log = get_logger(__name__)

Response = TypeVar("Response")

# Verbs a plugin must tolerate being called twice (the spec says so for DEL;
# CHECK/STATUS/GC/VERSION change nothing or converge).
REPEATABLE_COMMANDS = frozenset({"DEL", "CHECK", "STATUS", "GC", "VERSION"})
# Statuses that mean "the executor went away under this call", not "the request is bad".
_EXECUTOR_LOST = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_READY = grpc.ChannelConnectivity.READY
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN


def executor_sockets(config: DaemonConfig) -> tuple[str, ...]:
    """The executor sockets a gateway of this config talks to."""
    return config.executor_sockets or (config.grpc_socket("executor"),)


class ExecutorClient:
    def __init__(self, sockets: Sequence[str]) -> None:
        if not sockets:
            raise ValueError("at least one executor socket is required")
        self.sockets = tuple(sockets)
        self._channels = [unix_channel(s) for s in self.sockets]
        self._stubs = [executor_pb2_grpc.ExecutorStub(ch) for ch in self._channels]
        self._next = 0
        for channel in self._channels:
            channel.get_state(try_to_connect=True)  # connect now, not on the first pod's ADD

    def ready_executors(self) -> int:
        """How many executors are connected right now (for the gateway's readiness and logs)."""
        return sum(ch.get_state(try_to_connect=True) == _READY for ch in self._channels)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (*context_metadata(), (CALLER_METADATA_KEY, GATEWAY_CALLER))

    def _rotation(self, avoid: int | None) -> list[int]:
        count = len(self._channels)
        start = self._next % count
        self._next += 1
        order = [(start + i) % count for i in range(count)]
        if avoid is not None and count > 1:
            order.remove(avoid)
            order.append(avoid)  # the one that just failed, last
        return order

    async def _ready_executor(self, deadline: float, avoid: int | None) -> int:
        """Index of a READY executor (round-robin), waiting for one within the deadline."""
        while True:
            order = self._rotation(avoid)
            states = [self._channels[i].get_state(try_to_connect=True) for i in order]
            for index, state in zip(order, states, strict=True):
                if state == _READY:
                    return index
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerUnavailable(
                    "executor unavailable",
                    f"no executor ready on {list(self.sockets)} within the deadline",
                )
            changes = [
                asyncio.ensure_future(self._channels[i].wait_for_state_change(state))
                for i, state in zip(order, states, strict=True)
                if state != _SHUTDOWN
            ]
            if not changes:
                raise PeerUnavailable("executor client closed")
            try:
                await asyncio.wait(changes, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for change in changes:
                    change.cancel()

    async def _call(
        self,
        method: Callable[[executor_pb2_grpc.ExecutorStub], Callable[..., Awaitable[Response]]],
        request: Any,
        timeout: float,
        *,
        repeatable: bool,
        what: str,
    ) -> Response:
        deadline = time.monotonic() + timeout
        avoid: int | None = None
        while True:
            index = await self._ready_executor(deadline, avoid)
            remaining = deadline - time.monotonic()
            try:
                return await method(self._stubs[index])(
                    request, timeout=max(remaining, 0.001), wait_for_ready=True, metadata=self._metadata()
                )
            except grpc.aio.AioRpcError as err:
                lost = err.code() in _EXECUTOR_LOST
                if lost and repeatable and deadline - time.monotonic() > 0:
                    log.warning("executor lost during call, retrying", call=what, socket=self.sockets[index])
                    avoid = index
                    continue
                if lost:
                    raise PeerUnavailable(
                        f"executor lost during {what}",
                        f"{self.sockets[index]}: {err.code().name}: {err.details() or ''}",
                    ) from err
                raise cni_error_from_rpc("executor", err) from err

    async def exec_plugin(
        self, request: executor_pb2.ExecPluginRequest, *, timeout: float
    ) -> executor_pb2.ExecPluginResponse:
        """Run one delegate; raises CniError (code 11 when no executor answers in
        time or one died during an ADD). A plugin's own failure is in `.error`."""
        return await self._call(
            lambda stub: stub.ExecPlugin,
            request,
            timeout,
            repeatable=request.command in REPEATABLE_COMMANDS,
            what=f"{request.plugin} {request.command}",
        )

    async def exec_plugins(
        self, request: executor_pb2.ExecPluginsRequest, *, timeout: float
    ) -> executor_pb2.ExecPluginsResponse:
        """Run several delegates in order in one round trip. A batch of DELs only is
        retried on another executor when its executor dies; one with an ADD is not."""
        return await self._call(
            lambda stub: stub.ExecPlugins,
            request,
            timeout,
            repeatable=all(c.command in REPEATABLE_COMMANDS for c in request.calls),
            what=f"{len(request.calls)} delegate calls",
        )

    async def list_interfaces(self, netns: str, *, timeout: float) -> executor_pb2.ListInterfacesResponse:
        req = executor_pb2.ListInterfacesRequest(netns=netns)
        return await self._call(lambda stub: stub.ListInterfaces, req, timeout, repeatable=True, what="ListInterfaces")

    async def delete_interface(
        self, netns: str, ifname: str, *, timeout: float
    ) -> executor_pb2.DeleteInterfaceResponse:
        req = executor_pb2.DeleteInterfaceRequest(netns=netns, ifname=ifname)
        return await self._call(
            lambda stub: stub.DeleteInterface, req, timeout, repeatable=True, what="DeleteInterface"
        )

    async def set_default_routes(
        self,
        netns: str,
        ifname: str,
        *,
        drop_ipv4: bool,
        drop_ipv6: bool,
        gateways: Sequence[str],
        timeout: float,
    ) -> executor_pb2.SetDefaultRoutesResponse:
        """Move a pod's default routes (the `default-route` selection); safe to repeat,
        since a repeated call converges to the same routes."""
        req = executor_pb2.SetDefaultRoutesRequest(
            netns=netns, ifname=ifname, drop_ipv4=drop_ipv4, drop_ipv6=drop_ipv6, gateways=list(gateways)
        )
        return await self._call(
            lambda stub: stub.SetDefaultRoutes, req, timeout, repeatable=True, what="SetDefaultRoutes"
        )

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
