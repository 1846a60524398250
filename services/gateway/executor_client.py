"""The gateway's client for the executor service(s).

Minimal first version: one long-lived channel per executor socket. The executor
work (issue 5) deepens it: spreading calls over several executors, retrying
DEL/CHECK/STATUS/GC that were in flight when their executor died.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.api import executor_pb2, executor_pb2_grpc
from services.common.grpc_client import call, unix_channel


class ExecutorClient:
    def __init__(self, sockets: Sequence[str]) -> None:
        if not sockets:
            raise ValueError("at least one executor socket is required")
        self._channels = [unix_channel(s) for s in sockets]
        self._stubs = [executor_pb2_grpc.ExecutorStub(ch) for ch in self._channels]
        self._next = 0

    def _stub(self) -> executor_pb2_grpc.ExecutorStub:
        stub = self._stubs[self._next % len(self._stubs)]
        self._next += 1
        return stub

    async def exec_plugin(self, request: executor_pb2.ExecPluginRequest, *, timeout: float) -> executor_pb2.ExecPluginResponse:
        """Run one delegate; raises CniError (code 11 when no executor answers in time)."""
        return await call("executor", self._stub().ExecPlugin, request, timeout)

    async def list_interfaces(self, netns: str, *, timeout: float) -> executor_pb2.ListInterfacesResponse:
        return await call("executor", self._stub().ListInterfaces, executor_pb2.ListInterfacesRequest(netns=netns), timeout)

    async def delete_interface(self, netns: str, ifname: str, *, timeout: float) -> executor_pb2.DeleteInterfaceResponse:
        req = executor_pb2.DeleteInterfaceRequest(netns=netns, ifname=ifname)
        return await call("executor", self._stub().DeleteInterface, req, timeout)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
