"""Who is on the other end of a Unix socket, per gRPC call (`SO_PEERCRED`).

gRPC Python tells a servicer nothing about the peer of a Unix socket (its
peer string is `unix:`, its auth context says `local`). So a service that
must decide per method by the caller's uid (the executor) serves its public
socket through `PeerCredFront`: it accepts each connection, reads the
kernel's `SO_PEERCRED` (pid, uid, primary gid: supplementary groups are not
carried), and splices the bytes to the real gRPC server on a private socket
(mode 0600 in a 0700 directory: only the service's own uid reaches it),
from a client socket bound to the abstract address
`@multus-peer/<nonce>/<n>/<uid>/<gid>/<pid>`. gRPC reports that address as
the call's peer (`unix-abstract:...`), and `peer_of(context)` reads it back.
The nonce is random per process, so an address some other process bound
cannot be mistaken for one of ours (and it could not reach the private
socket anyway). A call that did not come through the front (no such peer
string) has no credentials: policy treats it as an unknown peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from typing import Any

from services.common.logs import get_logger

log = get_logger(__name__)

PEER_PREFIX = "multus-peer"
_ABSTRACT = "unix-abstract:"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"uid={self.uid} gid={self.gid} pid={self.pid}"


def socket_peer(sock: socket.socket | Any) -> PeerCred:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return PeerCred(pid, uid, gid)


def private_socket_path(public_path: str) -> str:
    """Where the real gRPC server listens, next to the public socket: `<dir>/.private/<name>`."""
    directory, name = os.path.split(public_path)
    return os.path.join(directory, ".private", name)


class _Splice(asyncio.Protocol):
    """One direction's end of a spliced connection: bytes in go out on the other end,
    with flow control (a slow reader pauses the fast writer)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Splice | None = None
        self._pending: list[bytes] = []
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def link(self, other: _Splice) -> None:
        self.other = other
        if other.transport is not None:
            for chunk in self._pending:
                other.transport.write(chunk)
            if self._eof and other.transport.can_write_eof():
                other.transport.write_eof()
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)
        else:
            self._pending.append(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self.other is not None and self.other.transport is not None and self.other.transport.can_write_eof():
            self.other.transport.write_eof()
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class PeerCredFront:
    """Serves `public_path` and forwards every connection to `private_path`,
    naming the connecting peer's credentials in the forwarded connection's address."""

    def __init__(self, public_path: str, private_path: str) -> None:
        self.public_path = public_path
        self.private_path = private_path
        self.nonce = secrets.token_hex(8)
        self._counter = itertools.count()
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Transport] = set()

    def peer_address(self, cred: PeerCred) -> str:
        return f"\0{PEER_PREFIX}/{self.nonce}/{next(self._counter)}/{cred.uid}/{cred.gid}/{cred.pid}"

    def peer_of(self, context: Any) -> PeerCred | None:
        """The credentials of the peer of a gRPC call that came through this front."""
        peer = str(context.peer() or "")
        if not peer.startswith(_ABSTRACT):
            return None
        parts = peer[len(_ABSTRACT) :].split("/")
        if len(parts) != 6 or parts[0] != PEER_PREFIX or parts[1] != self.nonce:
            return None
        try:
            uid, gid, pid = int(parts[3]), int(parts[4]), int(parts[5])
        except ValueError:
            return None
        return PeerCred(pid, uid, gid)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.public_path)
        # The caller holds the umask that gives the socket its final mode (grpc_server.final_socket_mode).
        self._server = await loop.create_unix_server(self._accepted, path=self.public_path)

    def _accepted(self) -> asyncio.Protocol:
        front = self

        class Accepted(_Splice):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                assert self.transport is not None
                front._conns.add(self.transport)
                self.transport.pause_reading()  # nothing goes anywhere before the upstream is there
                task = asyncio.get_running_loop().create_task(front._forward(self))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

            def connection_lost(self, exc: Exception | None) -> None:
                if self.transport is not None:
                    front._conns.discard(self.transport)
                super().connection_lost(exc)

        return Accepted()

    async def _forward(self, client: _Splice) -> None:
        assert client.transport is not None
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            cred = socket_peer(client.transport.get_extra_info("socket"))
            upstream.setblocking(False)
            upstream.bind(self.peer_address(cred))
            await loop.sock_connect(upstream, self.private_path)
            _, server_side = await loop.create_unix_connection(_Splice, sock=upstream)
        except OSError as exc:
            log.warning("cannot forward a connection to the private socket", error=str(exc))
            upstream.close()
            client.transport.close()
            return
        client.link(server_side)
        server_side.link(client)
        client.transport.resume_reading()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._conns):
            transport.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.public_path)


def prepare_private_directory(path: str) -> None:
    """The private socket's directory: owner-only (0700), whatever it was before."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
