"""A recording front proxy before the real kube-apiserver.

Services under test are given a kubeconfig whose server is this proxy. It
terminates TLS with the API server's own serving certificate, authenticates a
client by its client certificate (signed by the cluster CA: node bootstrap
identities, per-node certificates the cluster signer issued, test identities)
and forwards the request AS that identity through the API server's
request-header authentication (the front-proxy client certificate plus
X-Remote-User / X-Remote-Group), the way the aggregation layer does. A client
with a bearer token instead (ServiceAccount) is forwarded with its token. So
the real RBAC authorizer decides every call under the identity the service
really has, and every request is recorded as (user, verb, resource, ...), which
`tests/support/rbac_audit.py` holds against the RBAC table the manifests ship.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# Hop-by-hop headers, and what the proxy sets itself.
_DROP_REQUEST = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-authorization"}
_DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


@dataclass(frozen=True)
class RecordedRequest:
    user: str
    groups: tuple[str, ...]
    method: str
    path: str
    query: str
    status: int
    at: float


class ApiRecorder:
    """Start with `running_recorder(pki_dir, upstream)`; `url` is the proxy's address."""

    def __init__(self, pki: Path, upstream: str) -> None:
        self.pki = pki
        self.upstream = upstream.rstrip("/")
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-recorder", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._as_front_proxy: ssl.SSLContext | None = None
        self._plain: ssl.SSLContext | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def snapshot(self) -> int:
        """A mark: `since(mark)` returns what was recorded after it."""
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests[mark:])

    # --- lifecycle ---
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki / "ca.crt"))
        server_ctx.load_cert_chain(str(self.pki / "apiserver.crt"), str(self.pki / "apiserver.key"))
        server_ctx.verify_mode = ssl.CERT_OPTIONAL
        self._as_front_proxy = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self._as_front_proxy.load_cert_chain(
            str(self.pki / "front-proxy-client.crt"), str(self.pki / "front-proxy-client.key")
        )
        self._plain = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        server = site._server  # the bound port of port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- proxying ---
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user, groups = _identity(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-remote-")}
        if user:
            headers.pop("Authorization", None)
            headers.pop("authorization", None)
            context = self._as_front_proxy
            extra = [("X-Remote-User", user), *(("X-Remote-Group", g) for g in groups)]
        else:
            context = self._plain
            extra = []
            user = "bearer" if request.headers.get("Authorization") else "anonymous"
        body = await request.read()
        assert self._session is not None and context is not None
        out_headers: Any = list(headers.items()) + extra
        url = self.upstream + request.rel_url.raw_path_qs
        status = 502
        try:
            async with self._session.request(
                request.method,
                url,
                headers=out_headers,
                data=body or None,
                ssl=context,
                allow_redirects=False,
                # Transparent: no Content-Type where the client sent none (aiohttp would add
                # application/octet-stream, which the API server refuses with 415).
                skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
            ) as upstream:
                status = upstream.status
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in _DROP_RESPONSE:
                        response.headers.add(key, value)
                await response.prepare(request)
                self._record(user, groups, request, status)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            self._record(user, groups, request, status)
            return web.Response(status=502, text=f"recorder: upstream failed: {type(exc).__name__}")

    def _record(self, user: str, groups: tuple[str, ...], request: web.Request, status: int) -> None:
        entry = RecordedRequest(user, groups, request.method, request.path, request.query_string, status, time.time())
        with self._lock:
            self.requests.append(entry)


def _identity(request: web.Request) -> tuple[str, tuple[str, ...]]:
    """CN and Os of the verified client certificate, ("", ()) without one."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return "", ()
    user = ""
    groups: list[str] = []
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, tuple(groups)


@contextmanager
def running_recorder(pki: Path, upstream: str) -> Iterator[ApiRecorder]:
    recorder = ApiRecorder(pki, upstream)
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.stop()
