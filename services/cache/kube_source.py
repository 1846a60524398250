"""The Kubernetes API as the cache's source: a Pod informer limited to this
node, a NAD informer across namespaces, live GETs after a cache miss,
network-status through pods/status, and core/v1 Events as upstream emits them.

All calls go through the common transport (services.common.kube_api) in
worker threads, as raw JSON, with a request timeout on every call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from services.cache import metrics
from services.cache.errors import PodGone, SourceForbidden, SourceUnavailable
from services.cache.informer import informer
from services.cache.kube_client import ApiClientHolder
from services.cache.objects import (
    NAD,
    POD,
    CachedNad,
    CachedPod,
    nad_from_dict,
    network_status_patch,
    pod_from_dict,
    set_network_status,
    uid_mismatch,
)
from services.cache.source import PodEvent, StatusWrite
from services.cache.store import ObjectStore
from services.common.config import DaemonConfig
from services.common.credentials import api_credentials
from services.common.kube_api import TRANSPORT_ERRORS, ApiError, Timeout, get_json, send_json
from services.common.kube_watch import ListWatch, ResourceCalls, WatchTiming
from services.common.logs import get_logger

log = get_logger(__name__)

NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
EVENT_COMPONENT = "multus"  # upstream's EventSource component
CONFLICT_RETRIES = 8
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5.0, 10.0)  # (connect, read) for single-object writes
# A live GET runs while an ADD waits: a server that cannot return one object in
# 3 s is in trouble, and the runtime's retry (code 11) beats waiting longer.
LIVE_GET_TIMEOUT = (2.0, 3.0)

def pod_calls(node: str) -> ResourceCalls:
    return ResourceCalls(POD, "/api/v1/pods", (("fieldSelector", f"spec.nodeName={node}"),), pod_from_dict)


def nad_calls() -> ResourceCalls:
    return ResourceCalls(NAD, f"/apis/{NAD_GROUP}/{NAD_VERSION}/{NAD_PLURAL}", (), nad_from_dict)


def api_error(error: Exception, what: str) -> SourceUnavailable:
    """The one translation of client failures into cache errors (never leaks credentials)."""
    if isinstance(error, ApiError):
        reason = error.message
        if error.status == 403:
            return SourceForbidden(f"{what}: forbidden by RBAC: {reason}")
        if error.status == 401:
            return SourceForbidden(f"{what}: unauthorized (expired or rejected credentials): {reason}")
        if error.status == 0:
            return SourceUnavailable(f"{what}: {error.reason}")
        return SourceUnavailable(f"{what}: API server answered {error.status}: {reason}")
    return SourceUnavailable(f"{what}: API server unreachable: {type(error).__name__}")


class KubeSource:
    def __init__(self, config: DaemonConfig, node: str, timing: WatchTiming | None = None) -> None:
        self.node = node
        if timing is None:
            # Our own key (docs/cache.md): 0 lists from the watch cache in one response.
            timing = WatchTiming(list_limit=int(config.raw.get("cacheListPageSize", 0) or 0))
        self.credentials = api_credentials(config)
        where = f": {self.credentials.kubeconfig}" if self.credentials.kubeconfig else ""
        self.description = f"kubernetes ({self.credentials.kind}{where})"
        self.holder = ApiClientHolder(self.credentials)
        self.pods: ObjectStore[CachedPod] = ObjectStore(POD)
        self.nads: ObjectStore[CachedNad] = ObjectStore(NAD)
        self.informers: list[ListWatch] = [
            informer(pod_calls(node), self.pods, lambda: self.holder.client, timing),
            informer(nad_calls(), self.nads, lambda: self.holder.client, timing),
        ]
        for watcher in self.informers:
            self.holder.on_reload(watcher.interrupt)
        # API calls off the event loop; a bounded pool so an API outage cannot pile up threads.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kube-api")
        self._credential_watch: asyncio.Task[None] | None = None

    # --- lifecycle ---
    async def start(self) -> None:
        log.info("starting informers", node=self.node, credentials=self.credentials.kind)
        for watcher in self.informers:
            watcher.start()
        self._credential_watch = asyncio.create_task(self.holder.watch_credentials())

    async def wait_synced(self) -> None:
        while not (self.pods.synced and self.nads.synced):
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._credential_watch is not None:
            self._credential_watch.cancel()
        await asyncio.gather(*(asyncio.to_thread(i.stop) for i in self.informers))
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _api(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    # --- live GETs ---
    def _get_raw(self, what: str, path: str, timeout: Timeout = REQUEST_TIMEOUT) -> dict[str, Any] | None:
        try:
            return get_json(self.holder.client, path, timeout)
        except TRANSPORT_ERRORS as exc:
            raise api_error(exc, what) from exc

    async def live_pod(self, namespace: str, name: str) -> CachedPod | None:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        raw = await self._api(self._get_raw, f"get pod {namespace}/{name}", path, LIVE_GET_TIMEOUT)
        return pod_from_dict(raw) if raw is not None else None

    async def live_nad(self, namespace: str, name: str) -> CachedNad | None:
        path = f"/apis/{NAD_GROUP}/{NAD_VERSION}/namespaces/{namespace}/{NAD_PLURAL}/{name}"
        what = f"get NetworkAttachmentDefinition {namespace}/{name}"
        raw = await self._api(self._get_raw, what, path, LIVE_GET_TIMEOUT)
        return nad_from_dict(raw) if raw is not None else None

    # --- network-status ---
    async def write_network_status(self, write: StatusWrite) -> None:
        cached = self.pods.get(write.key)
        # A static pod's mirror may be named by kubelet's UID, not the API's: no UID check.
        check_uid = bool(write.uid) and not (cached is not None and cached.is_static_mirror)
        await self._api(self._write_network_status, write, check_uid)

    def _write_network_status(self, write: StatusWrite, check_uid: bool) -> None:
        """One round trip: a JSON merge patch of the annotation on pods/status. It
        carries the pod's UID, which the API server refuses to change (422 on
        metadata.uid) when the name now belongs to another incarnation; only then is
        the pod read, to tell a recreated pod (dropped) from a mirror pod. A merge
        patch applies to the latest object, so nobody else's change is overwritten
        and there is no read-modify-write conflict to lose."""
        what = f"patch pods/status {write.namespace}/{write.name}"
        path = f"/api/v1/namespaces/{write.namespace}/pods/{write.name}/status"
        patch = network_status_patch(write.network_status_json, write.uid if check_uid else "")
        for _ in range(CONFLICT_RETRIES):
            try:
                send_json(self.holder.client, "PATCH", path, patch, REQUEST_TIMEOUT, content_type=MERGE_PATCH)
                return
            except ApiError as exc:
                if exc.status == 409:  # only when the server gave up its own retries
                    metrics.STATUS_CONFLICTS.inc()
                    continue
                if exc.status == 404:
                    raise PodGone(f"pod {write.namespace}/{write.name} not found") from exc
                if exc.status == 422 and check_uid and exc.caused_by("metadata.uid"):
                    self._replace_network_status(write)
                    return
                raise api_error(exc, what) from exc
            except TRANSPORT_ERRORS as exc:
                raise api_error(exc, what) from exc
        raise SourceUnavailable(f"{what}: still conflicting after {CONFLICT_RETRIES} attempts")

    def _replace_network_status(self, write: StatusWrite) -> None:
        """The UID did not match: read the pod, drop the write if it was recreated,
        else (a mirror pod) set the annotation and replace pods/status with the
        resourceVersion read; a 409 means someone wrote in between: read again."""
        what = f"update pods/status {write.namespace}/{write.name}"
        pod_path = f"/api/v1/namespaces/{write.namespace}/pods/{write.name}"
        for _ in range(CONFLICT_RETRIES):
            raw = self._get_raw(f"get pod {write.namespace}/{write.name}", pod_path)
            if raw is None:
                raise PodGone(f"pod {write.namespace}/{write.name} not found")
            if uid_mismatch(pod_from_dict(raw), write.uid):
                raise PodGone(f"pod {write.namespace}/{write.name} was recreated (UID differs from {write.uid})")
            if not set_network_status(raw, write.network_status_json):
                return
            try:
                send_json(self.holder.client, "PUT", f"{pod_path}/status", raw, REQUEST_TIMEOUT)
                return
            except ApiError as exc:
                if exc.status == 409:
                    metrics.STATUS_CONFLICTS.inc()
                    log.debug("pods/status conflict; re-reading", pod=f"{write.namespace}/{write.name}")
                    continue
                if exc.status == 404:
                    raise PodGone(f"pod {write.namespace}/{write.name} not found") from exc
                raise api_error(exc, what) from exc
            except TRANSPORT_ERRORS as exc:
                raise api_error(exc, what) from exc
        raise SourceUnavailable(f"{what}: still conflicting after {CONFLICT_RETRIES} attempts")

    # --- events ---
    async def emit_event(self, event: PodEvent) -> None:
        uid = event.uid or getattr(self.pods.get((event.namespace, event.name)), "uid", "")
        await self._api(self._create_event, event, uid)

    def _create_event(self, event: PodEvent, uid: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # client-go's recorder names events <object>.<unix nanoseconds in hex>.
            "metadata": {"name": f"{event.name}.{time.time_ns():x}", "namespace": event.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": event.namespace,
                "name": event.name,
                **({"uid": uid} if uid else {}),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": EVENT_COMPONENT, "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        what = f"create event for pod {event.namespace}/{event.name}"
        try:
            path = f"/api/v1/namespaces/{event.namespace}/events"
            send_json(self.holder.client, "POST", path, body, REQUEST_TIMEOUT)
        except TRANSPORT_ERRORS as exc:
            raise api_error(exc, what) from exc
