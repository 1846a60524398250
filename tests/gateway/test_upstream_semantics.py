"""Review findings against upstream Multus (each case failed before its fix):
NAD configs without a name, libcni's handling of a config's own runtimeConfig,
network-status `gateway`/`default`, and an empty `globalNamespaces`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from services.gateway.invoke import plugin_confs, plugin_stdin
from services.gateway.netconf import parse_netconf
from services.gateway.network_status import network_statuses
from services.gateway.resolver import config_from_spec
from tests.gateway.conftest import GatewayNode, http_call, nad, new_container_id
from tests.gateway.test_lifecycle import _body, _setup, _sock
from tests.support.netns import Netns
from tests.support.plugins import recorded_calls
from tests.support.services import running_services


@pytest.mark.parametrize(
    ("case", "spec", "expected_name"),
    [
        ("no name", '{"cniVersion":"1.0.0","type":"macvlan"}', "my-nad"),
        ("empty name", '{"cniVersion":"1.0.0","name":"","type":"macvlan"}', "my-nad"),
        ("own name kept", '{"cniVersion":"1.0.0","name":"other","type":"macvlan"}', "other"),
        ("conflist without name", '{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}', "my-nad"),
    ],
)
def test_nad_spec_config_gets_the_nad_name(case: str, spec: str, expected_name: str) -> None:
    # upstream's GetCNIConfigFromSpec: "Inject network name if missing from Config"
    config = config_from_spec(spec, "my-nad")
    assert isinstance(config, dict), case
    assert config["name"] == expected_name, case


def test_nad_spec_config_that_is_not_an_object_is_left_for_load_delegate() -> None:
    assert config_from_spec("[1]", "n") == b"[1]"
    assert config_from_spec("{bad", "n") == b"{bad"


@pytest.mark.parametrize(
    ("case", "plugin", "caps", "expected"),
    [
        ("own runtimeConfig, no capabilities", {"type": "x", "runtimeConfig": {"mac": "m"}}, {}, {"mac": "m"}),
        (
            "own runtimeConfig, capability not offered",
            {"type": "x", "capabilities": {"ips": True}, "runtimeConfig": {"mac": "m"}},
            {"mac": "other"},
            {"mac": "m"},
        ),
        (
            "injected capabilities replace it",
            {"type": "x", "capabilities": {"ips": True}, "runtimeConfig": {"mac": "m"}},
            {"ips": ["10.0.0.1/24"]},
            {"ips": ["10.0.0.1/24"]},
        ),
        ("nothing at all", {"type": "x"}, {"ips": ["10.0.0.1/24"]}, None),
    ],
)
def test_runtime_config_as_libcni(
    case: str, plugin: dict[str, Any], caps: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    # libcni's injectRuntimeConfig only writes runtimeConfig when a capability matched
    (conf,) = plugin_confs({"cniVersion": "1.0.0", "name": "l", "plugins": [plugin]})
    assert plugin_stdin(conf, caps).get("runtimeConfig") == expected, case


BRIDGE_RESULT: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "br0", "mac": "aa:aa:aa:aa:aa:aa"},
        {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
        {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x"},
    ],
    "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2}],
}


@pytest.mark.parametrize(
    ("case", "routes", "gateway"),
    [
        # host-local reports the subnet gateway on the address; no default route was installed
        ("address gateway only", [], None),
        ("default route", [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}], ["10.1.0.1"]),
        ("v6 default route", [{"dst": "::/0", "gw": "fd00::1"}], ["fd00::1"]),
        ("default route without gw is not <nil>", [{"dst": "0.0.0.0/0"}], None),
        ("other routes ignored", [{"dst": "10.9.0.0/16", "gw": "10.1.0.254"}], None),
    ],
)
def test_network_status_gateway_is_the_default_route_gateway(
    case: str, routes: list[dict[str, Any]], gateway: list[str] | None
) -> None:
    (entry,) = network_statuses({**BRIDGE_RESULT, "routes": routes}, "ns/br", "net1", default=False)
    assert entry.get("gateway") == gateway, case
    assert entry["interface"] == "net1" and entry["ips"] == ["10.1.0.5"], case


def test_network_status_several_pod_interfaces() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "eth0", "sandbox": "/n"},
            {"name": "host0"},
            {"name": "eth1", "sandbox": "/n"},
        ],
        "ips": [
            {"address": "10.0.0.2/24", "interface": 0},
            {"address": "10.0.1.2/24", "gateway": "10.0.1.1", "interface": 2},
            {"address": "10.0.2.2/24"},  # names no interface: the last pod interface's
        ],
    }
    entries = network_statuses(result, "c", "eth0", default=True)
    assert [(e["interface"], e["ips"], e.get("default", False)) for e in entries] == [
        ("eth0", ["10.0.0.2"], False),
        ("eth1", ["10.0.1.2", "10.0.2.2"], True),  # the first address with a gateway decides
    ]
    no_gateway = {**result, "ips": [{"address": "10.0.0.2/24", "interface": 0}]}
    assert [e.get("default", False) for e in network_statuses(no_gateway, "c", "eth0", default=True)] == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("case", "value", "expected"),
    [
        ("absent", None, ("default",)),
        ("empty string keeps the default", "", ("default",)),
        ("comma text", "a, b", ("a", "b")),
        ("list", ["x"], ("x",)),
    ],
)
def test_global_namespaces(case: str, value: Any, expected: tuple[str, ...]) -> None:
    conf: dict[str, Any] = {"clusterNetwork": "c"}
    if value is not None:
        conf["globalNamespaces"] = value
    assert parse_netconf(conf).global_namespaces == expected, case


def test_nad_without_name_runs_under_the_nad_name(gateway_node: GatewayNode, pod_netns: Netns) -> None:
    node = gateway_node
    # host-local keeps its store under <dataDir>/<network name>
    ptp = {
        "cniVersion": "1.0.0",
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.36.0.0/24", "dataDir": str(node.ipam_dir)},
    }
    recorder = {"cniVersion": "1.0.0", "type": "recorder", "recordDir": str(node.record_dir), "runtimeConfig": {"k": 1}}
    node.write_nads(nad("nameless-rec", recorder), nad("nameless-ptp", ptp), filename="nads-nameless.json")
    node.write_pod("nameless", "nameless-rec, nameless-ptp")
    cid = new_container_id()
    try:
        status, body = node.cni("ADD", pod_netns, cid, "nameless")
        assert status == 200, body
        calls = [c for c in recorded_calls(node.record_dir) if c["env"].get("CNI_CONTAINERID") == cid]
        (secondary,) = [c for c in calls if c["env"].get("CNI_IFNAME") == "net1"]
        assert secondary["stdin"]["name"] == "nameless-rec"
        assert secondary["stdin"]["runtimeConfig"] == {"k": 1}
        assert (node.ipam_dir / "nameless-ptp").is_dir()
        assert any(p.name.startswith("10.36.0.") for p in (node.ipam_dir / "nameless-ptp").iterdir())
    finally:
        assert node.cni("DEL", pod_netns, cid, "nameless")[0] == 200
        (node.instance.cluster_dir / "nads-nameless.json").unlink()
    assert node.allocations() == []


def test_del_of_upstream_conflist_without_version_or_cached_args(tmp_path: Path) -> None:
    # upstream's CmdDel gives a cached conflist without cniVersion the Multus config's
    # version, and rebuilds CNI_ARGS (K8S_POD_*) for every delegate it deletes
    inst, rec = _setup(tmp_path, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder"})
    cid = new_container_id()
    cni_dir = Path(inst.config["cniDir"])
    conflist = {"name": "up-list", "plugins": [{"type": "recorder", "recordDir": str(rec)}]}
    scratch = [
        {
            "Conf": {"cniVersion": "", "name": "", "type": ""},
            "ConfList": conflist,
            "Name": "up-list",
            "Bytes": base64.b64encode(json.dumps(conflist).encode()).decode(),
        }
    ]
    (cni_dir / cid).write_text(json.dumps(scratch))
    conf = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim"}
    with running_services(inst, "cache", "executor", "gateway"):
        status, body = http_call(_sock(inst), "POST", "/cni", _body("DEL", cid, conf=conf))
        assert status == 200, body
    (delete,) = [c for c in recorded_calls(rec) if c["command"] == "DEL"]
    assert delete["stdin"]["cniVersion"] == str(inst.config.get("cniVersion") or "1.0.0")
    assert "K8S_POD_NAME=p" in delete["env"]["CNI_ARGS"]
    assert not (cni_dir / cid).exists()
