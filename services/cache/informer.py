"""The cache's informers: the common list/watch loop (services.common.kube_watch)
feeding an ObjectStore, with the list time as a metric."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from services.cache import metrics
from services.cache.store import ObjectStore
from services.common.kube_watch import ListWatch, ResourceCalls, WatchTiming


def _listed(kind: str, seconds: float) -> None:
    metrics.SYNC_SECONDS.labels(kind).set(seconds)


def informer(
    calls: ResourceCalls,
    store: ObjectStore[Any],
    client: Callable[[], Any],
    timing: WatchTiming | None = None,
    rng: random.Random | None = None,
) -> ListWatch:
    return ListWatch(calls, store, client, timing, rng, on_listed=_listed)
