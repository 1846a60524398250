"""ADD/CHECK/DEL through the real gateway, cache and executor with the reference
plugins (bridge, macvlan, ptp, static and host-local IPAM) and our recorder
plugin, inside real network namespaces."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from services.api import gateway_pb2, gateway_pb2_grpc
from tests.gateway.conftest import GatewayNode, http_call, new_container_id
from tests.support.netns import Netns
from tests.support.plugins import recorded_calls


def _calls(node: GatewayNode, cid: str) -> list[tuple[str, str]]:
    return [
        (c["command"], c["env"].get("CNI_IFNAME", ""))
        for c in recorded_calls(node.record_dir)
        if c["env"].get("CNI_CONTAINERID") == cid
    ]


def test_pod_without_secondary_networks(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("zero")
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "zero")
    assert status == 200, body
    assert set(pod_netns.links()) == {"lo", "eth0"}
    assert [e["interface"] for e in node.network_status("zero")] == ["eth0"]
    assert node.cni("CHECK", pod_netns, cid, "zero")[0] == 200
    assert node.cni("DEL", pod_netns, cid, "zero")[0] == 200
    assert "eth0" not in pod_netns.links()
    # the conflist cluster network (bridge + recorder) was torn down plugin by plugin, in reverse
    assert _calls(node, cid) == [("ADD", "eth0"), ("CHECK", "eth0"), ("DEL", "eth0")]
    assert node.allocations() == []


def test_three_secondary_networks_from_json_annotation(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    networks = json.dumps(
        [
            {"name": "macvlan-net", "mac": "02:42:ac:11:00:42"},
            {"name": "static-net", "interface": "stor0"},
            {"name": "ptp-net", "namespace": "default"},
        ]
    )
    node.write_pod("three", networks)
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "three")
    assert status == 200, body
    links = pod_netns.links()
    assert {"eth0", "net1", "stor0", "net3"} <= set(links)
    assert links["net1"]["address"] == "02:42:ac:11:00:42"
    assert pod_netns.addresses("stor0") == ["10.32.0.7/24"]
    assert pod_netns.addresses("net3")[0].startswith("10.33.0.")
    entries = node.network_status("three")
    assert [(e["name"], e["interface"]) for e in entries] == [
        ("gw-cluster", "eth0"),
        ("default/macvlan-net", "net1"),
        ("default/static-net", "stor0"),
        ("default/ptp-net", "net3"),
    ]
    assert entries[1]["mac"] == "02:42:ac:11:00:42"
    assert node.cni("CHECK", pod_netns, cid, "three")[0] == 200
    assert node.cni("DEL", pod_netns, cid, "three")[0] == 200
    assert set(pod_netns.links()) == {"lo"}
    assert node.allocations() == []


def test_text_annotation_ipv6_and_dual_stack(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("dual", "default/v6-net@v6, dual-net")
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dual")
    assert status == 200, body
    v6 = [a for a in pod_netns.addresses("v6") if a.startswith("fd00:31:")]
    assert v6, pod_netns.links()
    dual = pod_netns.addresses("net2")
    assert any(a.startswith("10.34.0.") for a in dual) and any(a.startswith("fd00:34:") for a in dual)
    entries = {e["interface"]: e for e in node.network_status("dual")}
    assert entries["v6"]["ips"] == [v6[0].split("/")[0]]
    assert len(entries["net2"]["ips"]) == 2
    assert node.cni("DEL", pod_netns, cid, "dual")[0] == 200
    assert node.allocations() == []


def test_failing_delegate_in_the_middle_rolls_back(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("fails", "macvlan-net, fail-net, ptp-net")
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "fails")
    assert status == 400
    assert body["code"] == 7, body  # the failing delegate's own code, not 999
    assert "recorder refuses" in body["msg"]
    # everything done before the failure was undone, including the failing delegate itself
    assert set(pod_netns.links()) == {"lo"}
    assert node.allocations() == []
    assert _calls(node, cid) == [("ADD", "eth0"), ("ADD", "net2"), ("DEL", "net2"), ("DEL", "eth0")]
    records = Path(node.instance.config["cniDir"]) / "attachments" / cid
    assert [p.name for p in records.iterdir()] == [".add-abandoned.json"]  # no record: only the rolled-back mark
    assert node.cni("DEL", pod_netns, cid, "fails")[0] == 200
    assert len(_calls(node, cid)) == 4  # the runtime's DEL runs no delegate again


def test_unknown_network_emits_no_network_found(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("nonet", "does-not-exist")
    status, body = node.cni("ADD", pod_netns, new_container_id(), "nonet")
    assert status == 400 and body["code"] == 7, body
    deadline = time.monotonic() + 5  # events are sent off the hot path
    while not any(e.get("reason") == "NoNetworkFound" for e in node.events()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(e.get("reason") == "NoNetworkFound" for e in node.events()), node.events()
    assert set(pod_netns.links()) == {"lo"}


def test_unknown_pod_is_try_again_later(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    status, body = gateway_node.cni("ADD", pod_netns, new_container_id(), "no-such-pod")
    assert status == 400 and body["code"] == 11, body
    assert set(pod_netns.links()) == {"lo"}


def test_request_without_pod_is_rejected(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    body = json.loads(gateway_node.request_body("ADD", pod_netns, new_container_id(), "x"))
    body["env"]["CNI_ARGS"] = "IgnoreUnknown=1"
    status, raw = http_call(gateway_node.socket, "POST", "/cni", json.dumps(body).encode())
    assert status == 400 and json.loads(raw)["code"] == 4


def test_hot_plug_interface(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("hot")
    cid = new_container_id()
    assert node.cni("ADD", pod_netns, cid, "hot")[0] == 200
    conf = {
        "cniVersion": "1.0.0",
        "name": "hot-net",
        "type": "macvlan",
        "master": node.master,
        "ipam": {"type": "host-local", "subnet": "10.35.0.0/24", "dataDir": str(node.ipam_dir)},
    }
    attrs: dict[str, object] = {"mac": "02:42:ac:11:00:77", "ips": [], "cni-args": None}
    status, body = node.delegate("ADD", pod_netns, cid, "hot", config=conf, ifname="hot1", interfaceAttributes=attrs)
    assert status == 200, body
    assert body["Result"]["ips"][0]["address"].startswith("10.35.0.")
    assert pod_netns.links()["hot1"]["address"] == "02:42:ac:11:00:77"
    status, body = node.delegate("DEL", pod_netns, cid, "hot", config=conf, ifname="hot1")
    assert status == 200, body
    assert "hot1" not in pod_netns.links() and "eth0" in pod_netns.links()
    # and the same through the gRPC API
    env = json.loads(node.request_body("ADD", pod_netns, cid, "hot", ifname="hot2"))["env"]
    with grpc.insecure_channel(f"unix://{node.instance.grpc_socket('gateway')}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        response = stub.Delegate(gateway_pb2.DelegateRequest(env=env, config=json.dumps(conf).encode()), timeout=60)
        assert response.error.code == 0, response.error
        assert "hot2" in pod_netns.links()
        listed = stub.ListAttachments(gateway_pb2.ListAttachmentsRequest(container_id=cid), timeout=10)
        assert sorted(a.ifname for a in listed.attachments) == ["eth0", "hot2"]
        with pytest.raises(grpc.RpcError) as bad_id:
            stub.ListAttachments(gateway_pb2.ListAttachmentsRequest(container_id="../etc"), timeout=10)
        assert bad_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert node.cni("DEL", pod_netns, cid, "hot")[0] == 200
    assert set(pod_netns.links()) == {"lo"}
    assert node.allocations() == []
