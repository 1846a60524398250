"""The file-backed cluster: Pods and NetworkAttachmentDefinitions as YAML/JSON
files in a directory, watched for changes. It serves standalone runs, the
demo and CNI-path tests that are not about the API.

Network-status writes are kept in memory and persisted under <runDir>/cache/
(the files in the cluster directory are the user's, never rewritten), and pod
events are appended to <runDir>/cache/events.jsonl.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import watchfiles
import yaml

from services.cache.objects import (
    NAD,
    POD,
    CachedNad,
    CachedPod,
    Key,
    nad_from_dict,
    pod_from_dict,
    with_network_status,
)
from services.cache.source import PodEvent, StatusWrite
from services.cache.store import ObjectStore
from services.common.files import write_atomic
from services.common.logs import get_logger

log = get_logger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
STATUS_FILE = "network-status.json"
EVENTS_FILE = "events.jsonl"


def iter_objects(documents: Any) -> Iterator[dict[str, Any]]:
    """Flatten parsed documents: `kind: List` (and any *List) contributes its items."""
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            yield from iter_objects(doc["items"])
        else:
            yield doc


def parse_cluster_file(path: Path) -> tuple[list[CachedPod], list[CachedNad]]:
    """The pods and NADs in one file. Raises ValueError (incl. ObjectError) on a bad file."""
    text = path.read_text()
    try:
        documents: list[Any] = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    pods: list[CachedPod] = []
    nads: list[CachedNad] = []
    for obj in iter_objects(documents):
        kind = obj.get("kind")
        if kind == POD:
            pods.append(pod_from_dict(obj, default_uid=True))
        elif kind == NAD:
            nads.append(nad_from_dict(obj))
    return pods, nads


class FileSource:
    def __init__(self, cluster_dir: str, state_dir: str) -> None:
        self.cluster_dir = Path(cluster_dir)
        self.state_dir = Path(state_dir)
        self.description = f"files:{cluster_dir}"
        self.pods: ObjectStore[CachedPod] = ObjectStore(POD)
        self.nads: ObjectStore[CachedNad] = ObjectStore(NAD)
        # Which keys each file contributed, so removing a file or an object removes it from the cache.
        self._contributed: dict[Path, tuple[set[Key], set[Key]]] = {}
        self._statuses: dict[Key, tuple[str, str]] = {}  # key -> (uid, network-status JSON)
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    # --- lifecycle ---
    async def start(self) -> None:
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._load_statuses()
        self.rescan()
        self.pods.mark_synced()
        self.nads.mark_synced()
        self._watcher = asyncio.create_task(self._watch())
        log.info(
            "file-backed cluster loaded", cluster_dir=str(self.cluster_dir), pods=len(self.pods), nads=len(self.nads)
        )

    async def wait_synced(self) -> None:
        return None  # start() loads synchronously

    async def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _watch(self) -> None:
        # A short debounce: tests and the demo write a pod and call ADD right after.
        async for _changes in watchfiles.awatch(
            self.cluster_dir, debounce=50, step=10, stop_event=self._stop, recursive=False
        ):
            self.rescan()

    # --- loading ---
    def _cluster_files(self) -> list[Path]:
        try:
            entries = sorted(self.cluster_dir.iterdir())
        except FileNotFoundError:
            return []
        return [p for p in entries if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")]

    def rescan(self) -> None:
        """Bring the cache in line with the directory (cheap: demo-sized directories)."""
        files = self._cluster_files()
        for gone in set(self._contributed) - set(files):
            self._forget_file(gone)
        for path in files:
            try:
                pods, nads = parse_cluster_file(path)
            except (OSError, ValueError) as exc:  # a half-written or bad file: keep what we had
                log.warning("cannot load cluster file", path=str(path), error=str(exc))
                continue
            self._apply_file(path, pods, nads)

    def _apply_file(self, path: Path, pods: list[CachedPod], nads: list[CachedNad]) -> None:
        old_pods, old_nads = self._contributed.get(path, (set(), set()))
        for pod in pods:
            pod = self._overlay_status(pod)
            if self.pods.get(pod.key) != pod:
                self.pods.upsert(pod)
        for nad in nads:
            if self.nads.get(nad.key) != nad:
                self.nads.upsert(nad)
        new_pods, new_nads = {p.key for p in pods}, {n.key for n in nads}
        self._contributed[path] = (new_pods, new_nads)
        self._drop_orphans(old_pods - new_pods, old_nads - new_nads)

    def _forget_file(self, path: Path) -> None:
        old_pods, old_nads = self._contributed.pop(path, (set(), set()))
        self._drop_orphans(old_pods, old_nads)

    def _drop_orphans(self, pods: set[Key], nads: set[Key]) -> None:
        still_pods = set().union(*(c[0] for c in self._contributed.values())) if self._contributed else set()
        still_nads = set().union(*(c[1] for c in self._contributed.values())) if self._contributed else set()
        for key in pods - still_pods:
            self.pods.delete(key)
        for key in nads - still_nads:
            self.nads.delete(key)

    def _overlay_status(self, pod: CachedPod) -> CachedPod:
        stored = self._statuses.get(pod.key)
        if stored is None or stored[0] != pod.uid:
            return pod
        return with_network_status(pod, stored[1])

    # --- persisted network-status ---
    def _load_statuses(self) -> None:
        path = self.state_dir / STATUS_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable network-status store", path=str(path), error=str(exc))
            return
        for entry in raw if isinstance(raw, list) else []:
            with contextlib.suppress(KeyError, TypeError):
                key = (str(entry["namespace"]), str(entry["name"]))
                self._statuses[key] = (str(entry["uid"]), str(entry["networkStatus"]))

    def _save_statuses(self) -> None:
        entries = [
            {"namespace": ns, "name": name, "uid": uid, "networkStatus": status}
            for (ns, name), (uid, status) in sorted(self._statuses.items())
        ]
        write_atomic(str(self.state_dir / STATUS_FILE), json.dumps(entries, indent=1), durable=False)

    # --- source API ---
    async def live_pod(self, namespace: str, name: str) -> CachedPod | None:
        self.rescan()  # the directory is the "API server": re-read it instead of trusting the watcher's timing
        return self.pods.get((namespace, name))

    async def live_nad(self, namespace: str, name: str) -> CachedNad | None:
        self.rescan()
        return self.nads.get((namespace, name))

    async def write_network_status(self, write: StatusWrite) -> None:
        async with self._write_lock:
            pod = self.pods.get(write.key)
            uid = write.uid or (pod.uid if pod else "")
            if write.network_status_json:
                self._statuses[write.key] = (uid, write.network_status_json)
            else:
                self._statuses.pop(write.key, None)
            self._save_statuses()
            if pod is not None and (not write.uid or pod.uid == write.uid):
                self.pods.upsert(with_network_status(pod, write.network_status_json))

    async def emit_event(self, event: PodEvent) -> None:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "namespace": event.namespace,
            "name": event.name,
            "uid": event.uid,
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": "multus"},
        }
        with (self.state_dir / EVENTS_FILE).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info("pod event", **{k: v for k, v in record.items() if k not in ("time", "source")})
