"""Attachment records on disk: several of a container's records dropped in one
call, its directory with the last of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.records import AttachmentRecord, RecordStore

CID = "c0ffee"


def record(ifname: str, index: int) -> AttachmentRecord:
    return AttachmentRecord(
        container_id=CID, ifname=ifname, index=index, netns="/var/run/netns/x", network_name=f"n{index}", config={}
    )


@pytest.mark.parametrize(
    ("removed", "left"),
    [
        ((), ["eth0", "net1", "net2"]),
        (("net1",), ["eth0", "net2"]),
        (("net2", "eth0"), ["net1"]),
        (("net9",), ["eth0", "net1", "net2"]),  # never recorded: nothing to drop
        (("eth0", "net1", "net2"), []),
    ],
)
def test_removing_records(tmp_path: Path, removed: tuple[str, ...], left: list[str]) -> None:
    store = RecordStore(str(tmp_path))
    store.save(record("eth0", 0), record("net1", 1), record("net2", 2))
    store.remove(CID, *removed)
    assert [r.ifname for r in store.load(CID)] == left
    # The container's directory goes with its last record, and only then.
    assert (tmp_path / CID).exists() == bool(left)
