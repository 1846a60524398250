"""Wire compatibility with upstream Multus: request bodies exactly as upstream's
shim and hot-plug client marshal them, and the response shapes its shim parses
(`{"Result": ...}` on 200, a cnitypes.Error object on 400)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.gateway.conftest import GatewayNode, http_call, new_container_id
from tests.support.netns import Netns

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture(name: str, cid: str, netns_path: str) -> bytes:
    text = (FIXTURES / name).read_text().replace("@CID@", cid).replace("@NETNS@", netns_path)
    return text.encode()


def _result_shape(result: dict[str, Any]) -> None:
    assert result["cniVersion"] == "1.0.0"
    assert set(result) <= {"cniVersion", "interfaces", "ips", "routes", "dns"}
    for ip in result["ips"]:
        assert "version" not in ip  # 1.0.0 shape, the shim converts down


def test_upstream_shim_request_and_result_shape(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    node.write_pod("compat")
    cid = new_container_id()
    status, raw = http_call(
        node.socket, "POST", "/cni", _fixture("upstream_shim_add_request.json", cid, pod_netns.path)
    )
    assert status == 200, raw
    body = json.loads(raw)
    assert list(body) == ["Result"]
    _result_shape(body["Result"])

    status, raw = http_call(
        node.socket, "POST", "/delegate", _fixture("upstream_delegate_request.json", cid, pod_netns.path)
    )
    assert status == 200, raw
    _result_shape(json.loads(raw)["Result"])

    delete = json.loads(_fixture("upstream_shim_add_request.json", cid, pod_netns.path))
    delete["env"]["CNI_COMMAND"] = "DEL"
    status, raw = http_call(node.socket, "POST", "/cni", json.dumps(delete).encode())
    assert (status, raw) == (200, b"")


def test_error_responses_are_cni_error_objects(gateway_node: GatewayNode) -> None:
    status, raw = http_call(gateway_node.socket, "POST", "/cni", b"{broken")
    assert status == 400
    err = json.loads(raw)
    assert set(err) <= {"code", "msg", "details"} and err["code"] == 6 and err["msg"]


def test_health_ready_and_unknown_paths(gateway_node: GatewayNode) -> None:
    sock = gateway_node.socket
    assert http_call(sock, "GET", "/healthz")[0] == 200
    assert http_call(sock, "POST", "/healthz", b"null")[0] == 200  # upstream's shim readiness probe
    assert http_call(sock, "GET", "/readyz")[0] == 200
    assert http_call(sock, "GET", "/cni")[0] == 405
    assert http_call(sock, "GET", "/nope")[0] == 404
