"""Queued network-status writes on disk, so a cache restart loses none.

A write the caller stopped waiting for (its ADD already succeeded) is kept as
`<runDir>/cache/status-queue/<namespace>_<name>.json` (one file per pod: a newer
write supersedes an older one, as in the queue) until it is delivered or the
pod is gone; at start the cache queues every file again. Namespace and pod
names are DNS names, so `_` cannot be part of either and the file name is
unambiguous. Blocking file I/O: call through asyncio.to_thread."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from services.cache.objects import Key
from services.cache.source import StatusWrite
from services.common.files import write_atomic
from services.common.logs import get_logger

log = get_logger(__name__)


class StatusJournal:
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _path(self, key: Key) -> Path:
        namespace, name = key
        if "/" in namespace + name or "_" in namespace + name or not namespace or not name:
            raise ValueError(f"not a pod key: {namespace!r}/{name!r}")
        return self.directory / f"{namespace}_{name}.json"

    def save(self, write: StatusWrite) -> None:
        body = {
            "namespace": write.namespace,
            "name": write.name,
            "uid": write.uid,
            "networkStatus": write.network_status_json,
        }
        write_atomic(str(self._path(write.key)), json.dumps(body).encode())

    def remove(self, key: Key) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self._path(key).unlink()

    def load(self) -> list[StatusWrite]:
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []
        writes = []
        for path in paths:
            try:
                body = json.loads(path.read_bytes())
                writes.append(
                    StatusWrite(str(body["namespace"]), str(body["name"]), str(body["uid"]), str(body["networkStatus"]))
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("unreadable queued network-status write dropped", file=path.name, error=str(exc))
                with contextlib.suppress(OSError):
                    path.unlink()
        return writes
