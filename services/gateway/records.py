"""Attachment records on disk: one JSON file per container ID and interface,
`<recordsDir>/<containerID>/<ifname>.json`, written atomically with mode 0600.
They are what DEL, CHECK and GC work from when the cache or the API server is
down, and they say which attachments exist. A record is written before the
delegate's ADD runs (state "adding") so a crash mid-ADD still leaves DEL
enough to clean up, and rewritten with the result once it succeeded."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common import cni
from services.common.files import write_atomic
from services.common.validation import container_id_problem

# The records directory is named after the ID: a file name holds at most 255 bytes.
MAX_CONTAINER_ID = 255
RECORD_VERSION = 1
# A container whose ADD failed (rolled back, or never got past planning): its DEL
# answers success without running delegates again (docs/reliability.md).
ABANDONED_MARK = ".add-abandoned.json"


def validate_container_id(container_id: str) -> None:
    """The CNI spec's container ID alphabet; it also keeps IDs from escaping the records dir."""
    if container_id_problem(container_id) or len(container_id) > MAX_CONTAINER_ID:
        raise cni.CniError(cni.INVALID_ENV, f"invalid CNI_CONTAINERID {container_id[:64]!r}")


@dataclass(frozen=True)
class AttachmentRecord:
    container_id: str
    ifname: str
    index: int
    netns: str
    network_name: str
    config: Mapping[str, Any]  # the conf/conflist the delegate ran with
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    cni_args: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    master: bool = False
    state: str = "adding"  # "adding" until the delegate's ADD succeeded, then "added"
    result: Mapping[str, Any] | None = None  # the delegate's own result (its cniVersion)
    network_status: Mapping[str, Any] | None = None
    hotplug: bool = False
    # Dynamic networks (services/gateway/dynamic_networks.py) made this attachment.
    dynamic: bool = False
    # Whether the selection element named the interface (None: a record older than this field).
    ifname_requested: bool | None = None
    origin: str = "gateway"  # "upstream" for records read from upstream Multus' scratch cache
    created: float = field(default_factory=time.time)
    version: int = RECORD_VERSION

    @property
    def plugin_type(self) -> str:
        if self.config.get("type"):
            return str(self.config["type"])
        plugins = self.config.get("plugins") or []
        return ",".join(str(p.get("type", "")) for p in plugins if isinstance(p, dict))

    def to_json(self) -> bytes:
        # A shallow field dict, not dataclasses.asdict: that deep-copies the config and
        # result on every write (about 0.3 ms of an ADD's CPU per record).
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, sort_keys=True, default=dict).encode()

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> AttachmentRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})


class RecordStore:
    """Blocking file I/O on small local files written without fsync: the CNI verbs
    call it on the event loop (cheaper than a thread hop), bulk scans (GC, sweeps,
    listings) through asyncio.to_thread."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _dir(self, container_id: str) -> Path:
        validate_container_id(container_id)
        return self.root / container_id

    def save(self, *records: AttachmentRecord) -> None:
        # Not fsynced: rename is atomic against a crash of this process, and the
        # records, like host-local's own store, describe state a reboot discards.
        for record in records:
            path = self._dir(record.container_id) / f"{record.ifname}.json"
            write_atomic(str(path), record.to_json(), durable=False)

    def load(self, container_id: str) -> list[AttachmentRecord]:
        """The container's records in attach order (empty when none)."""
        directory = self._dir(container_id)
        records = []
        try:
            entries = sorted(directory.iterdir())
        except FileNotFoundError:
            return []
        for path in entries:
            if path.name.startswith(".") or path.suffix != ".json":
                continue
            try:
                records.append(AttachmentRecord.from_obj(json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError):
                continue  # a torn or foreign file must not block DEL of the others
        return sorted(records, key=lambda r: (r.index, r.created))

    def remove(self, container_id: str, *ifnames: str) -> None:
        """Drop these attachments' records, then the container's directory once it is empty."""
        directory = self._dir(container_id)
        for ifname in ifnames:
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{ifname}.json").unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty: one try per call, not per record

    def mark_abandoned(self, container_id: str, reason: str) -> None:
        """Remember that this container's ADD failed and was rolled back."""
        mark = json.dumps({"reason": reason[:512], "at": time.time()}).encode()
        write_atomic(str(self._dir(container_id) / ABANDONED_MARK), mark, durable=False)

    def load_marked(self, container_id: str) -> tuple[list[AttachmentRecord], bool]:
        """The container's records, and whether its ADD was rolled back (one thread hop for DEL)."""
        return self.load(container_id), (self._dir(container_id) / ABANDONED_MARK).exists()

    def forget_abandoned(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._dir(container_id) / ABANDONED_MARK).unlink()
        with contextlib.suppress(OSError):
            self._dir(container_id).rmdir()  # only when empty

    def sweep_abandoned(self, older_than: float) -> int:
        """Drop rolled-back marks older than `older_than` seconds (of containers with no
        record left); the runtime's DELs for a failed ADD come right after it."""
        cutoff = time.time() - older_than
        dropped = 0
        for cid in self.container_ids():
            mark = self._dir(cid) / ABANDONED_MARK
            try:
                if mark.stat().st_mtime < cutoff and not self.load(cid):
                    self.forget_abandoned(cid)
                    dropped += 1
            except OSError:
                continue
        return dropped

    def take_over(self, container_id: str) -> list[AttachmentRecord]:
        """An ADD starts: the container's earlier records, and its rolled-back mark cleared."""
        with contextlib.suppress(FileNotFoundError):
            (self._dir(container_id) / ABANDONED_MARK).unlink()
        return self.load(container_id)

    def container_ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not container_id_problem(p.name))
        except FileNotFoundError:
            return []

    def all(self) -> list[AttachmentRecord]:
        out: list[AttachmentRecord] = []
        for cid in self.container_ids():
            out.extend(self.load(cid))
        return out
