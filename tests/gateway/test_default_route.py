"""`default-route` end to end: the real cache (file mode), executor and gateway
processes, the reference plugins, a real pod netns. The selected attachment
gets the default route, every other interface (the cluster network's eth0
included) loses it, per address family, as upstream documents; results,
CHECK, network-status, DEL and rollback stay consistent."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.cni import CniError
from services.gateway.executor_client import ExecutorClient
from services.gateway.executor_routes import ExecutorRouteEditor
from tests.gateway.conftest import GatewayNode, nad, new_container_id
from tests.support.netns import Netns

DEFAULT_NETWORK = "v1.multus-cni.io/default-network"


def bridge_network(
    node: GatewayNode, name: str, bridge_suffix: str, ipam: dict[str, Any], **keys: Any
) -> dict[str, Any]:
    """A bridge NAD whose host-local IPAM also routes the default."""
    config = {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": node.bridge + bridge_suffix, **keys}
    config["ipam"] = {"type": "host-local", "dataDir": str(node.ipam_dir), **ipam}
    return nad(name, config)


def dr_networks(node: GatewayNode) -> list[dict[str, Any]]:
    return [
        # the cluster network pods pick with the default-network annotation: IPv4 and IPv6 defaults on eth0
        bridge_network(
            node,
            "dr-cluster",
            "d",
            {
                "ranges": [[{"subnet": "10.40.0.0/24"}], [{"subnet": "fd00:40::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            },
            isGateway=True,
        ),
        # a secondary that also installs a default route (so that it must lose it)
        bridge_network(node, "dr-bridge", "b", {"subnet": "10.41.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}),
    ]


@pytest.fixture(scope="module")
def node(gateway_node: GatewayNode) -> Iterator[GatewayNode]:
    """The module's node (conftest) plus this module's networks and their bridges' cleanup."""
    gateway_node.write_nads(*dr_networks(gateway_node), filename="nads-dr.json")
    try:
        yield gateway_node
    finally:
        for suffix in ("b", "d"):
            subprocess.run(["ip", "link", "delete", gateway_node.bridge + suffix], capture_output=True)


def write_pod(node: GatewayNode, name: str, networks: list[Any]) -> None:
    """A pod on the dual-stack cluster network with a JSON networks annotation."""
    node.write_pod(name, json.dumps(networks), annotations={DEFAULT_NETWORK: "default/dr-cluster"})


def defaults(ns: Netns) -> list[tuple[str, str]]:
    """(gateway, dev) of the netns's default routes, IPv4 then IPv6, as `ip route` shows them."""
    return [
        (r.get("gateway", ""), r.get("dev", "")) for f in ("-4", "-6") for r in ns.routes(f) if r["dst"] == "default"
    ]


def default_routes_in(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result.get("routes", []) if r["dst"] in ("0.0.0.0/0", "::/0", "::0/0")]


def records_dir(node: GatewayNode, cid: str) -> Path:
    return Path(node.instance.config["cniDir"]) / "attachments" / cid


def test_without_default_route_nothing_moves(node: GatewayNode, pod_netns: Netns) -> None:
    write_pod(node, "dr-none", [{"name": "dr-bridge"}])
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dr-none")
    assert status == 200, body
    # Nothing is moved: the secondary's plugin added its own default route next to eth0's
    # (both IPv4 defaults now coexist, which is what `default-route` exists to prevent).
    assert defaults(pod_netns) == [("10.41.0.1", "net1"), ("10.40.0.1", "eth0"), ("fd00:40::1", "eth0")]
    assert len(default_routes_in(body["Result"])) == 2
    assert node.cni("DEL", pod_netns, cid, "dr-none")[0] == 200
    assert node.allocations() == []


