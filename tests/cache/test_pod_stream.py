"""The pod stream's level-triggered contract, in-process: a burst of writes
reaches a busy reader as the pod's last state, once; deletions as DELETED; a
reader subscribed before the initial list waits for it (no half snapshot)."""

from __future__ import annotations

import asyncio
import threading

from services.cache.objects import CachedPod
from services.cache.pod_stream import watch_pods
from services.cache.store import ObjectStore


async def test_burst_coalesces_to_the_last_state() -> None:
    store: ObjectStore[CachedPod] = ObjectStore("Pod")
    stream = watch_pods(store)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not first.done(), "a snapshot was sent before the store was listed"
    store.replace([CachedPod("ns", "a", "u", resource_version="1")], "1")
    assert (await asyncio.wait_for(first, 5)).kind == "SNAPSHOT"
    assert (await anext(stream)).kind == "SYNCED"

    def burst() -> None:  # an informer thread
        for version in ("2", "3", "4"):
            store.upsert(CachedPod("ns", "a", "u", resource_version=version), version)
        store.upsert(CachedPod("ns", "b", "u2"))
        store.delete(("ns", "b"))

    thread = threading.Thread(target=burst)
    thread.start()
    thread.join()
    changes = [await asyncio.wait_for(anext(stream), 5) for _ in range(2)]
    assert [(c.kind, c.key) for c in changes] == [("UPDATED", ("ns", "a")), ("DELETED", ("ns", "b"))]
    assert changes[0].pod is not None and changes[0].pod.resource_version == "4"
    await stream.aclose()
    assert store._listeners == []  # the subscription ends with the stream
