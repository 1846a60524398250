"""A gateway restart loses nothing: while it is down ADD fails with code 11
(the runtime retries) and DEL is spooled by the shim and replayed by the
gateway before it reports ready, so no interface or IP leaks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Node, new_container_id, write_cluster
from tests.support.netns import Netns, unique_name, veth_pair
from tests.support.services import (
    REPO,
    ServiceProcess,
    make_instance,
    running_services,
    start_service,
    wait_serving,
)

FAST_FAIL = {"MULTUS_SHIM_READY_TIMEOUT": "1", "MULTUS_SHIM_DEL_TIMEOUT": "1"}


@pytest.fixture
def services_node(tmp_path: Path) -> Iterator[tuple[Node, dict[str, ServiceProcess]]]:
    inst = make_instance(tmp_path, multusConfigFile="auto", daemonSocketDir=str(tmp_path / "sock"))
    bridge = unique_name("gb")[:14]
    with veth_pair("gv") as (master, _):
        write_cluster(inst, master, bridge)
        subprocess.run(
            [sys.executable, "-m", "shim.install", "--cni-bin-dir", str(tmp_path / "bin")], cwd=REPO, check=True
        )
        try:
            with running_services(inst, "cache", "executor", "gateway") as procs:
                node = Node(inst, tmp_path / "bin" / "multus-shim", master)
                deadline = time.monotonic() + 30
                while not node.conf_path.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                yield node, procs
        finally:
            for link in (bridge, bridge + "s"):
                subprocess.run(["ip", "link", "delete", link], capture_output=True)


def test_del_while_gateway_down_is_spooled_and_replayed(
    services_node: tuple[Node, dict[str, ServiceProcess]], pod_netns: Netns
) -> None:
    node, procs = services_node
    node.write_pod("spooled", "macvlan-net")
    cid = new_container_id()
    added = node.shim_call("ADD", pod_netns, cid, "spooled")
    assert added.returncode == 0, added.stdout + added.stderr
    assert {"eth0", "net1"} <= set(pod_netns.links())

    gateway = procs["gateway"]
    gateway.stop()

    refused = node.shim_call("ADD", pod_netns, new_container_id(), "spooled", extra_env=FAST_FAIL)
    assert refused.returncode != 0
    assert json.loads(refused.stdout)["code"] == 11

    deleted = node.shim_call("DEL", pod_netns, cid, "spooled", extra_env=FAST_FAIL)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr  # the pod must not hang in Terminating
    spool = node.instance.socket_dir / "del-spool"
    assert [p for p in spool.iterdir() if not p.name.startswith(".")], "DEL was not spooled"
    assert {"eth0", "net1"} <= set(pod_netns.links()), "nothing may be torn down before the replay"

    restarted = start_service(node.instance, "gateway")
    try:
        wait_serving(node.instance.grpc_socket("gateway"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and {"eth0", "net1"} & set(pod_netns.links()):
            time.sleep(0.1)
        assert not {"eth0", "net1"} & set(pod_netns.links())
        assert [p for p in spool.iterdir() if not p.name.startswith(".")] == []
        ipam = node.instance.root / "ipam"
        assert [p for p in ipam.rglob("*") if p.is_file() and p.name[0].isdigit()] == []
    finally:
        restarted.stop()
