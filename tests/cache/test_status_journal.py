"""Queued network-status writes survive a cache restart (issue 12 item 6): a
write the caller stopped waiting for is on disk before the caller hears
"queued", is queued again by the next writer, and the file goes once the
write is delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.cache.errors import SourceUnavailable
from services.cache.source import PodEvent, StatusWrite
from services.cache.status_journal import StatusJournal
from services.cache.status_writer import StatusWriter

WRITE = StatusWrite("default", "web", "uid-1", '[{"name": "cluster"}]')


class Api:
    def __init__(self, up: bool) -> None:
        self.up = up
        self.delivered: list[StatusWrite] = []

    async def deliver(self, write: StatusWrite) -> None:
        if not self.up:
            raise SourceUnavailable("API server unreachable")
        self.delivered.append(write)

    async def emit(self, event: PodEvent) -> None:
        return None


async def test_a_queued_write_survives_a_restart(tmp_path: Path) -> None:
    journal = StatusJournal(str(tmp_path / "queue"))
    down = Api(up=False)
    first = StatusWriter(down.deliver, down.emit, backoff_base=0.01, backoff_cap=0.02, journal=journal)
    result = await first.submit(WRITE, wait=0.05)
    assert not result.delivered and "queued" in result.message
    assert journal.load() == [WRITE]
    await first.stop()  # the cache is killed or restarted with the write still queued

    up = Api(up=True)
    second = StatusWriter(up.deliver, up.emit, journal=StatusJournal(str(tmp_path / "queue")))
    assert await second.resume() == 1
    for _ in range(100):
        if up.delivered and not list((tmp_path / "queue").glob("*.json")):
            break
        await asyncio.sleep(0.01)
    assert up.delivered == [WRITE]
    assert journal.load() == []
    await second.stop()


async def test_a_newer_write_supersedes_a_resumed_one(tmp_path: Path) -> None:
    journal = StatusJournal(str(tmp_path))
    journal.save(WRITE)
    api = Api(up=True)
    writer = StatusWriter(api.deliver, api.emit, journal=journal)
    newer = StatusWrite("default", "web", "uid-1", "[]")
    assert (await writer.submit(newer, wait=1.0)).delivered
    await writer.resume()
    await asyncio.sleep(0.05)
    assert api.delivered == [newer]
    await writer.stop()


async def test_a_write_delivered_in_time_never_touches_the_disk(tmp_path: Path) -> None:
    journal = StatusJournal(str(tmp_path / "queue"))
    api = Api(up=True)
    writer = StatusWriter(api.deliver, api.emit, journal=journal)
    assert (await writer.submit(WRITE, wait=1.0)).delivered
    assert not (tmp_path / "queue").exists()
    await writer.stop()
