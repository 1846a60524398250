"""Per-pod rate limit on events, as upstream Multus' event recorder applies it.

Upstream emits its events through client-go's recorder, whose correlator
drops an object's events beyond a token bucket per source and involved
object (EventSourceObjectSpamFilter: a burst of 25, then one per 5 minutes;
an LRU of 4,096 objects). So a pod whose sandbox is re-created again and
again (a crash loop, a node that keeps re-running its ADD) costs the API
server 25 events, then one every 5 minutes, instead of one POST per network
per ADD. This is the same bucket, keyed by the pod (our source is fixed per
node). Pure: the clock is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# client-go tools/record: defaultSpamBurst, defaultSpamQPS, maxLruCacheEntries.
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
MAX_OBJECTS = 4096

ObjectKey = tuple[str, str, str]  # namespace, name, uid


@dataclass
class _Bucket:
    tokens: float
    updated: float


class EventSpamFilter:
    def __init__(self, burst: int = SPAM_BURST, qps: float = SPAM_QPS, max_objects: int = MAX_OBJECTS) -> None:
        self.burst = burst
        self.qps = qps
        self.max_objects = max_objects
        self._buckets: OrderedDict[ObjectKey, _Bucket] = OrderedDict()

    def allow(self, key: ObjectKey, now: float) -> bool:
        """Whether an event about `key` may be sent at `now` (seconds, monotonic); takes a token."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.qps)
            bucket.updated = now
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > self.max_objects:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
