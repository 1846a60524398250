"""Cache state as Prometheus gauges read at scrape time from the stores
(synced or not, when the last full list finished), so alerts see a cache that
never synced or stopped relisting without the informer loop reporting it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.cache.store import KindStats

SYNCED = "multus_cache_synced"
SYNCED_HELP = "1 once the kind's initial list finished (informer synced), else 0"
LAST_SYNC = "multus_cache_last_sync_timestamp_seconds"
LAST_SYNC_HELP = "When the kind's last full list finished (Unix seconds; 0 = never)"


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(SYNCED, SYNCED_HELP, labels=["kind"]),
        GaugeMetricFamily(LAST_SYNC, LAST_SYNC_HELP, labels=["kind"]),
    )


class CacheStateCollector(Collector):
    def __init__(self, stats: Callable[[], Sequence[KindStats]]) -> None:
        self._stats = stats

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        synced, last = _families()
        for kind in self._stats():
            synced.add_metric([kind.kind], 1.0 if kind.synced else 0.0)
            last.add_metric([kind.kind], kind.last_sync_unix)
        yield synced
        yield last
