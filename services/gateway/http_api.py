"""Upstream Multus' HTTP API on the daemon's Unix socket (aiohttp):
POST /cni, POST /delegate, GET|POST /healthz, and GET|POST /readyz (503 until
ready and while draining). Success: 200 with `{"Result": ...}` for ADD and an
empty body otherwise; failure: 400 with a CNI error object. POST /cni answers
503 (code 11) to every verb but DEL while not ready, so our shim can send its
call at once instead of probing /readyz first, and wait only when told to."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.common import cni
from services.common.errors import to_cni_error
from services.common.logs import get_logger
from services.gateway.dispatch import Dispatcher
from services.gateway.gateway_metrics import REQUESTS
from services.gateway.request import CniRequest, decode_request_body

CNI_PATH = "/cni"
DELEGATE_PATH = "/delegate"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
MAX_BODY = 16 * 1024 * 1024

log = get_logger(__name__)


def error_body(err: cni.CniError) -> bytes:
    """A CNI error object as Go's cnitypes.Error marshals it."""
    obj: dict[str, Any] = {"code": err.code, "msg": err.msg}
    if err.details:
        obj["details"] = err.details
    return json.dumps(obj).encode()


def success_body(result: dict[str, Any] | None) -> bytes:
    return json.dumps({"Result": result}).encode() if result is not None else b""


class Readiness:
    def __init__(self) -> None:
        self.ready = False
        self.draining = False

    @property
    def serving(self) -> bool:
        return self.ready and not self.draining


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def build_app(dispatcher: Dispatcher, readiness: Readiness) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    def counted(handler: str, fn: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            response = await fn(request)
            REQUESTS.labels(handler, str(response.status), request.method.lower()).inc()
            return response

        return wrapped

    async def cni_verb(
        request: web.Request,
        call: Callable[[CniRequest], Awaitable[dict[str, Any] | None]],
        *,
        gated: bool = False,
    ) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="Method not allowed\n")
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge as exc:
                # aiohttp would answer 413 in plain text: the runtime must get a CNI error object.
                raise cni.CniError(cni.INVALID_CONFIG, "request body too large", exc.text or "") from exc
            cni_request = decode_request_body(body)
            if gated and not readiness.serving and cni_request.command != "DEL":
                # DEL needs no readiness (as with upstream's /healthz): everything else waits.
                return _json_response(503, error_body(cni.CniError(cni.TRY_AGAIN_LATER, "multus daemon not ready")))
            result = await call(cni_request)
        except cni.CniError as err:
            return _json_response(400, error_body(err))
        except Exception as exc:
            # aiohttp's plain 500 would read as "try again later" (11) to a shim: never retry a bug.
            return _json_response(400, error_body(to_cni_error(exc, "CNI request")))
        return _json_response(200, success_body(result))

    async def cni_handler(request: web.Request) -> web.StreamResponse:
        return await cni_verb(request, dispatcher.cni, gated=True)

    async def delegate_handler(request: web.Request) -> web.StreamResponse:
        return await cni_verb(request, dispatcher.delegate)

    async def health(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            return web.Response(status=405, text="Method not allowed\n")
        return _json_response(200, b"")

    async def ready(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            return web.Response(status=405, text="Method not allowed\n")
        return _json_response(200 if readiness.serving else 503, b"")

    async def not_found(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    app.router.add_route("*", CNI_PATH, counted(CNI_PATH, cni_handler))
    app.router.add_route("*", DELEGATE_PATH, counted(DELEGATE_PATH, delegate_handler))
    app.router.add_route("*", HEALTH_PATH, counted(HEALTH_PATH, health))
    app.router.add_route("*", READY_PATH, counted(READY_PATH, ready))
    app.router.add_route("*", "/{tail:.*}", counted("NotFound", not_found))
    return app


async def start_unix_site(app: web.Application, socket_path: str) -> web.AppRunner:
    """Serve `app` on a 0600 Unix socket (the directory is created 0700 as upstream)."""
    os.makedirs(os.path.dirname(socket_path) or ".", mode=0o700, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    # handler_cancellation: a shim that went away cancels its call (an ADD rolls back, a DEL goes on).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    old_umask = os.umask(0o177)  # the socket never exists with looser permissions
    try:
        site = web.UnixSite(runner, socket_path)
        await site.start()
    finally:
        os.umask(old_umask)
    return runner
