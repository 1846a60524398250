"""The one list/watch loop (the cache's Pod and NAD informers, the certs
service's CSR approver) and the one watch stream under it (also used to wait
for one CSR), as client-go's reflector does. Synchronous: run it in its own
thread, or call `run()` from one that may block.

- Lists and watch events are read as raw JSON (`_preload_content=False`) and
  handed to `parse` at once: no model objects, so 10,000 NADs stay cheap.
- Every watch carries `timeoutSeconds` (jittered, so a fleet does not
  re-watch in lockstep) and a read timeout, so a dead API server cannot hang
  it; bookmarks keep the resourceVersion fresh.
- 410 Gone (the resourceVersion was compacted) relists; any other failure
  backs off with jitter and re-watches from the last resourceVersion; a watch
  closed at once without a single event is a failure (a busy loop otherwise).
- An interrupt (credential reload) aborts the request in flight, and the
  loop resumes with the new client from the resourceVersion it holds.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.backoff import backoff_delay
from services.common.kube_api import Timeout, iter_lines, request
from services.common.logs import get_logger

log = get_logger(__name__)


class Gone(Exception):
    """410: the resourceVersion is too old; a relist is needed."""


class WatchFailed(Exception):
    """The watch stream reported an error other than 410, or closed at once."""


class Sink(Protocol):
    """Where a list/watch delivers (the cache's ObjectStore has exactly this shape)."""

    def replace(self, objs: Iterable[Any], resource_version: str) -> None: ...

    def upsert(self, obj: Any, resource_version: str = "") -> None: ...

    def delete(self, key: tuple[str, str], resource_version: str = "") -> None: ...

    def set_resource_version(self, resource_version: str) -> None: ...

    def count_watch_restart(self) -> None: ...


@dataclass(frozen=True)
class ResourceCalls:
    """Where one kind is listed and watched, and how a raw object is trimmed."""

    kind: str
    path: str  # the collection, e.g. /api/v1/pods
    params: tuple[tuple[str, str], ...]  # fixed query parameters (fieldSelector)
    parse: Callable[[dict[str, Any]], Any]  # raises ValueError for a malformed object


@dataclass(frozen=True)
class WatchTiming:
    watch_timeout_min: float = 240.0
    watch_timeout_max: float = 360.0
    connect_timeout: float = 5.0
    list_read_timeout: float = 60.0
    # Beyond timeoutSeconds: a server that stops talking mid-watch is given up on after this.
    read_grace: float = 30.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    # A watch closed sooner than this without a single event is a failure (as
    # client-go's "very short watch"): re-watching at once would be a busy loop.
    min_watch_seconds: float = 1.0
    # 0 = one unpaginated list (served from the API server's watch cache at
    # resourceVersion=0); >0 = paginated consistent lists of this size.
    list_limit: int = 0


def _status_code(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def watch_events(
    response: Any,
    min_seconds: float = WatchTiming.min_watch_seconds,
    interrupted: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) of each event of an open watch response, until it closes.
    Raises Gone for 410, WatchFailed for another error event or a watch that
    closed sooner than `min_seconds` without any event (unless `interrupted()`:
    then the caller closed it)."""
    started, events = time.monotonic(), 0
    for line in iter_lines(response):
        event = json.loads(line)
        kind, raw = str(event.get("type")), event.get("object") or {}
        if kind == "ERROR":
            if raw.get("code") == 410:
                raise Gone(raw.get("message", "410 Gone"))
            raise WatchFailed(f"watch error {raw.get('code')}: {raw.get('message', '')}")
        events += 1
        yield kind, raw
    lasted = time.monotonic() - started
    if events == 0 and lasted < min_seconds and not interrupted():
        raise WatchFailed(f"very short watch: closed after {lasted:.3f}s with no events")


def resource_version_of(raw: dict[str, Any]) -> str:
    return str((raw.get("metadata") or {}).get("resourceVersion") or "")


class ListWatch:
    """List, then watch from the list's resourceVersion, into a Sink, until stopped."""

    def __init__(
        self,
        calls: ResourceCalls,
        sink: Sink,
        client: Callable[[], Any],
        timing: WatchTiming | None = None,
        rng: random.Random | None = None,
        on_listed: Callable[[str, float], None] | None = None,
    ) -> None:
        self.calls = calls
        self.sink = sink
        self._client = client
        self.timing = timing or WatchTiming()
        self._rng = rng or random.Random()
        self._on_listed = on_listed
        self._stop = threading.Event()
        self._response_lock = threading.Lock()
        self._response: Any = None
        self._interrupted = False
        self._resource_version = ""
        self._progress = False
        self._thread = threading.Thread(target=self.run, name=f"listwatch-{calls.kind}", daemon=True)

    # --- control (any thread) ---
    def start(self) -> None:
        """Run the loop in a thread of its own."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.interrupt()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def interrupt(self) -> None:
        """Abort the request in flight (credential reload, stop); the loop picks up from its resourceVersion."""
        with self._response_lock:
            self._interrupted = True
            response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception as exc:  # already closed: nothing to interrupt
                log.debug("interrupt: response already closed", kind=self.calls.kind, error=str(exc))

    # --- the loop ---
    def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                if not self._resource_version:
                    self._list()
                self._watch()
                attempt = 0  # a watch that ran its course: the API server is healthy
            except Exception as exc:
                if self._stop.is_set():
                    break
                self.sink.count_watch_restart()
                if self._progress:  # events flowed before this failure: start the backoff over
                    attempt, self._progress = 0, False
                if self._take_interrupt():
                    log.info("watch re-established after a credential reload", kind=self.calls.kind)
                    continue
                if isinstance(exc, Gone) or _status_code(exc) == 410:
                    log.info("resourceVersion expired; relisting", kind=self.calls.kind, rv=self._resource_version)
                    self._resource_version = ""
                    if attempt == 0:  # the first 410 relists at once; repeated ones back off below
                        attempt = 1
                        continue
                attempt += 1
                delay = backoff_delay(attempt, self.timing.backoff_base, self.timing.backoff_cap, self._rng.random())
                log.warning(
                    "list/watch failed; retrying",
                    kind=self.calls.kind,
                    attempt=attempt,
                    retry_in=round(delay, 2),
                    error=f"{type(exc).__name__}: {str(exc)[:300]}",
                )
                self._stop.wait(delay)

    def _take_interrupt(self) -> bool:
        with self._response_lock:
            was, self._interrupted = self._interrupted, False
            return was

    def _open(self, timeout: Timeout, **query: Any) -> Any:
        with self._response_lock:
            self._interrupted = False
        params = [*self.calls.params, *query.items()]
        response = request(self._client(), "GET", self.calls.path, query=params, timeout=timeout)
        with self._response_lock:
            self._response = response
            if self._interrupted:  # a reload arrived while the request was being sent
                response.shutdown()
        return response

    def _close(self, response: Any) -> None:
        with self._response_lock:
            self._response = None
        response.release_conn()

    def _list(self) -> None:
        started = time.monotonic()
        objects: list[Any] = []
        limit = self.timing.list_limit
        timeout = (self.timing.connect_timeout, self.timing.list_read_timeout)
        # Unpaginated from resourceVersion 0 (the API server's watch cache, as
        # client-go's first list), or paginated consistent reads.
        query: dict[str, Any] = {"limit": limit} if limit else {"resourceVersion": "0"}
        continue_token = ""
        while True:
            page_query = dict(query, **{"continue": continue_token}) if continue_token else query
            response = self._open(timeout, **page_query)
            try:
                body = json.loads(response.data)
            finally:
                self._close(response)
            for raw in body.get("items") or ():
                obj = self._parse(raw)
                if obj is not None:
                    objects.append(obj)
            meta = body.get("metadata") or {}
            continue_token = meta.get("continue") or ""
            if not continue_token:
                resource_version = str(meta.get("resourceVersion") or "")
                break
        del body
        self.sink.replace(objects, resource_version)
        self._resource_version = resource_version
        seconds = time.monotonic() - started
        if self._on_listed is not None:
            self._on_listed(self.calls.kind, seconds)
        log.info("listed", kind=self.calls.kind, count=len(objects), rv=resource_version, seconds=round(seconds, 3))

    def _parse(self, raw: dict[str, Any]) -> Any:
        try:
            return self.calls.parse(raw)
        except ValueError as exc:
            log.warning("skipping malformed object", kind=self.calls.kind, error=str(exc))
            return None

    def _watch(self) -> None:
        timeout = int(self._rng.uniform(self.timing.watch_timeout_min, self.timing.watch_timeout_max))
        response = self._open(
            (self.timing.connect_timeout, timeout + self.timing.read_grace),
            watch=True,
            resourceVersion=self._resource_version,
            allowWatchBookmarks=True,
            timeoutSeconds=timeout,
        )
        try:
            for kind, raw in watch_events(response, self.timing.min_watch_seconds, lambda: self._interrupted):
                self._handle(kind, raw)
        finally:
            self._close(response)
        if self._take_interrupt() and not self._stop.is_set():
            self.sink.count_watch_restart()

    def _handle(self, kind: str, raw: dict[str, Any]) -> None:
        rv = resource_version_of(raw)
        if kind == "BOOKMARK":
            self.sink.set_resource_version(rv)
        elif kind in ("ADDED", "MODIFIED"):
            obj = self._parse(raw)
            if obj is not None:
                self.sink.upsert(obj, rv)
        elif kind == "DELETED":
            meta = raw.get("metadata") or {}
            self.sink.delete((str(meta.get("namespace") or ""), str(meta.get("name") or "")), rv)
        if rv:
            self._resource_version = rv
        self._progress = True
