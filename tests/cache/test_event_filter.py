"""Events per pod are rate limited as upstream's recorder does (client-go's
spam filter: a burst of 25 per pod, then one per 5 minutes): the bucket as
pure logic, then through the real cache service."""

from __future__ import annotations

import json

import grpc
import pytest

from services.api import cache_pb2, cache_pb2_grpc
from services.cache.event_filter import SPAM_BURST, EventSpamFilter
from tests.executor.conftest import wait_until
from tests.support.services import Instance, running_services

POD = ("default", "web", "uid-1")


def sent(spam: EventSpamFilter, key: tuple[str, str, str], at: float, count: int) -> int:
    return sum(spam.allow(key, at) for _ in range(count))


@pytest.mark.parametrize(
    ("burst_at", "later", "expected_later"),
    [
        (0.0, 0.0, 0),  # the burst used up: nothing more at once
        (0.0, 299.0, 0),  # a token takes 5 minutes to come back
        (0.0, 300.0, 1),
        (0.0, 1500.0, 5),
        (0.0, 10**6, SPAM_BURST),  # refilled, never beyond the burst
    ],
)
def test_a_pod_gets_a_burst_then_one_event_per_five_minutes(burst_at: float, later: float, expected_later: int) -> None:
    spam = EventSpamFilter()
    assert sent(spam, POD, burst_at, SPAM_BURST + 10) == SPAM_BURST
    assert sent(spam, POD, later, 100) == expected_later


def test_pods_have_buckets_of_their_own_and_a_recreated_pod_starts_afresh() -> None:
    spam = EventSpamFilter()
    assert sent(spam, POD, 0.0, 30) == SPAM_BURST
    assert sent(spam, ("default", "db", "uid-2"), 0.0, 3) == 3
    assert sent(spam, ("default", "web", "uid-3"), 0.0, 3) == 3  # same name, new UID


def test_the_least_recently_used_pod_is_forgotten_past_the_bound() -> None:
    spam = EventSpamFilter(burst=2, max_objects=2)
    assert sent(spam, ("ns", "a", ""), 0.0, 5) == 2
    assert sent(spam, ("ns", "b", ""), 0.0, 1) == 1
    assert sent(spam, ("ns", "a", ""), 0.0, 1) == 0  # a is still known (and now the most recent)
    assert sent(spam, ("ns", "c", ""), 0.0, 1) == 1  # b is forgotten
    assert sent(spam, ("ns", "b", ""), 0.0, 5) == 2  # a fresh bucket


PODS_YAML = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  uid: 11111111-2222-3333-4444-555555555555
spec:
  nodeName: node-a
---
apiVersion: v1
kind: Pod
metadata:
  name: db
spec:
  nodeName: node-a
"""


def test_the_cache_sends_a_pods_burst_and_drops_the_rest(instance: Instance) -> None:
    (instance.cluster_dir / "pods.yaml").write_text(PODS_YAML)
    with running_services(instance, "cache"), grpc.insecure_channel(f"unix://{instance.grpc_socket('cache')}") as ch:
        stub = cache_pb2_grpc.CacheStub(ch)
        # A pod whose ADD keeps being repeated: its events ride on its status writes.
        web = ("web", "11111111-2222-3333-4444-555555555555")
        for attempt in range(SPAM_BURST + 5):
            stub.UpdateNetworkStatus(
                cache_pb2.UpdateNetworkStatusRequest(
                    namespace="default",
                    name=web[0],
                    uid=web[1],
                    network_status_json="[]",
                    events=[cache_pb2.PodEvent(type="Normal", reason="AddedInterface", message=f"Add net1 #{attempt}")],
                ),
                timeout=5,
            )
        stub.EmitPodEvent(
            cache_pb2.EmitPodEventRequest(namespace="default", name="db", type="Warning", reason="NoNetworkFound"),
            timeout=5,
        )
        events_file = instance.run_dir / "cache" / "events.jsonl"

        def sent() -> list[dict[str, str]]:
            lines = events_file.read_text().splitlines() if events_file.exists() else []
            return [json.loads(line) for line in lines]

        assert wait_until(lambda: len(sent()) == SPAM_BURST + 1, 10), len(sent())
    messages = [e["message"] for e in sent() if e["name"] == "web"]
    assert messages == [f"Add net1 #{attempt}" for attempt in range(SPAM_BURST)]
    assert [e["reason"] for e in sent() if e["name"] == "db"] == ["NoNetworkFound"]
