"""One entry point for every transport (HTTP socket, gRPC, DEL spool replay):
validate the request, bind the log context, route the verb to the CNI
service under its container's turn (services/gateway/ownership.py), bound it
by the whole-call deadline (cniCallTimeoutSeconds), cancel it when its caller
goes away, time it, count in-flight work for draining, and make sure nothing but
a CniError leaves (services.common.errors: an unexpected exception is logged
as a bug and becomes code 999, never a traceback on the wire)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.common import cni
from services.common.config import CALL_ANSWER_GRACE
from services.common.errors import to_cni_error
from services.common.logs import bound_context, get_logger
from services.gateway.cni_service import CniService
from services.gateway.gateway_metrics import CALLS_CANCELLED, COMMAND_SECONDS
from services.gateway.request import POD_VERBS, CniCall, CniRequest, validate_call

log = get_logger(__name__)


# When its caller goes away (the shim timed out or was killed, a gRPC client
# cancelled) a DEL still finishes: it is idempotent and whatever it tears down
# is wanted gone; every other verb is cancelled (an ADD then rolls back).
FINISH_WITHOUT_CALLER = frozenset({"DEL"})


def _log_orphan(call: CniCall, task: asyncio.Task[dict[str, Any] | None]) -> None:
    """How a call whose caller went away ended (nobody else hears it)."""
    error = None if task.cancelled() else task.exception()
    if task.cancelled() or error is not None:
        log.warning(
            f"{call.command} finished after its caller left, with an error",
            container_id=call.container_id,
            error=str(error) if error else "cancelled",
        )
    else:
        log.info(f"{call.command} finished after its caller left", container_id=call.container_id)


class Dispatcher:
    def __init__(self, service: CniService, *, deadline: float | None = None) -> None:
        self._service = service
        self._owners = service.core.owners
        self._deadline = service.core.config.cni_call_timeout_seconds if deadline is None else deadline
        self._answer_grace = CALL_ANSWER_GRACE
        self._calls: set[asyncio.Task[dict[str, Any] | None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @property
    def in_flight(self) -> int:
        """Calls running, including those whose caller went away (a DEL, a rollback)."""
        return len(self._calls)

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _track(self, task: asyncio.Task[dict[str, Any] | None]) -> None:
        self._calls.add(task)
        self._idle.clear()

        def done(finished: asyncio.Task[dict[str, Any] | None]) -> None:
            self._calls.discard(finished)
            self._owners.forget(finished)  # type: ignore[arg-type]
            if not finished.cancelled():
                finished.exception()  # retrieved: a call whose caller left is logged by _run
            if not self._calls:
                self._idle.set()

        task.add_done_callback(done)

    async def _owned(
        self, call: CniCall, turn: str, handler: Callable[[CniCall], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any] | None:
        # STATUS and GC are plugin-level: GC takes each container's turn itself.
        container_id = call.container_id if call.command in POD_VERBS else ""
        async with self._owners.turn(container_id, turn):
            return await handler(call)

    async def _await(self, call: CniCall, task: asyncio.Task[dict[str, Any] | None]) -> dict[str, Any] | None:
        """The call's answer within its deadline: cancelled (and rolled back) when the
        deadline passes or its caller goes away, code 11 when a later call superseded it."""
        try:
            done, _ = await asyncio.wait({task}, timeout=self._deadline)
        except asyncio.CancelledError:
            if call.command in FINISH_WITHOUT_CALLER:
                log.info(f"caller gone; {call.command} goes on")
                task.add_done_callback(lambda t: _log_orphan(call, t))
            else:
                CALLS_CANCELLED.labels(call.command, "caller_gone").inc()
                log.warning(f"caller gone; {call.command} cancelled")
                task.cancel()
            raise
        if not done:
            CALLS_CANCELLED.labels(call.command, "deadline").inc()
            task.cancel()
            # Give the rollback a bounded moment; it goes on under the container's turn.
            await asyncio.wait({task}, timeout=self._answer_grace)
            raise cni.CniError(
                cni.TRY_AGAIN_LATER,
                f"{call.command} did not finish within {self._deadline:g}s (cniCallTimeoutSeconds)",
                "cancelled; whatever it attached is rolled back",
            )
        if task.cancelled():
            superseded = self._owners.was_superseded(task)  # type: ignore[arg-type]
            CALLS_CANCELLED.labels(call.command, "superseded" if superseded else "cancelled").inc()
            raise cni.CniError(
                cni.TRY_AGAIN_LATER,
                f"{call.command} superseded by a later DEL or ADD for the same container",
                "whatever it attached is rolled back",
            )
        return task.result()

    async def _run(
        self,
        request: CniRequest,
        handler: Callable[[CniCall], Awaitable[dict[str, Any] | None]],
        *,
        kind: str,
    ) -> dict[str, Any] | None:
        if not self.accepting:
            raise cni.CniError(cni.TRY_AGAIN_LATER, "gateway is shutting down")
        call = validate_call(request)
        pod = str(call.pod) if call.pod else ""
        started = time.monotonic()
        outcome = "error"
        # Hot-plug verbs wait their turn and never supersede (nor are superseded as) a pod's ADD.
        turn = call.command if kind == "cni" else f"{kind}-{call.command}"
        try:
            with bound_context(container_id=call.container_id, pod=pod, command=call.command, ifname=call.ifname):
                try:
                    task = asyncio.create_task(self._owned(call, turn, handler))  # copies the log context
                    self._track(task)
                    result = await self._await(call, task)
                    outcome = "ok"
                    log.info(f"{kind} {call.command} done", seconds=round(time.monotonic() - started, 4))
                    return result
                except cni.CniError as err:
                    log.warning(f"{kind} {call.command} failed", code=err.code, error=str(err))
                    raise
                except Exception as exc:
                    raise to_cni_error(exc, f"{kind} {call.command}") from exc
        finally:
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
