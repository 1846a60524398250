"""The API server stopped and slowed, through a TCP proxy the test controls,
under the identity the manifests ship (every API call checked against the
RBAC table): the real cache, executor and gateway, a real kube-apiserver.
While it is gone, ADD for a pod the cache knows and every DEL still work
(network-status queued), ADD for a pod the cache never saw fails with code
11 within its bound; slowed, calls stay within their bounds; back, the
queued network-status is written. Nothing leaks; no secret reaches a log."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cache.objects import NETWORK_STATUS_ANNOTATION
from tests.cache.conftest import admin_api, cluster, node
from tests.cache.kube_support import Cluster, eventually, write_kubeconfig
from tests.conftest import ShippedIdentity
from tests.gateway.conftest import http_call
from tests.support import fault_report
from tests.support.netns import netns
from tests.support.plugins import make_bin_dir, recorded_calls
from tests.support.services import Instance, start_service, wait_serving
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = [pytest.mark.faults, pytest.mark.kube, pytest.mark.root]
__all__ = ["admin_api", "cluster", "node"]  # fixtures used here

POD_WAIT_MS = 1000
STATUS_WAIT_MS = 500
# podWaitMs + the cache call + the status write wait + slack for a slow API server.
CALL_BOUND = 15.0


@pytest.fixture
def known_secrets(shipped_identity: ShippedIdentity, node: str) -> list[str]:
    """The node identity's credentials: they must not reach any log."""
    config = yaml.safe_load(shipped_identity.node_kubeconfig(node).read_text())
    found = []
    for user in config.get("users", []):
        for key in ("token", "client-key-data"):
            value = user.get("user", {}).get(key)
            if value:
                found.append(value if key == "token" else base64.b64decode(value).decode().splitlines()[1])
    return found


def body(command: str, cid: str, ns_path: str, pod: str, namespace: str) -> bytes:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": ns_path,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
    }
    config = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim"}
    return json.dumps({"env": env, "config": base64.b64encode(json.dumps(config).encode()).decode()}).encode()


@pytest.fixture
def proxied(
    instance: Instance, shipped_identity: ShippedIdentity, cluster: Cluster, node: str, tmp_path: Path
) -> Iterator[tuple[Instance, TcpProxy, Path]]:
    record_dir = tmp_path / "rec"
    record_dir.mkdir()
    bin_dir = make_bin_dir(tmp_path / "bin")
    conf = {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "recordDir": str(record_dir)}
    (Path(instance.config["cniConfigDir"]) / "10-rec.conf").write_text(json.dumps(conf))
    cluster.create_nad("rec-net", {**conf, "name": "rec-net"})
    with tcp_proxy(shipped_identity.recorder_address) as proxy:
        identity = shipped_identity.node_kubeconfig(node)
        kubeconfig = write_kubeconfig(tmp_path / "proxied.kubeconfig", identity, server=proxy.url)
        instance.config.update(
            clusterDir="",
            kubeconfig=str(kubeconfig),
            binDir=str(bin_dir),
            clusterNetwork="10-rec.conf",
            delegateServiceAccount="",
            multusNamespace=cluster.namespace,
            podWaitMs=POD_WAIT_MS,
            statusWriteWaitMs=STATUS_WAIT_MS,
            logLevel="debug",
        )
        instance.write_config()
        yield instance, proxy, record_dir


@contextmanager
def node_services(instance: Instance, node: str) -> Iterator[None]:
    procs = []
    try:
        for service in ("cache", "executor", "gateway"):
            procs.append(start_service(instance, service, env={"MULTUS_NODE_NAME": node, "KUBECONFIG": ""}))
            wait_serving(instance.grpc_socket(service), timeout=30)
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_api_server_stopped_and_slowed(proxied: tuple[Instance, TcpProxy, Path], cluster: Cluster, node: str) -> None:
    instance, proxy, record_dir = proxied
    ns = cluster.namespace
    cluster.create_pod("web", node, {"k8s.v1.cni.cncf.io/networks": "rec-net"})
    socket = str(Path(instance.config["socketDir"]) / "multus.sock")
    timings: dict[str, float] = {}
    cids: list[str] = []

    def call(what: str, command: str, cid: str, path: str, pod: str = "web") -> tuple[int, dict[str, Any]]:
        started = time.monotonic()
        status, answer = http_call(socket, "POST", "/cni", body(command, cid, path, pod, ns))
        timings[what] = max(timings.get(what, 0.0), time.monotonic() - started)
        return status, json.loads(answer) if answer else {}

    with node_services(instance, node), netns("api") as pod_ns:
        cid = uuid.uuid4().hex
        cids.append(cid)
        assert call("ADD, API up", "ADD", cid, pod_ns.path)[0] == 200
        assert call("DEL, API up", "DEL", cid, pod_ns.path)[0] == 200

        proxy.cut()
        cid = uuid.uuid4().hex
        cids.append(cid)
        status, answer = call("ADD, API stopped", "ADD", cid, pod_ns.path)
        assert status == 200, answer  # the cache knows the pod; network-status is queued
        cluster.create_pod("born-in-outage", node)
        unseen = uuid.uuid4().hex
        status, answer = call("ADD of an unseen pod, API stopped", "ADD", unseen, pod_ns.path, "born-in-outage")
        assert status == 400 and answer["code"] == 11, answer
        assert call("DEL, API stopped", "DEL", cid, pod_ns.path)[0] == 200

        proxy.restore()
        proxy.delay = 0.3
        cid = uuid.uuid4().hex
        cids.append(cid)
        status, answer = call("ADD, API slowed", "ADD", cid, pod_ns.path)
        assert status == 200, answer
        proxy.delay = 0.0
        eventually(
            lambda: NETWORK_STATUS_ANNOTATION in (cluster.read_pod("web")["metadata"].get("annotations") or {}),
            timeout=45,
            what="queued network-status written once the API server is back",
        )
        assert call("DEL, API back", "DEL", cid, pod_ns.path)[0] == 200
        records = Path(instance.config["cniDir"]) / "attachments"
        left = [p for p in records.rglob("*.json") if not p.name.startswith(".")] if records.exists() else []
        assert left == []
    adds = [c for c in recorded_calls(record_dir) if c["command"] == "ADD"]
    dels = [c for c in recorded_calls(record_dir) if c["command"] == "DEL"]
    assert len(dels) >= len(adds)  # every attachment made was deleted
    fault_report.record("API server stopped/slowed", **{f"{k} (s)": round(v, 2) for k, v in timings.items()})
    assert max(timings.values()) <= CALL_BOUND, timings
