"""Faults the real API server cannot produce quickly, against a tiny fake one:
a forced 410 Gone on a watch, and replies that take seconds."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from services.api import cache_pb2
from services.cache.informer import informer
from services.cache.kube_client import ApiClientHolder
from services.cache.kube_source import pod_calls
from services.cache.objects import POD, CachedPod
from services.cache.store import ObjectStore
from services.common import cni
from services.common.credentials import ApiCredentials
from services.common.kube_watch import ListWatch, WatchTiming
from services.gateway.cache_client import CacheClient
from tests.cache.fake_apiserver import fake_apiserver, fake_kubeconfig, fake_pod
from tests.cache.kube_support import cache_stub, eventually, get_pod, kube_instance, running_cache, stats
from tests.support.services import Instance

NODE = "node-fake"


def test_410_gone_relists_and_drops_what_was_deleted_meanwhile(instance: Instance, tmp_path: Path) -> None:
    with fake_apiserver() as (url, state):
        state.pods["old"] = fake_pod("old", NODE, "uid-old", "90")
        kube_instance(instance, fake_kubeconfig(tmp_path / "fake.kubeconfig", url))
        with running_cache(instance, NODE) as proc, cache_stub(instance) as stub:
            assert get_pod(stub, "default", "old").uid == "uid-old"
            with state.lock:  # while the watch is "compacted away": old deleted, new created
                del state.pods["old"]
                state.pods["new"] = fake_pod("new", NODE, "uid-new", "120")
                state.resource_version = 120
                state.gone_on_next_watch = True
            eventually(lambda: state.lists >= 2, timeout=10, what="relist after 410")
            eventually(lambda: stats(stub)["Pod"].resource_version == "120", what="relisted resourceVersion")
            assert stats(stub)["Pod"].count == 1
            assert get_pod(stub, "default", "new").uid == "uid-new"
            assert stats(stub)["Pod"].watch_restarts >= 1
            assert "resourceVersion expired; relisting" in proc.log()


def test_slow_live_get_is_bounded_and_becomes_code_11(instance: Instance, tmp_path: Path) -> None:
    with fake_apiserver() as (url, state):
        kube_instance(instance, fake_kubeconfig(tmp_path / "fake.kubeconfig", url))
        with running_cache(instance, NODE), cache_stub(instance) as stub:
            state.slow_seconds = 5.0
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                get_pod(stub, "default", "unknown", wait_ms=100)
            took = time.monotonic() - started
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert took < 6, took

            async def through_gateway_client() -> int:
                client = CacheClient(instance.grpc_socket("cache"))
                try:
                    await client.get_pod("default", "unknown", wait_ms=100, timeout=10)
                except cni.CniError as exc:
                    return exc.code
                finally:
                    await client.close()
                return 0

            import asyncio

            assert asyncio.run(through_gateway_client()) == cni.TRY_AGAIN_LATER


def test_slow_status_write_returns_at_the_bound_and_is_delivered_later(instance: Instance, tmp_path: Path) -> None:
    with fake_apiserver() as (url, state):
        state.pods["web"] = fake_pod("web", NODE, "uid-web", "101")
        kube_instance(instance, fake_kubeconfig(tmp_path / "fake.kubeconfig", url))
        with running_cache(instance, NODE) as proc, cache_stub(instance) as stub:
            state.slow_seconds = 1.5  # one PATCH: 1.5 s per attempt
            started = time.monotonic()
            resp = stub.UpdateNetworkStatus(
                cache_pb2.UpdateNetworkStatusRequest(
                    namespace="default", name="web", uid="uid-web", network_status_json="[]", wait_ms=1000
                ),
                timeout=10,
            )
            assert not resp.delivered
            assert 0.9 < time.monotonic() - started < 2.5
            eventually(lambda: state.patches, timeout=10, what="the write delivered in the background")
            content_type, patch = state.patches[0]
            assert content_type == "application/merge-patch+json"
            # the annotation, and the UID the API server refuses to change for another incarnation
            assert patch == {"metadata": {"annotations": {"k8s.v1.cni.cncf.io/network-status": "[]"}, "uid": "uid-web"}}
            assert state.pods["web"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] == "[]"
            eventually(lambda: "network-status delivered late" in proc.log(), what="late delivery logged")


def test_watch_closed_at_once_without_events_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    """A server (or proxy) that ends every watch immediately with no events must
    not be re-watched in a busy loop: it counts as a failure and backs off."""
    with fake_apiserver() as (url, state):
        state.watch_hold_seconds = 0.0
        holder = ApiClientHolder(ApiCredentials("kubeconfig", str(fake_kubeconfig(tmp_path / "k", url))))
        store: ObjectStore[CachedPod] = ObjectStore(POD)
        timing = WatchTiming(backoff_base=0.2, backoff_cap=1.0)
        watcher: ListWatch = informer(pod_calls(NODE), store, lambda: holder.client, timing)
        watcher.start()
        try:
            eventually(lambda: store.synced, what="initial list")
            time.sleep(2.0)
            with state.lock:
                watches = state.watches
        finally:
            watcher.stop()
        # Backoff 0.1-0.2 s, then 0.2-0.4 s, ... capped at 1 s: a handful in 2 s, not hundreds.
        assert 1 <= watches <= 10, watches
        assert store.stats().watch_restarts >= 1
