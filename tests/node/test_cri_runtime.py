"""A real container runtime drives the product: the node kit's containerd 1.6
(CRI, no kubelet) with its CNI conf dir where our config manager writes
00-multus.conf and its bin dir where our installer puts the shim (the host's
/etc/cni/net.d and /opt/cni/bin, the latter holding distro links to
/usr/lib/cni). The four services run under the local supervisor against the
real kube-apiserver with the node identity the manifests ship; pods and NADs
are API objects bound to a node name of this module's own (no kubelet: it
would tear down sandboxes it did not create)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.cache.kube_support import Cluster, admin_client
from tests.cache.kube_support import test_namespace as api_namespace
from tests.node.conftest import NodeKit
from tests.node.support import BIN_DIR, CONF_DIR, NODE_KIT, NODE_ROOT, PRIMARY_NAME, eventually, leases, netns_links
from tests.support.api_recorder import ApiRecorder
from tests.support.kube_identity import node_identity_kubeconfig
from tests.support.netns import unique_name, veth_pair
from tests.support.rbac_audit import forbidden, ungranted
from tests.support.services import REPO, Instance, make_instance, wait_serving

sys.path.insert(0, str(NODE_KIT))
os.environ.setdefault("CRI_STUBS_PATH", str(NODE_ROOT))
from cri_client import CRI, pod_ips, pod_netns  # type: ignore[import-not-found]

pytestmark = [pytest.mark.node, pytest.mark.kube, pytest.mark.timeout(900)]

STATUS = "k8s.v1.cni.cncf.io/network-status"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


@dataclass
class CriNode:
    node: str
    instance: Instance
    cluster: Cluster
    supervisor: subprocess.Popen[bytes]
    bridge_net: str
    macvlan_net: str
    sandboxes: dict[str, str] = field(default_factory=dict)  # pod name -> sandbox id

    @property
    def records(self) -> Path:
        return Path(self.instance.config["cniDir"]) / "attachments"

    def pod(self, name: str, networks: str = "") -> dict[str, Any]:
        annotations = {NETWORKS: networks} if networks else {}
        return self.cluster.create_pod(name, self.node, annotations)

    def run(self, cri: Any, pod: dict[str, Any], attempt: int = 0) -> str:
        meta = pod["metadata"]
        config = cri.sandbox_config(meta["name"], meta["namespace"], uid=meta["uid"], attempt=attempt)
        sandbox = str(cri.run_pod(config))
        self.sandboxes[meta["name"]] = sandbox
        return sandbox

    def stop(self, cri: Any, name: str) -> None:
        sandbox = self.sandboxes.pop(name)
        cri.stop_pod(sandbox)
        cri.remove_pod(sandbox)

    def all_leases(self) -> list[str]:
        return leases(PRIMARY_NAME) + leases(self.bridge_net) + leases(self.macvlan_net)


def _nad(name: str, plugin: dict[str, Any]) -> dict[str, Any]:
    return {"cniVersion": "0.4.0", "name": name, **plugin}


@pytest.fixture(scope="module")
def cri_node(
    node_kit: NodeKit,
    kube_api: Path,
    api_recorder: ApiRecorder,
    shipped_rbac: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CriNode]:
    root = tmp_path_factory.mktemp("cri-node")
    node = unique_name("cri-")
    api = admin_client(kube_api)
    mark = api_recorder.snapshot()
    with api_namespace(api, "node") as cluster, veth_pair("nm") as (master, _peer):
        bridge_net, macvlan_net = unique_name("nb-"), unique_name("nm-")
        cluster.create_nad(
            bridge_net,
            _nad(
                bridge_net,
                {"type": "bridge", "bridge": bridge_net[:15], "ipam": {"type": "host-local", "subnet": "10.95.1.0/24"}},
            ),
        )
        cluster.create_nad(
            macvlan_net,
            _nad(
                macvlan_net,
                {
                    "type": "macvlan",
                    "master": master,
                    "mode": "bridge",
                    "ipam": {"type": "host-local", "subnet": "10.95.2.0/24"},
                },
            ),
        )
        inst = make_instance(
            root,
            clusterDir="",
            kubeconfig=str(node_identity_kubeconfig(root / "node.kubeconfig", node, api_recorder.url)),
            cniConfigDir=str(CONF_DIR),
            multusAutoconfigDir=str(CONF_DIR),
            binDir=str(BIN_DIR),
            multusConfigFile="auto",
            daemonSocketDir=str(root / "sock"),
            delegateServiceAccount="",
            cniVersion="0.4.0",
        )
        subprocess.run(
            [sys.executable, "-m", "shim.install", "--cni-bin-dir", str(BIN_DIR), "--interpreter", "/usr/bin/python3"],
            cwd=REPO,
            check=True,
        )
        log = (root / "supervisor.log").open("wb")
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "compose.supervisor", "--config", str(inst.config_path), "--log-dir", str(root)],
            cwd=REPO,
            stderr=log,
            env={**os.environ, "MULTUS_NODE_NAME": node},
            start_new_session=True,
        )
        try:
            wait_serving(inst.grpc_socket("gateway"), timeout=90)
            eventually(lambda: (CONF_DIR / "00-multus.conf").exists(), 30, "00-multus.conf")
            yield CriNode(node, inst, cluster, supervisor, bridge_net, macvlan_net)
        finally:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
                supervisor.wait()
            log.close()
            # the documented uninstall, on the host itself: 00-multus.conf and the shim go
            subprocess.run(
                [sys.executable, "-m", "compose.uninstall", "--config", str(inst.config_path), "--wait", "5"],
                cwd=REPO,
                check=False,
            )
            for bridge in (bridge_net[:15], "nodenet0"):
                subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
    seen = api_recorder.since(mark)
    problems = ungranted(seen) + [f"{r.method} {r.path}: 403" for r in forbidden(seen)]
    assert not problems, problems


@pytest.fixture
def cri(cri_node: CriNode) -> Iterator[Any]:
    with CRI(socket=str(NODE_ROOT / "run" / "containerd.sock")) as client:
        try:
            yield client
        finally:
            for name in list(cri_node.sandboxes):
                try:
                    cri_node.stop(client, name)
                except grpc.RpcError as exc:
                    print(f"cleanup of {name}: {exc}", file=sys.stderr)


def no_leftovers(cri_node: CriNode) -> None:
    eventually(lambda: not cri_node.all_leases(), 30, f"leases freed: {cri_node.all_leases()}")
    # a rolled-back ADD leaves only its mark (its DEL then runs nothing; GC sweeps it)
    eventually(lambda: not list(cri_node.records.glob("*/[!.]*")), 30, "attachment records removed")


def test_a_pod_gets_every_network_and_stopping_it_frees_them(cri_node: CriNode, cri: Any) -> None:
    networks = f"{cri_node.bridge_net}, {cri_node.macvlan_net}"
    pod = cri_node.pod("multi", networks)
    sandbox = cri_node.run(cri, pod)
    status = cri.pod_status(sandbox)
    # the runtime reports the cluster network's address as the pod IP
    (pod_ip,) = pod_ips(status)
    assert pod_ip.startswith("10.94.0."), pod_ip
    links = netns_links(pod_netns(status))
    assert links["eth0"] == [f"{pod_ip}/24"]
    assert links["net1"][0].startswith("10.95.1.") and links["net2"][0].startswith("10.95.2.")
    written = eventually(
        lambda: cri_node.cluster.read_pod("multi")["metadata"].get("annotations", {}).get(STATUS), 15, "network-status"
    )
    entries = json.loads(written)
    assert [(e["name"], e["interface"]) for e in entries] == [
        (PRIMARY_NAME, "eth0"),
        (f"{cri_node.cluster.namespace}/{cri_node.bridge_net}", "net1"),
        (f"{cri_node.cluster.namespace}/{cri_node.macvlan_net}", "net2"),
    ]
    assert entries[0]["ips"] == [pod_ip] and entries[0]["default"] is True
    cri_node.stop(cri, "multi")
    no_leftovers(cri_node)


def test_a_missing_nad_fails_with_its_name_and_the_retry_succeeds(cri_node: CriNode, cri: Any) -> None:
    missing = unique_name("late-")
    pod = cri_node.pod("waiting", missing)
    with pytest.raises(grpc.RpcError) as failed:
        cri_node.run(cri, pod)
    assert missing in str(failed.value.details()), failed.value.details()
    no_leftovers(cri_node)  # the failed ADD left nothing behind
    cri_node.cluster.create_nad(
        missing,
        _nad(
            missing,
            {"type": "bridge", "bridge": missing[:15], "ipam": {"type": "host-local", "subnet": "10.95.3.0/24"}},
        ),
    )
    try:
        sandbox = cri_node.run(cri, pod, attempt=1)  # the kubelet's retry
        assert "net1" in netns_links(pod_netns(cri.pod_status(sandbox)))
        cri_node.stop(cri, "waiting")
        eventually(lambda: not leases(missing), 30, "leases of the late network freed")
        no_leftovers(cri_node)
    finally:
        subprocess.run(["ip", "link", "delete", missing[:15]], capture_output=True)


def test_twenty_pods_at_once(cri_node: CriNode, cri: Any) -> None:
    pods = [cri_node.pod(f"storm-{i}", cri_node.bridge_net) for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        sandboxes = list(pool.map(lambda p: cri_node.run(cri, p), pods))
    for sandbox in sandboxes:
        links = netns_links(pod_netns(cri.pod_status(sandbox)))
        assert set(links) >= {"eth0", "net1"}
    assert len(leases(cri_node.bridge_net)) == 20
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: cri_node.stop(cri, p["metadata"]["name"]), pods))
    no_leftovers(cri_node)


def test_pods_survive_a_containerd_restart_and_stop_cleanly(cri_node: CriNode, cri: Any, node_kit: NodeKit) -> None:
    pods = [cri_node.pod(f"restart-{i}", cri_node.macvlan_net) for i in range(3)]
    for pod in pods:
        cri_node.run(cri, pod)
    node_kit.restart_containerd()
    with CRI(socket=str(NODE_ROOT / "run" / "containerd.sock")) as again:
        for pod in pods:
            sandbox = cri_node.sandboxes[pod["metadata"]["name"]]
            assert "net1" in netns_links(pod_netns(again.pod_status(sandbox)))
        for pod in pods:
            cri_node.stop(again, pod["metadata"]["name"])
    no_leftovers(cri_node)


def test_gateway_restarted_while_the_runtime_stops_pods(cri_node: CriNode, cri: Any) -> None:
    pods = [cri_node.pod(f"gw-{i}", f"{cri_node.bridge_net}, {cri_node.macvlan_net}") for i in range(8)]
    for pod in pods:
        cri_node.run(cri, pod)
    gateway = gateway_pid(cri_node)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        stops = [pool.submit(cri_node.stop, cri, p["metadata"]["name"]) for p in pods]
        time.sleep(0.05)  # DELs in flight
        os.kill(gateway, signal.SIGKILL)
        for stop in stops:
            stop.result()  # every StopPodSandbox succeeds: the shim waits for the gateway or spools the DEL
    # the supervisor restarts the gateway, which replays spooled DELs before it is ready
    wait_serving(cri_node.instance.grpc_socket("gateway"), timeout=60)
    assert gateway_pid(cri_node) != gateway
    no_leftovers(cri_node)
    assert time.monotonic() - started < 120


def gateway_pid(cri_node: CriNode) -> int:
    from tests.node.support import processes_matching

    (pid,) = processes_matching("services.gateway", str(cri_node.instance.config_path))
    return pid
