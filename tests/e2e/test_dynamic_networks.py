"""Dynamic networks end to end: a running pod's interfaces follow edits of its
networks annotation. Real kube-apiserver (the cache under the shipped node
identity), real cache, executor and gateway processes, the installed shim,
the reference plugins (bridge, macvlan, host-local) in a real netns."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.cache.kube_support import Cluster, admin_client
from tests.cache.kube_support import test_namespace as kube_namespace
from tests.conftest import ShippedIdentity
from tests.e2e.conftest import Node, new_container_id
from tests.support.netns import Netns, unique_name, veth_pair
from tests.support.plugins import make_bin_dir, recorded_calls
from tests.support.services import REPO, ServiceProcess, make_instance, start_service, wait_serving
from tests.support.waiting import poll_until

pytestmark = pytest.mark.kube

NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    return poll_until(check, timeout=timeout, what=what, interval=0.1)


@dataclass
class DynamicNode:
    node: Node
    cluster: Cluster
    node_name: str
    ipam: Path
    procs: dict[str, ServiceProcess]

    def start(self, service: str) -> ServiceProcess:
        proc = start_service(self.node.instance, service, env={"MULTUS_NODE_NAME": self.node_name, "KUBECONFIG": ""})
        self.procs[service] = proc
        try:
            wait_serving(self.node.instance.grpc_socket(service), timeout=40)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- {service} log ---\n{proc.log()[-4000:]}") from exc
        return proc

    def create_pod(self, name: str, networks: str) -> str:
        uid: str = self.cluster.create_pod(name, self.node_name, {NETWORKS: networks})["metadata"]["uid"]
        return uid

    def set_networks(self, pod: str, networks: str) -> None:
        self.cluster.core.patch_namespaced_pod(
            pod, self.cluster.namespace, {"metadata": {"annotations": {NETWORKS: networks}}}
        )

    def status(self, pod: str) -> list[dict[str, Any]]:
        text = self.cluster.read_pod(pod)["metadata"].get("annotations", {}).get(STATUS, "[]")
        return list(json.loads(text))

    def status_interfaces(self, pod: str) -> list[tuple[str, str]]:
        return [(e["name"], e["interface"]) for e in self.status(pod)]

    def events(self, pod: str) -> list[dict[str, Any]]:
        resp = self.cluster.core.list_namespaced_event(
            self.cluster.namespace, field_selector=f"involvedObject.name={pod}", _preload_content=False
        )
        return list(json.loads(resp.data)["items"])

    def allocations(self, network: str) -> list[str]:
        directory = self.ipam / network
        return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit()) if directory.exists() else []

    def add(self, ns: Netns, cid: str, pod: str, uid: str) -> None:
        added = self.node.shim_call("ADD", ns, cid, pod, namespace=self.cluster.namespace, uid=uid)
        assert added.returncode == 0, added.stdout + added.stderr

    def delete(self, ns: Netns, cid: str, pod: str, uid: str) -> None:
        deleted = self.node.shim_call("DEL", ns, cid, pod, namespace=self.cluster.namespace, uid=uid)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr


def nad(cluster: Cluster, name: str, master: str, subnet: str, ipam: Path) -> None:
    cluster.create_nad(
        name,
        {
            "cniVersion": "1.0.0",
            "name": name,
            "type": "macvlan",
            "master": master,
            "mode": "bridge",
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(ipam)},
        },
    )


@pytest.fixture
def dynamic_node(tmp_path: Path, kube_api: Path, shipped_identity: ShippedIdentity) -> Iterator[DynamicNode]:
    node_name = unique_name("dyn-")
    api = admin_client(kube_api)
    ipam = tmp_path / "ipam"
    inst = make_instance(
        tmp_path,
        multusConfigFile="auto",
        daemonSocketDir=str(tmp_path / "sock"),
        clusterDir="",
        kubeconfig=str(shipped_identity.node_kubeconfig(node_name)),
        delegateServiceAccount="",  # no certs service here: no delegate token is expected
        dynamicNetworks=True,
        dynamicNetworksRetrySeconds=1,
        dynamicNetworksRetryMaxSeconds=2,
        binDir=str(make_bin_dir(tmp_path / "plugins")),  # the reference plugins and our recorder
    )
    bridge = unique_name("db")[:14]
    primary = {
        "cniVersion": "1.0.0",
        "name": "dyn-cluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipam": {"type": "host-local", "subnet": "10.246.9.0/24", "dataDir": str(ipam)},
            }
        ],
    }
    Path(inst.config["cniConfigDir"], "10-dyn.conflist").write_text(json.dumps(primary))
    subprocess.run([sys.executable, "-m", "shim.install", "--cni-bin-dir", str(tmp_path / "bin")], cwd=REPO, check=True)
    try:
        with veth_pair("dv") as (master, _), kube_namespace(api, "dyn") as cluster:
            nad(cluster, "net-a", master, "10.21.9.0/24", ipam)
            nad(cluster, "net-b", master, "10.22.9.0/24", ipam)
            dyn = DynamicNode(Node(inst, tmp_path / "bin" / "multus-shim", master), cluster, node_name, ipam, {})
            try:
                for service in ("cache", "executor", "gateway"):
                    dyn.start(service)
                eventually(dyn.node.conf_path.exists, "00-multus.conf")
                yield dyn
            finally:
                for proc in reversed(list(dyn.procs.values())):
                    proc.stop()
    finally:
        api.close()  # type: ignore[no-untyped-call]
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)


def test_annotation_edits_add_and_remove_interfaces(dynamic_node: DynamicNode, pod_netns: Netns) -> None:
    dyn, ns = dynamic_node, dynamic_node.cluster.namespace
    uid = dyn.create_pod("web", "net-a")
    cid = new_container_id()
    dyn.add(pod_netns, cid, "web", uid)
    assert {"eth0", "net1"} <= set(pod_netns.links())
    eventually(lambda: len(dyn.status("web")) == 2, "network-status of the first ADD")

    # Add a second network: net2 appears with an address and in network-status.
    dyn.set_networks("web", "net-a,net-b")
    eventually(lambda: pod_netns.addresses("net2"), "net2 with an address")
    assert pod_netns.addresses("net2")[0].startswith("10.22.9.")
    eventually(
        lambda: (
            dyn.status_interfaces("web") == [("dyn-cluster", "eth0"), (f"{ns}/net-a", "net1"), (f"{ns}/net-b", "net2")]
        ),
        "network-status listing net2",
    )
    net2_ip = pod_netns.addresses("net2")[0].split("/")[0]
    assert dyn.allocations("net-b") == [net2_ip]
    assert [e for e in dyn.events("web") if e["reason"] == "AddedInterface" and "net2" in e["message"]]

    # Remove it: the link goes, host-local frees the address, network-status follows.
    dyn.set_networks("web", "net-a")
    eventually(lambda: "net2" not in pod_netns.links(), "net2 removed")
    eventually(lambda: dyn.allocations("net-b") == [] or None, "net-b's allocation freed")
    eventually(
        lambda: dyn.status_interfaces("web") == [("dyn-cluster", "eth0"), (f"{ns}/net-a", "net1")],
        "network-status without net2",
    )
    assert {"eth0", "net1"} <= set(pod_netns.links())

    # Hot-plug it again, then the pod's final DEL through the shim removes it too.
    dyn.set_networks("web", "net-a,net-b@extra0")
    eventually(lambda: pod_netns.addresses("extra0"), "extra0 with an address")
    dyn.delete(pod_netns, cid, "web", uid)
    assert not {"eth0", "net1", "extra0"} & set(pod_netns.links())
    for network in ("net-a", "net-b", "dyn-cluster"):
        assert dyn.allocations(network) == [], network


def test_missing_nad_leaves_interfaces_and_reports_an_event(dynamic_node: DynamicNode, pod_netns: Netns) -> None:
    dyn = dynamic_node
    uid = dyn.create_pod("web", "net-a")
    cid = new_container_id()
    dyn.add(pod_netns, cid, "web", uid)
    before = {name: pod_netns.addresses(name) for name in ("eth0", "net1")}
    assert all(before.values())

    dyn.set_networks("web", "net-a,no-such-nad")
    event = eventually(
        lambda: next((e for e in dyn.events("web") if e["reason"] == "NoNetworkFound"), None), "NoNetworkFound event"
    )
    assert event["type"] == "Warning"
    assert "no-such-nad" in event["message"] and "unchanged" in event["message"]
    assert {name: pod_netns.addresses(name) for name in ("eth0", "net1")} == before
    assert "net2" not in pod_netns.links()
    assert len(dyn.status("web")) == 2

    # The NAD appears: the backoff retry (not a hot loop) attaches it without a new edit.
    nad(dyn.cluster, "no-such-nad", dyn.node.macvlan_master, "10.23.9.0/24", dyn.ipam)
    eventually(lambda: pod_netns.addresses("net2"), "net2 attached after the NAD appeared")
    failures = dyn.procs["gateway"].log().count("dynamic networks change failed")
    assert 1 <= failures <= 6, f"retried {failures} times: not backed off"
    dyn.delete(pod_netns, cid, "web", uid)
    assert not {"eth0", "net1", "net2"} & set(pod_netns.links())


def test_gateway_restart_mid_change_converges(dynamic_node: DynamicNode, pod_netns: Netns) -> None:
    dyn, ns = dynamic_node, dynamic_node.cluster.namespace
    uid = dyn.create_pod("web", "net-a")
    cid = new_container_id()
    dyn.add(pod_netns, cid, "web", uid)
    eventually(lambda: len(dyn.status("web")) == 2, "network-status of the first ADD")

    dyn.procs["gateway"].stop()
    # Two edits while the gateway is down: only the last one counts.
    dyn.set_networks("web", "net-a,net-b")
    dyn.set_networks("web", "net-b")
    dyn.start("gateway")
    eventually(
        lambda: dyn.status_interfaces("web") == [("dyn-cluster", "eth0"), (f"{ns}/net-b", "net1")],
        "network-status converged to the last edit",
    )
    assert pod_netns.addresses("net1")[0].startswith("10.22.9.")
    assert "net2" not in pod_netns.links()
    assert dyn.allocations("net-a") == []
    dyn.delete(pod_netns, cid, "web", uid)
    assert not {"eth0", "net1"} & set(pod_netns.links())


def test_gateway_killed_during_a_dynamic_add_converges_after_restart(
    dynamic_node: DynamicNode, pod_netns: Netns, tmp_path: Path
) -> None:
    """SIGKILL while the new interface's delegate runs: the restarted gateway undoes the
    half-done ADD (DEL of that delegate) and makes it again; nothing else is touched."""
    dyn, ns = dynamic_node, dynamic_node.cluster.namespace
    record_dir = tmp_path / "recorded"
    record_dir.mkdir()
    dyn.cluster.create_nad(
        "slow-net",
        {
            "cniVersion": "1.0.0",
            "name": "slow-net",
            "type": "recorder",
            "recordDir": str(record_dir),
            "sleep": {"ADD": 2},
            "ip": "10.24.9.5/24",
        },
    )
    uid = dyn.create_pod("web", "net-a")
    cid = new_container_id()
    dyn.add(pod_netns, cid, "web", uid)
    net1 = pod_netns.addresses("net1")

    dyn.set_networks("web", "net-a,slow-net")
    eventually(lambda: recorded_calls(record_dir), "the slow delegate's ADD to start")
    dyn.procs["gateway"].proc.kill()
    dyn.procs["gateway"].proc.wait()
    dyn.start("gateway")
    eventually(
        lambda: (
            dyn.status_interfaces("web")
            == [("dyn-cluster", "eth0"), (f"{ns}/net-a", "net1"), (f"{ns}/slow-net", "net2")]
        ),
        "network-status converged after the restart",
    )
    calls = [(c["command"], c["env"]["CNI_IFNAME"]) for c in recorded_calls(record_dir)]
    assert calls == [("ADD", "net2"), ("DEL", "net2"), ("ADD", "net2")]
    assert pod_netns.addresses("net1") == net1
    dyn.delete(pod_netns, cid, "web", uid)
    assert [c["command"] for c in recorded_calls(record_dir)][-1] == "DEL"


def test_cache_restart_resyncs_the_stream(dynamic_node: DynamicNode, pod_netns: Netns) -> None:
    """An edit made while the cache is down reaches the gateway through the reopened
    stream's snapshot (level-triggered: nothing depends on the missed event)."""
    dyn, ns = dynamic_node, dynamic_node.cluster.namespace
    uid = dyn.create_pod("web", "net-a")
    cid = new_container_id()
    dyn.add(pod_netns, cid, "web", uid)
    dyn.procs["cache"].stop()
    dyn.set_networks("web", "net-a,net-b")
    dyn.start("cache")
    eventually(
        lambda: (
            dyn.status_interfaces("web") == [("dyn-cluster", "eth0"), (f"{ns}/net-a", "net1"), (f"{ns}/net-b", "net2")]
        ),
        "network-status after the cache restarted",
    )
    assert pod_netns.addresses("net2")[0].startswith("10.22.9.")
    dyn.delete(pod_netns, cid, "web", uid)
    assert not {"eth0", "net1", "net2"} & set(pod_netns.links())
