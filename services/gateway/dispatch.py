"""One entry point for every transport (HTTP socket, gRPC, DEL spool replay):
validate the request, bind the log context, route the verb to the CNI
service, time it, count in-flight work for draining, and make sure nothing but
a CniError leaves (services.common.errors: an unexpected exception is logged
as a bug and becomes code 999, never a traceback on the wire)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.common import cni
from services.common.errors import to_cni_error
from services.common.logs import bound_context, get_logger
from services.gateway.cni_service import CniService
from services.gateway.gateway_metrics import COMMAND_SECONDS
from services.gateway.request import CniCall, CniRequest, validate_call

log = get_logger(__name__)


class Dispatcher:
    def __init__(self, service: CniService) -> None:
        self._service = service
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _run(
        self, request: CniRequest, handler: Callable[[CniCall], Awaitable[dict[str, Any] | None]], *, kind: str
    ) -> dict[str, Any] | None:
        if not self.accepting:
            raise cni.CniError(cni.TRY_AGAIN_LATER, "gateway is shutting down")
        call = validate_call(request)
        pod = str(call.pod) if call.pod else ""
        started = time.monotonic()
        outcome = "error"
        self._in_flight += 1
        self._idle.clear()
        try:
            with bound_context(container_id=call.container_id, pod=pod, command=call.command, ifname=call.ifname):
                try:
                    result = await handler(call)
                    outcome = "ok"
                    log.info(f"{kind} {call.command} done", seconds=round(time.monotonic() - started, 4))
                    return result
                except cni.CniError as err:
                    log.warning(f"{kind} {call.command} failed", code=err.code, error=str(err))
                    raise
                except Exception as exc:
                    raise to_cni_error(exc, f"{kind} {call.command}") from exc
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
            COMMAND_SECONDS.labels(call.command, outcome).observe(time.monotonic() - started)

    async def cni(self, request: CniRequest) -> dict[str, Any] | None:
        """POST /cni: ADD answers the cluster network's 1.0.0 result; the rest answer nothing."""

        async def handle(call: CniCall) -> dict[str, Any] | None:
            if call.command == "ADD":
                return await self._service.add(call)
            if call.command == "DEL":
                await self._service.delete(call)
            elif call.command == "CHECK":
                await self._service.check(call)
            elif call.command == "STATUS":
                await self._service.status(call)
            elif call.command == "GC":
                await self._service.gc(call)
            return None

        return await self._run(request, handle, kind="cni")

    async def delegate(self, request: CniRequest) -> dict[str, Any] | None:
        """POST /delegate: hot-plug one interface (ADD/DEL/CHECK/STATUS)."""

        async def handle(call: CniCall) -> dict[str, Any] | None:
            return await self._service.delegate(call, request.interface_attributes)

        return await self._run(request, handle, kind="delegate")