def test_dual_stack_default_route_moves_to_the_selected_attachment(node: GatewayNode, pod_netns: Netns) -> None:
    networks = [{"name": "dual-net", "default-route": ["10.34.0.1", "fd00:34::1"]}, {"name": "dr-bridge"}]
    write_pod(node, "dr-dual", networks)
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dr-dual")
    assert status == 200, body
    assert set(pod_netns.links()) == {"lo", "eth0", "net1", "net2"}
    # the netns: the default route goes via net1 only, in both families
    assert defaults(pod_netns) == [("10.34.0.1", "net1"), ("fd00:34::1", "net1")]
    v4 = " ".join(json.dumps(r) for r in pod_netns.routes("-4"))
    assert '"dev": "eth0"' in v4  # eth0 keeps its subnet route, only the default moved
    # the ADD result is the cluster network's, without the default routes it no longer has
    assert default_routes_in(body["Result"]) == []
    assert sorted(ip["address"].split(".")[0].split(":")[0] for ip in body["Result"]["ips"]) == ["10", "fd00"]
    # network-status: `default` stays on the cluster network, as upstream
    entries = {e["interface"]: e for e in node.network_status("dr-dual")}
    assert entries["eth0"].get("default") is True
    assert "default" not in entries["net1"] and "default" not in entries["net2"]
    # the stored results say what is true now, so every delegate's CHECK passes
    stored = {p.stem: json.loads(p.read_text())["result"] for p in records_dir(node, cid).glob("*.json")}
    assert default_routes_in(stored["eth0"]) == []
    assert default_routes_in(stored["net1"]) == [
        {"dst": "0.0.0.0/0", "gw": "10.34.0.1"},
        {"dst": "::/0", "gw": "fd00:34::1"},
    ]
    assert default_routes_in(stored["net2"]) == []
    status, body = node.cni("CHECK", pod_netns, cid, "dr-dual")
    assert status == 200, body
    assert node.cni("DEL", pod_netns, cid, "dr-dual")[0] == 200
    assert set(pod_netns.links()) == {"lo"}
    assert node.allocations() == []
    assert not records_dir(node, cid).exists()


def test_ipv4_default_route_drops_ipv6_default_elsewhere(node: GatewayNode, pod_netns: Netns) -> None:
    """As upstream: once any selection names a default-route, every interface without a
    gateway of a family loses that family's default route (here IPv6 on eth0)."""
    write_pod(node, "dr-v4", [{"name": "macvlan-net", "default-route": ["10.31.0.1"]}])
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dr-v4")
    assert status == 200, body
    assert defaults(pod_netns) == [("10.31.0.1", "net1")]
    assert node.cni("CHECK", pod_netns, cid, "dr-v4")[0] == 200
    assert node.cni("DEL", pod_netns, cid, "dr-v4")[0] == 200
    assert node.allocations() == []


def test_unreachable_gateway_fails_and_rolls_back(node: GatewayNode, pod_netns: Netns) -> None:
    write_pod(node, "dr-bad", [{"name": "macvlan-net", "default-route": ["10.99.0.1"]}])
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dr-bad")
    assert status == 400, body
    assert body["code"] == 7, body
    assert "macvlan-net" in body["msg"] and "10.99.0.1 is not reachable through net1" in body["msg"], body
    assert set(pod_netns.links()) == {"lo"}
    assert node.allocations() == []
    assert [p.name for p in records_dir(node, cid).iterdir()] == [".add-abandoned.json"]  # no record left


def test_ecmp_default_route_is_refused_before_anything_runs(node: GatewayNode, pod_netns: Netns) -> None:
    networks = [
        {"name": "macvlan-net", "default-route": ["10.31.0.1"]},
        {"name": "dr-bridge", "default-route": ["10.41.0.1"]},
    ]
    write_pod(node, "dr-ecmp", networks)
    status, body = node.cni("ADD", pod_netns, new_container_id(), "dr-ecmp")
    assert status == 400 and body["code"] == 7, body
    assert "ECMP" in body["msg"]
    assert set(pod_netns.links()) == {"lo"}


async def test_route_editor_errors_carry_cni_codes(node: GatewayNode, pod_netns: Netns, tmp_path: Path) -> None:
    """The adapter over the real executor: refusals are code 7, no executor is code 11."""
    client = ExecutorClient([node.instance.grpc_socket("executor")])
    editor = ExecutorRouteEditor(client, timeout=5)
    try:
        for ifname, gateways, text in (
            ("eth0", ("10.0.0.1",), "not found"),  # nothing attached yet
            ("eth0", ("not-an-ip",), "not an IP address"),
        ):
            with pytest.raises(CniError) as caught:
                await editor.replace_default_routes(pod_netns.path, ifname, False, False, gateways)
            assert caught.value.code == 7 and text in str(caught.value), caught.value
        with pytest.raises(CniError) as caught:
            await editor.replace_default_routes("/var/run/netns/none-such", "eth0", True, False, ())
        assert caught.value.code == 7
    finally:
        await client.close()
    gone = ExecutorClient([str(tmp_path / "nobody.sock")])
    try:
        with pytest.raises(CniError) as caught:
            await ExecutorRouteEditor(gone, timeout=0.3).replace_default_routes(pod_netns.path, "eth0", True, True, ())
        assert caught.value.code == 11
    finally:
        await gone.close()
