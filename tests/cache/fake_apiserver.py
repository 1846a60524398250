"""A tiny fake API server, only for faults the real one cannot produce quickly:
a forced 410 Gone on a watch (the real server's watch cache hides etcd
compactions) and replies that take seconds. Plain HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml


def fake_pod(name: str, node: str, uid: str, rv: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": rv},
        "spec": {"nodeName": node},
    }


@dataclass
class FakeState:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> pod
    resource_version: int = 100
    gone_on_next_watch: bool = False
    slow_seconds: float = 0.0  # delay of single-object GETs, PUTs and PATCHes
    watch_hold_seconds: float = 2.0  # how long an idle watch stays open (0: closes at once)
    lists: int = 0
    watches: int = 0
    csr_watches: int = 0
    puts: list[dict[str, Any]] = field(default_factory=list)
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (content type, body)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeState
    stop: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        st = self.state
        csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
        if url.path.startswith(csrs + "/"):  # any named CSR exists and stays pending
            meta = {"name": url.path.rsplit("/", 1)[1], "resourceVersion": str(st.resource_version)}
            return self._json(200, {"kind": "CertificateSigningRequest", "metadata": meta, "spec": {}, "status": {}})
        if url.path == csrs:  # the collection is always empty
            if query.get("watch") == ["true"]:
                with st.lock:
                    st.csr_watches += 1
                return self._watch(False, float(query.get("timeoutSeconds", ["5"])[0]))
            return self._json(
                200, {"kind": "List", "metadata": {"resourceVersion": str(st.resource_version)}, "items": []}
            )
        if url.path == "/api/v1/pods" or url.path.endswith("/network-attachment-definitions"):
            is_pods = url.path == "/api/v1/pods"
            if query.get("watch") == ["true"]:
                return self._watch(is_pods, float(query.get("timeoutSeconds", ["5"])[0]))
            with st.lock:
                st.lists += is_pods
                items = list(st.pods.values()) if is_pods else []
                rv = str(st.resource_version)
            return self._json(200, {"kind": "List", "metadata": {"resourceVersion": rv}, "items": items})
        parts = url.path.strip("/").split("/")
        if len(parts) >= 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            time.sleep(st.slow_seconds)
            pod = st.pods.get(parts[5])
            if pod is None:
                return self._json(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})
            return self._json(200, pod)
        self._json(404, {"kind": "Status", "code": 404, "message": "unknown path"})

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        time.sleep(self.state.slow_seconds)
        with self.state.lock:
            self.state.puts.append(body)
        self._json(200, body)

    def do_PATCH(self) -> None:
        """A merge patch of a pod's metadata (what the cache sends for network-status)."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        time.sleep(self.state.slow_seconds)
        parts = urlparse(self.path).path.strip("/").split("/")
        with self.state.lock:
            self.state.patches.append((self.headers.get("Content-Type", ""), body))
            pod = self.state.pods.get(parts[5]) if len(parts) >= 6 else None
            if pod is None:
                return self._json(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})
            annotations = pod["metadata"].setdefault("annotations", {})
            for key, value in (body.get("metadata", {}).get("annotations") or {}).items():
                if value is None:
                    annotations.pop(key, None)
                else:
                    annotations[key] = value
        self._json(200, pod)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self._json(201, body)

    def _watch(self, is_pods: bool, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        st = self.state
        with st.lock:
            st.watches += is_pods
            gone = is_pods and st.gone_on_next_watch
            if gone:
                st.gone_on_next_watch = False
        if gone:
            self._chunk(
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": "too old resource version",
                    },
                }
            )
        else:
            self.stop.wait(min(timeout, st.watch_hold_seconds))  # an idle watch that ends early, as a server may
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@contextmanager
def fake_apiserver() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    stop = threading.Event()
    handler = type("Handler", (_Handler,), {"state": state, "stop": stop})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def fake_kubeconfig(path: Path, server: str) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(doc))
    return path
