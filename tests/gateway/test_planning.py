"""Table tests for the gateway's pure code: request decoding, selection parsing,
netconf merge, delegate loading, planning, results, network-status, plugin stdin."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from services.common import cni
from services.common.selection import NetworkSelectionElement, check_namespace_isolation, parse_networks_annotation
from services.gateway.delegate import load_delegate, with_cni_version
from services.gateway.device_info import devices_from_checkpoint
from services.gateway.invoke import plugin_confs, plugin_stdin
from services.gateway.netconf import load_netconf
from services.gateway.network_status import network_statuses
from services.gateway.plan import plan_attachments
from services.gateway.request import PodRef, decode_request_body, encode_request_body, validate_call
from services.gateway.result import to_current, to_version

B64 = base64.b64encode(b'{"cniVersion":"1.0.0"}').decode()
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x"}
ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u1"


@pytest.mark.parametrize(
    ("case", "body", "env", "config", "attrs"),
    [
        ("lower-case keys", {"env": {"A": "1"}, "config": B64}, {"A": "1"}, b'{"cniVersion":"1.0.0"}', None),
        ("Go field names", {"Env": {"A": "1"}, "Config": B64}, {"A": "1"}, b'{"cniVersion":"1.0.0"}', None),
        ("exact key wins", {"ENV": {"A": "2"}, "env": {"A": "1"}}, {"A": "1"}, b"", None),
        ("null config", {"env": {}, "config": None}, {}, b"", None),
        ("null env value", {"env": {"A": None}}, {"A": ""}, b"", None),
        (
            "interface attributes",
            {
                "env": {},
                "interfaceAttributes": {"ips": ["10.0.0.5/24"], "mac": "0a:00:00:00:00:01", "cni-args": {"k": 1}},
            },
            {},
            b"",
            (("10.0.0.5/24",), "0a:00:00:00:00:01", {"k": 1}),
        ),
        (
            "case-insensitive attributes",
            {"interfaceattributes": {"MAC": "0a:00:00:00:00:02"}},
            {},
            b"",
            ((), "0a:00:00:00:00:02", None),
        ),
    ],
)
def test_decode_request_body(case: str, body: Any, env: dict[str, str], config: bytes, attrs: Any) -> None:
    decoded = decode_request_body(json.dumps(body).encode())
    assert dict(decoded.env) == env, case
    assert decoded.config == config, case
    if attrs is None:
        assert decoded.interface_attributes is None
    else:
        got = decoded.interface_attributes
        assert got is not None
        assert (got.ips, got.mac, got.cni_args) == attrs


def test_null_body_is_an_empty_request() -> None:
    assert dict(decode_request_body(b"null").env) == {}


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("not JSON", b"{"),
        ("not an object", b"[1]"),
        ("env not object", b'{"env": []}'),
        ("env value not string", b'{"env": {"A": 1}}'),
        ("config not base64", b'{"config": "!!!"}'),
        ("config not string", b'{"config": 5}'),
        ("ips not strings", b'{"interfaceAttributes": {"ips": [1]}}'),
    ],
)
def test_decode_request_body_rejects(case: str, body: bytes) -> None:
    with pytest.raises(cni.CniError) as info:
        decode_request_body(body)
    assert info.value.code == cni.DECODE_FAILURE, case


def test_encode_round_trips() -> None:
    body = json.dumps(
        {"env": ENV, "config": B64, "interfaceAttributes": {"mac": "0a:00:00:00:00:03", "cni-args": None}}
    )
    decoded = decode_request_body(body.encode())
    assert decode_request_body(encode_request_body(decoded)) == decoded


@pytest.mark.parametrize(
    ("case", "env", "code"),
    [
        ("no command", {}, cni.INVALID_ENV),
        ("unknown command", {"CNI_COMMAND": "FOO"}, cni.INVALID_ENV),
        ("no container id", {"CNI_COMMAND": "ADD", "CNI_NETNS": "/x", "CNI_ARGS": ARGS}, cni.INVALID_ENV),
        ("no netns on ADD", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_ARGS": ARGS}, cni.INVALID_ENV),
        ("no pod", {**ENV, "CNI_ARGS": "IgnoreUnknown=1"}, cni.INVALID_ENV),
        ("no pod name", {**ENV, "CNI_ARGS": "K8S_POD_NAMESPACE=a"}, cni.INVALID_ENV),
        # names become API paths in the cache: web/status would read another resource
        ("pod name with a slash", {**ENV, "CNI_ARGS": "K8S_POD_NAMESPACE=a;K8S_POD_NAME=web/status"}, cni.INVALID_ENV),
        ("namespace with a slash", {**ENV, "CNI_ARGS": "K8S_POD_NAMESPACE=a/pods;K8S_POD_NAME=web"}, cni.INVALID_ENV),
        ("upper-case pod name", {**ENV, "CNI_ARGS": "K8S_POD_NAMESPACE=a;K8S_POD_NAME=Web"}, cni.INVALID_ENV),
    ],
)
def test_validate_call_rejects(case: str, env: dict[str, str], code: int) -> None:
    from services.gateway.request import CniRequest

    with pytest.raises(cni.CniError) as info:
        validate_call(CniRequest(env=env))
    assert info.value.code == code, case


def test_validate_call_extracts_pod_and_extra_args() -> None:
    from services.gateway.request import CniRequest

    call = validate_call(CniRequest(env={**ENV, "CNI_ARGS": ARGS + ";FOO=bar=baz;junk", "CNI_COMMAND": "ADD"}))
    assert call.command == "ADD"
    assert call.pod == PodRef("ns1", "p1", "u1", "c1")
    assert call.extra_args == (("FOO", "bar=baz"),)
    assert call.ifname == "eth0"
    status = validate_call(CniRequest(env={"CNI_COMMAND": "STATUS"}))
    assert status.pod is None


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        ("empty", "", []),
        ("name", "net-a", [("ns", "net-a", "")]),
        ("ns/name@if", "other/net-a@data0", [("other", "net-a", "data0")]),
        ("list with spaces", " a , b@x ", [("ns", "a", ""), ("ns", "b", "x")]),
        (
            "json",
            '[{"name": "a", "interface": "x"}, {"name": "b", "namespace": "o"}]',
            [("ns", "a", "x"), ("o", "b", "")],
        ),
        ("json deprecated interfaceRequest", '[{"name": "a", "interfaceRequest": "y"}]', [("ns", "a", "y")]),
    ],
)
def test_parse_networks_annotation(case: str, text: str, expected: list[tuple[str, str, str]]) -> None:
    got = parse_networks_annotation(text, "ns")
    assert [(e.namespace, e.name, e.interface) for e in got] == expected, case


def test_parse_json_selection_fields() -> None:
    text = json.dumps(
        [
            {
                "name": "a",
                "ips": ["10.1.1.1/24", "fd00::1/64"],
                "mac": "02:00:00:00:00:01",
                "infiniband-guid": "c2:11:22:33:44:55:66:77",
                "portMappings": [{"hostPort": 80, "containerPort": 8080}],
                "bandwidth": {"ingressRate": 1000},
                "deviceID": "0000:03:00.1",
                "cni-args": {"foo": "bar"},
                "default-route": ["10.1.1.254"],
            }
        ]
    )
    (el,) = parse_networks_annotation(text, "ns")
    assert el.ips == ("10.1.1.1/24", "fd00::1/64")
    assert el.mac == "02:00:00:00:00:01"
    assert el.infiniband_guid == "c2:11:22:33:44:55:66:77"
    assert el.port_mappings == ({"hostPort": 80, "containerPort": 8080},)
    assert el.bandwidth == {"ingressRate": 1000}
    assert el.device_id == "0000:03:00.1"
    assert el.cni_args == {"foo": "bar"}
    assert el.default_route == ("10.1.1.254",)


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("bad name", "Net_A"),
        ("two slashes", "a/b/c"),
        ("two ats", "a@b@c"),
        ("long ifname", "a@abcdefghijklmnop"),
        # 8 characters but 16 bytes: the kernel counts bytes (was refused only by the executor)
        ("ifname too long in bytes (text)", "net@\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"),
        ("ifname too long in bytes (JSON)", '[{"name": "a", "interface": "' + "\u00e9" * 8 + '"}]'),
        ("ifname with a NUL", '[{"name": "a", "interface": "a\\u0000b"}]'),
        ("bad json", "[{"),
        ("json without name", '[{"namespace": "a"}]'),
        ("bad mac", '[{"name": "a", "mac": "zz"}]'),
        ("bad ip", '[{"name": "a", "ips": ["10.0.0.300"]}]'),
        ("bad gateway", '[{"name": "a", "default-route": ["x"]}]'),
        ("ips not list", '[{"name": "a", "ips": "10.0.0.1"}]'),
    ],
)
def test_parse_networks_annotation_rejects(case: str, text: str) -> None:
    with pytest.raises(cni.CniError) as info:
        parse_networks_annotation(text, "ns")
    assert info.value.code == cni.INVALID_CONFIG, case


@pytest.mark.parametrize(
    ("case", "target_ns", "global_ns", "ok"),
    [
        ("own namespace", "pods", (), True),
        ("global namespace", "default", ("default",), True),
        ("other namespace", "other", ("default",), False),
    ],
)
def test_namespace_isolation(case: str, target_ns: str, global_ns: tuple[str, ...], ok: bool) -> None:
    elements = [NetworkSelectionElement(name="n", namespace=target_ns)]
    if ok:
        check_namespace_isolation("pods", elements, global_ns)
    else:
        with pytest.raises(cni.CniError):
            check_namespace_isolation("pods", elements, global_ns)


@pytest.mark.parametrize(
    ("case", "request_conf", "daemon", "expect"),
    [
        (
            "daemon keys win",
            {"cniVersion": "0.3.1", "binDir": "/a", "clusterNetwork": "x"},
            {"cniVersion": "1.0.0", "binDir": "/b"},
            {"cni_version": "1.0.0", "bin_dir": "/b", "cluster_network": "x"},
        ),
        ("request keys kept", {"clusterNetwork": "x", "cniDir": "/r"}, {}, {"cni_dir": "/r"}),
        (
            "globalNamespaces as text",
            {"clusterNetwork": "x", "globalNamespaces": "a, b"},
            {},
            {"global_namespaces": ("a", "b")},
        ),
        (
            "defaults",
            {"clusterNetwork": "x"},
            {},
            {
                "system_namespaces": ("kube-system",),
                "multus_namespace": "kube-system",
                "global_namespaces": ("default",),
            },
        ),
    ],
)
def test_netconf_merge(case: str, request_conf: dict[str, Any], daemon: dict[str, Any], expect: dict[str, Any]) -> None:
    netconf = load_netconf(json.dumps(request_conf).encode(), daemon)
    for key, value in expect.items():
        assert getattr(netconf, key) == value, case


def test_netconf_needs_a_network() -> None:
    with pytest.raises(cni.CniError) as info:
        load_netconf(b'{"cniVersion": "1.0.0"}', {})
    assert info.value.code == cni.INVALID_CONFIG


def _delegate(name: str, **kw: Any) -> Any:
    el = NetworkSelectionElement(name=name, namespace="ns", **kw)
    return load_delegate({"cniVersion": "1.0.0", "name": name, "type": "macvlan"}, el)


def test_load_delegate_injects_cni_args_and_device_id() -> None:
    conflist = {"name": "l", "plugins": [{"type": "sriov", "args": {"cni": {"a": 1}}}, {"type": "tuning"}]}
    el = NetworkSelectionElement(name="nad", namespace="ns", cni_args={"b": 2})
    d = with_cni_version(load_delegate(conflist, el, device_id="0000:01:00.1", resource_name="r"), "1.0.0")
    assert d.name == "ns/nad"
    assert "plugins" in d.config and d.cni_version == "1.0.0"
    assert d.config["plugins"][0]["args"]["cni"] == {"a": 1, "b": 2}
    assert d.config["plugins"][1]["deviceID"] == "0000:01:00.1"
    with pytest.raises(cni.CniError):
        load_delegate({"name": "x"})


@pytest.mark.parametrize(
    ("case", "delegates", "ifnames"),
    [
        ("cluster only", [("cluster", {})], ["eth0"]),
        ("numbered", [("cluster", {}), ("a", {}), ("b", {})], ["eth0", "net1", "net2"]),
        (
            "explicit names keep positions",
            [("cluster", {}), ("a", {"interface": "data0"}), ("b", {})],
            ["eth0", "data0", "net2"],
        ),
    ],
)
def test_plan_interface_names(case: str, delegates: list[tuple[str, dict[str, Any]]], ifnames: list[str]) -> None:
    built = [
        load_delegate({"cniVersion": "1.0.0", "name": n, "type": "bridge"}, master=True)
        if n == "cluster"
        else _delegate(n, **kw)
        for n, kw in delegates
    ]
    planned = plan_attachments(built, runtime_ifname="eth0", pod=PodRef("ns", "p", "u", "s"), runtime_config={})
    assert [p.ifname for p in planned] == ifnames, case


def test_plan_rejects_duplicate_interface_names() -> None:
    master = load_delegate({"cniVersion": "1.0.0", "name": "c", "type": "bridge"}, master=True)
    with pytest.raises(cni.CniError) as info:
        plan_attachments([master, _delegate("a", interface="eth0")], runtime_ifname="eth0", pod=None, runtime_config={})
    assert info.value.code == cni.INVALID_CONFIG
    assert "duplicate interface name" in info.value.msg


def test_plan_runtime_config_does_not_leak_to_secondaries() -> None:
    master = load_delegate({"cniVersion": "1.0.0", "name": "c", "type": "bridge"}, master=True)
    runtime = {"portMappings": [{"hostPort": 1, "containerPort": 2}], "bandwidth": {"ingressRate": 5}}
    secondary = _delegate("a", mac="02:00:00:00:00:09", ips=("10.9.9.9/24",))
    plain = _delegate("b")
    planned = plan_attachments([master, secondary, plain], runtime_ifname="eth0", pod=None, runtime_config=runtime)
    assert planned[0].capability_args == runtime
    assert planned[1].capability_args == {"mac": "02:00:00:00:00:09", "ips": ["10.9.9.9/24"]}
    assert planned[2].capability_args == {}
    assert "MAC=02:00:00:00:00:09" in planned[1].add_args and "IP=10.9.9.9/24" in planned[1].add_args
    assert "MAC=" not in planned[1].cni_args


def test_plan_cni_args_as_upstream() -> None:
    master = load_delegate({"cniVersion": "1.0.0", "name": "c", "type": "bridge"}, master=True)
    (att,) = plan_attachments(
        [master], runtime_ifname="eth0", pod=PodRef("ns", "p", "u", "sb"), runtime_config={}, extra_args=[("X", "1")]
    )
    assert att.cni_args == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=sb;K8S_POD_UID=u;X=1"
    )


@pytest.mark.parametrize(
    ("case", "routes", "drops"),
    [
        ("none requested", [None, None], [(False, False), (False, False)]),
        ("v4 on secondary", [None, ("10.1.1.1",)], [(True, True), (False, True)]),
        ("v6 on secondary", [None, ("fd00::1",)], [(True, True), (True, False)]),
        ("empty request keeps nothing", [None, ()], [(True, True), (True, True)]),
    ],
)
def test_plan_default_route(case: str, routes: list[Any], drops: list[tuple[bool, bool]]) -> None:
    master = load_delegate({"cniVersion": "1.0.0", "name": "c", "type": "bridge"}, master=True)
    delegates = [master] + [_delegate(f"n{i}", default_route=r) for i, r in enumerate(routes[1:])]
    planned = plan_attachments(delegates, runtime_ifname="eth0", pod=None, runtime_config={})
    assert [(p.drop_default_v4, p.drop_default_v6) for p in planned] == drops, case


def test_plan_rejects_ecmp() -> None:
    master = load_delegate({"cniVersion": "1.0.0", "name": "c", "type": "bridge"}, master=True)
    with pytest.raises(cni.CniError):
        plan_attachments(
            [master, _delegate("a", default_route=("10.0.0.1",)), _delegate("b", default_route=("10.0.1.1",))],
            runtime_ifname="eth0",
            pod=None,
            runtime_config={},
        )


@pytest.mark.parametrize(
    ("case", "result", "expected_ips"),
    [
        (
            "0.2.0",
            {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}},
            [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        ),
        (
            "0.3.1",
            {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}]},
            [{"address": "10.0.0.2/24", "interface": 0}],
        ),
        ("1.0.0", {"cniVersion": "1.0.0", "ips": [{"address": "fd00::2/64"}]}, [{"address": "fd00::2/64"}]),
    ],
)
def test_result_to_current(case: str, result: dict[str, Any], expected_ips: list[dict[str, Any]]) -> None:
    current = to_current(result)
    assert current["cniVersion"] == "1.0.0"
    assert current["ips"] == expected_ips, case
    assert current["dns"] == {}


def test_result_to_old_versions() -> None:
    res = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}, {"address": "fd00::2/64"}]}
    assert to_version(res, "0.4.0")["ips"][1]["version"] == "6"
    legacy = to_version(res, "0.2.0")
    assert legacy["ip4"] == {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"} and legacy["ip6"] == {"ip": "fd00::2/64"}


def test_network_status_entries() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x"},
        ],
        "ips": [
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1},
            {"address": "fd00::2/64", "interface": 1},
        ],
        "dns": {"nameservers": ["10.0.0.10"]},
    }
    (entry,) = network_statuses(result, "cluster", "eth0", default=True)
    assert entry == {
        "name": "cluster",
        "interface": "eth0",
        "ips": ["10.0.0.2", "fd00::2"],
        "mac": "02:00:00:00:00:01",
        "default": True,
        "dns": {"nameservers": ["10.0.0.10"]},
    }  # no default route in the result: no `gateway` (upstream reads default routes only)
    (bare,) = network_statuses(
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/24"}]}, "ns/n", "net1", default=False
    )
    assert bare == {"name": "ns/n", "interface": "net1", "ips": ["10.0.0.3"], "dns": {}}
    (info,) = network_statuses(None, "ns/n", "net1", default=False, device_info={"type": "pci"})
    assert info["device-info"] == {"type": "pci"} and "gateway" not in info


def test_plugin_stdin_as_libcni() -> None:
    conflist = {
        "cniVersion": "1.0.0",
        "name": "l",
        "plugins": [
            {"type": "bridge", "runtimeConfig": {"stale": 1}},
            {"type": "portmap", "capabilities": {"portMappings": True, "mac": False}},
        ],
    }
    confs = plugin_confs(conflist)
    assert [c["name"] for c in confs] == ["l", "l"] and all(c["cniVersion"] == "1.0.0" for c in confs)
    caps = {"portMappings": [{"hostPort": 1}], "mac": "x"}
    first = plugin_stdin(confs[0], caps)
    assert first["runtimeConfig"] == {"stale": 1}  # libcni leaves a config's own runtimeConfig alone
    second = plugin_stdin(confs[1], caps, {"cniVersion": "1.0.0", "ips": []})
    assert second["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]}
    assert second["prevResult"]["cniVersion"] == "1.0.0"


def test_devices_from_checkpoint() -> None:
    checkpoint = {
        "Data": {
            "PodDeviceEntries": [
                {
                    "PodUID": "u1",
                    "ContainerName": "c",
                    "ResourceName": "intel.com/sriov",
                    "DeviceIDs": {"0": ["b", "a"]},
                },
                {"PodUID": "u1", "ContainerName": "d", "ResourceName": "old/res", "DeviceIDs": ["x"]},
                {"PodUID": "u2", "ContainerName": "c", "ResourceName": "intel.com/sriov", "DeviceIDs": {"0": ["z"]}},
            ]
        }
    }
    assert devices_from_checkpoint(json.dumps(checkpoint).encode(), "u1") == {
        "intel.com/sriov": ["a", "b"],
        "old/res": ["x"],
    }
    assert devices_from_checkpoint(b"garbage", "u1") == {}


def test_a_nad_config_with_a_lone_surrogate_is_a_cni_error() -> None:
    """Found by the fuzz suite: encoding the config for the error crashed (UnicodeEncodeError, code 999)."""
    from services.common import cni
    from services.gateway.delegate import load_delegate
    from services.gateway.resolver import config_from_spec

    raw = config_from_spec("\ud800", "net")
    with pytest.raises(cni.CniError) as caught:
        load_delegate(raw)
    assert caught.value.code != cni.INTERNAL
