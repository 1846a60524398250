"""The gateway end to end with real processes (cache in file mode, executor,
gateway), real reference plugins and a real network namespace."""

from __future__ import annotations

import json

from tests.gateway.conftest import GatewayNode, new_container_id
from tests.support.netns import Netns


def test_add_check_del_cluster_network_and_macvlan(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("web1", "macvlan-net")
    cid = new_container_id()

    status, body = node.cni("ADD", pod_netns, cid, "web1")
    assert status == 200, body
    result = body["Result"]
    assert result["cniVersion"] == "1.0.0"
    assert [ip["address"].rsplit(".", 1)[0] for ip in result["ips"]] == ["10.30.0"]

    links = pod_netns.links()
    assert {"eth0", "net1"} <= set(links)
    assert pod_netns.addresses("eth0")[0].startswith("10.30.0.")
    assert pod_netns.addresses("net1")[0].startswith("10.31.0.")

    entries = node.network_status("web1")
    assert [(e["name"], e["interface"]) for e in entries] == [("gw-cluster", "eth0"), ("default/macvlan-net", "net1")]
    assert entries[0]["default"] is True
    assert "default" not in entries[1]
    assert entries[1]["ips"] == [pod_netns.addresses("net1")[0].split("/")[0]]
    assert entries[1]["mac"] == links["net1"]["address"]
    assert all("<nil>" not in json.dumps(e) for e in entries)
    assert node.allocations()

    status, body = node.cni("CHECK", pod_netns, cid, "web1")
    assert status == 200, body

    status, body = node.cni("DEL", pod_netns, cid, "web1")
    assert status == 200, body
    assert body is None
    assert not {"eth0", "net1"} & set(pod_netns.links())
    assert node.allocations() == []

    status, body = node.cni("DEL", pod_netns, cid, "web1")
    assert status == 200, body
