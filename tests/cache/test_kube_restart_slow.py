"""The shared control plane really stopped and restarted while the cache serves.
Under -m slow only: it interrupts everyone using the API server, so it runs
once, at the end of a run, never by default."""

from __future__ import annotations

import os
import subprocess

import pytest

from services.api import cache_pb2
from tests.cache.kube_support import Cluster, cache_stub, eventually, get_pod, kube_instance, running_cache, stats
from tests.conftest import KUBE_ROOT, SHARED_KUBE, ShippedIdentity
from tests.support.services import Instance

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def control_plane(script: str) -> None:
    env = {**os.environ, "KUBE_WITH_NAD": "1", "KUBE_ROOT": str(KUBE_ROOT)}
    subprocess.run([str(SHARED_KUBE / script)], env=env, check=True, capture_output=True, timeout=300)


def test_cache_rides_out_a_real_api_server_restart(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str
) -> None:
    ns = cluster.namespace
    uid = cluster.create_pod("web", node)["metadata"]["uid"]
    kube_instance(instance, shipped_identity.node_kubeconfig(node))
    with running_cache(instance, node), cache_stub(instance) as stub:
        restarts = stats(stub)["Pod"].watch_restarts
        control_plane("stop.sh")
        try:
            assert get_pod(stub, ns, "web").uid == uid  # served from memory
            resp = stub.UpdateNetworkStatus(
                cache_pb2.UpdateNetworkStatusRequest(
                    namespace=ns, name="web", uid=uid, network_status_json="[]", wait_ms=1000
                ),
                timeout=10,
            )
            assert not resp.delivered
            eventually(lambda: stats(stub)["Pod"].watch_restarts > restarts, what="watch failure noticed")
        finally:
            control_plane("start.sh")
        cluster.create_pod("after-restart", node)
        eventually(lambda: stats(stub)["Pod"].count == 2, timeout=60, what="watch resumed")

        def delivered() -> bool:
            annotations = cluster.read_pod("web")["metadata"].get("annotations") or {}
            return bool(annotations.get("k8s.v1.cni.cncf.io/network-status") == "[]")

        eventually(delivered, timeout=60, what="queued write delivered")
