"""End to end as kubelet would: the installed shim, reading the generated
00-multus.conf, attaches a pod to its cluster network and two NADs in a real
network namespace, through gateway, cache and executor under the supervisor."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import grpc

from services.api import cache_pb2, cache_pb2_grpc
from tests.e2e.conftest import Node, new_container_id
from tests.support.netns import Netns
from tests.support.procs import processes

NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


def network_status(node: Node, pod: str) -> list[dict[str, object]]:
    with grpc.insecure_channel(f"unix://{node.instance.grpc_socket('cache')}") as channel:
        got = cache_pb2_grpc.CacheStub(channel).GetPod(
            cache_pb2.GetPodRequest(namespace="default", name=pod), timeout=10
        )
    raw = got.annotations.get(NETWORK_STATUS, "")
    return list(json.loads(raw)) if raw else []


def allocations(node: Node) -> list[Path]:
    ipam = node.instance.root / "ipam"
    return [p for p in ipam.rglob("*") if p.is_file() and p.name[0].isdigit()] if ipam.exists() else []


def test_generated_conf_points_the_shim_at_the_gateway(node: Node) -> None:
    conf = json.loads(node.conf_path.read_text())
    assert conf["type"] == "multus-shim"
    assert Path(conf["daemonSocketDir"]) == Path(node.instance.config["socketDir"])


def test_add_check_del_with_two_secondary_networks(node: Node, pod_netns: Netns) -> None:
    node.write_pod("web", "macvlan-net, static-net@storage0")
    cid = new_container_id()

    added = node.shim_call("ADD", pod_netns, cid, "web")
    assert added.returncode == 0, added.stdout + added.stderr
    result = json.loads(added.stdout)
    # The runtime gets the cluster network's result (it takes the pod IP from it).
    assert result["cniVersion"] == json.loads(node.conf_path.read_text())["cniVersion"]
    assert [ip["address"].split("/")[0].rsplit(".", 1)[0] for ip in result["ips"]] == ["10.246.3"]

    links = pod_netns.links()
    assert {"eth0", "net1", "storage0"} <= set(links)
    assert pod_netns.addresses("eth0")[0].startswith("10.246.3.")
    assert pod_netns.addresses("net1")[0].startswith("10.11.3.")
    assert pod_netns.addresses("storage0") == ["10.12.3.7/24"]

    status = network_status(node, "web")
    assert [(s["name"], s["interface"]) for s in status] == [
        ("e2e-cluster", "eth0"),
        ("default/macvlan-net", "net1"),
        ("default/static-net", "storage0"),
    ]
    assert status[0].get("default") is True
    assert all("default" not in s for s in status[1:])
    assert status[2]["ips"] == ["10.12.3.7"]

    checked = node.shim_call("CHECK", pod_netns, cid, "web")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    deleted = node.shim_call("DEL", pod_netns, cid, "web")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert not {"eth0", "net1", "storage0"} & set(pod_netns.links())
    assert allocations(node) == []

    # DEL is idempotent: the runtime may repeat it.
    again = node.shim_call("DEL", pod_netns, cid, "web")
    assert again.returncode == 0, again.stdout + again.stderr


def test_pod_without_annotation_gets_only_the_cluster_network(node: Node, pod_netns: Netns) -> None:
    node.write_pod("plain", "")
    cid = new_container_id()
    added = node.shim_call("ADD", pod_netns, cid, "plain")
    assert added.returncode == 0, added.stdout + added.stderr
    assert set(pod_netns.links()) == {"lo", "eth0"}
    assert node.shim_call("DEL", pod_netns, cid, "plain").returncode == 0
    assert allocations(node) == []


def test_unknown_nad_fails_with_its_name_and_leaks_nothing(node: Node, pod_netns: Netns) -> None:
    node.write_pod("broken", "macvlan-net, no-such-net")
    cid = new_container_id()
    added = node.shim_call("ADD", pod_netns, cid, "broken")
    assert added.returncode != 0
    err = json.loads(added.stdout)
    assert err["code"] != 999 and err["code"] > 0
    assert "no-such-net" in err["msg"] + err.get("details", "")
    assert set(pod_netns.links()) <= {"lo"}
    assert allocations(node) == []


def test_supervisor_restarts_a_service_that_dies(node: Node, pod_netns: Netns) -> None:
    pid_file_socket = node.instance.grpc_socket("executor")
    executor_pid = _pid_listening(pid_file_socket)
    os.kill(executor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new_pid = _pid_listening(pid_file_socket, missing_ok=True)
        if new_pid and new_pid != executor_pid:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("executor was not restarted")
    # And the product still works through the restarted executor.
    node.write_pod("after-restart", "macvlan-net")
    cid = new_container_id()
    added = node.shim_call("ADD", pod_netns, cid, "after-restart")
    assert added.returncode == 0, added.stdout + added.stderr
    assert node.shim_call("DEL", pod_netns, cid, "after-restart").returncode == 0


def _pid_listening(socket_path: str, missing_ok: bool = False) -> int:
    """The pid of the service process whose command line names its module (one per instance)."""
    config = str(Path(socket_path).parents[2] / "daemon-config.json")
    for proc in processes():
        if b"services.executor" in proc.cmdline and config.encode() in proc.cmdline:
            return proc.pid
    if missing_ok:
        return 0
    raise AssertionError("no executor process found")
