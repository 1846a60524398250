"""A scripted multus daemon on a real unix socket, answering as upstream's or as ours.

`FakeDaemon(socket_dir, flavour="upstream")` speaks what upstream's
multus-daemon speaks (Go net/http): no /readyz (404), GET/POST /healthz, plain
text `http.Error` bodies on 400. `flavour="ours"` adds /readyz, answers
failures with CNI error objects and, as our gateway does, refuses every /cni
call but DEL with 503 while /readyz would not say 200. Tests script the /cni
answers through `cni_answers` and read what arrived in `requests` (and the
status each got in `answered`).
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    chunked: bool = False
    hang_up: bool = False  # read the request, then close without answering


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeDaemon:
    socket_dir: Path
    flavour: str = "upstream"
    # /cni answers, in order; the last one repeats.
    cni_answers: list[Answer] = field(default_factory=lambda: [Answer()])
    # /readyz statuses for "ours", in order; the last one repeats.
    ready_statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[Seen] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # the status of each request, in order
    on_request: Callable[[Seen], None] | None = None

    def __post_init__(self) -> None:
        self.socket_path = self.socket_dir / "multus.sock"
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._lock = threading.Lock()

    def _next(self, queue: list[Any]) -> Any:
        with self._lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _ready(self) -> bool:
        with self._lock:
            return bool(self.ready_statuses[0] == 200)

    def answer(self, seen: Seen) -> Answer:
        if seen.path == "/cni":
            if seen.method != "POST":
                return self._error(405, "Method not allowed")
            if self.flavour == "ours" and not self._ready() and seen.json()["env"].get("CNI_COMMAND") != "DEL":
                return Answer(503, json.dumps({"code": 11, "msg": "multus daemon not ready"}).encode())
            answer: Answer = self._next(self.cni_answers)
            return answer
        if self.flavour == "post-only-probes" and seen.path in ("/healthz", "/readyz"):
            # a server that, like upstream's shim, only knows POST with a `null` body
            return Answer(200) if seen.method == "POST" and seen.body == b"null" else self._error(405, "no")
        if seen.path == "/healthz":
            return Answer(200)
        if seen.path == "/readyz" and self.flavour == "ours":
            return Answer(self._next(self.ready_statuses))
        return Answer(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _error(self, status: int, text: str) -> Answer:
        if self.flavour == "ours":
            return Answer(status, json.dumps({"code": 7, "msg": text}).encode())
        return Answer(status, f"{text}\n".encode(), "text/plain; charset=utf-8")

    def start(self) -> FakeDaemon:
        daemon = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                daemon.requests.append(seen)
                if daemon.on_request is not None:
                    daemon.on_request(seen)
                answer = daemon.answer(seen)
                daemon.answered.append(answer.status)
                if answer.hang_up:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                if answer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = len(answer.body) // 2
                    for part in (answer.body[:half], answer.body[half:]):
                        if part:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                self.close_connection = True

            do_GET = _handle
            do_POST = _handle

        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._server = socketserver.ThreadingUnixStreamServer(str(self.socket_path), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def paths(self) -> list[tuple[str, str]]:
        return [(seen.method, seen.path) for seen in self.requests]
