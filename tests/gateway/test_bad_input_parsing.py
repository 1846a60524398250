"""Bad input the gateway parses (deeply nested JSON, container IDs, interface names)
is a CNI error with the right code, never an internal failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from services.common import cni
from services.common.selection import parse_networks_annotation
from services.common.validation import ifname_problem
from services.gateway.delegate import load_delegate
from services.gateway.invoke import NetworkInvoker, Target
from services.gateway.netconf import load_netconf
from services.gateway.records import validate_container_id
from services.gateway.resolver import config_from_spec

DEEP = "[" * 200_000 + "]" * 200_000


def _netconf(text: str) -> Any:
    return load_netconf(text.encode(), {}, require_network=False)


PARSERS: list[tuple[str, Callable[[str], Any]]] = [
    ("request network config", _netconf),
    ("delegate config", lambda text: load_delegate(text.encode())),
    ("pod annotation", lambda text: parse_networks_annotation(text, "default")),
]


@pytest.mark.parametrize(("case", "parse"), PARSERS, ids=[p[0] for p in PARSERS])
def test_deeply_nested_json_is_a_cni_error(case: str, parse: Callable[[str], Any]) -> None:
    with pytest.raises(cni.CniError) as err:
        parse(DEEP)
    assert err.value.code in (cni.DECODE_FAILURE, cni.INVALID_CONFIG)


def test_deeply_nested_nad_config_is_passed_on_for_load_delegate_to_report() -> None:
    assert config_from_spec(DEEP, "nad") == DEEP.encode()


@pytest.mark.parametrize("container_id", ["abc\n", "ab\nc", "../x", "", "-a", "a" * 256])
def test_container_id_must_match_entirely(container_id: str) -> None:
    with pytest.raises(cni.CniError):
        validate_container_id(container_id)


@pytest.mark.parametrize(
    ("ifname", "ok"),
    [("eth0", True), ("a" * 15, True), ("a" * 16, False), ("é" * 7, True), ("é" * 8, False), ("..", False)],
)
def test_interface_names_are_limited_in_bytes(ifname: str, ok: bool) -> None:
    assert (ifname_problem(ifname) == "") is ok


@pytest.mark.parametrize(
    ("element", "ok"),
    [
        ({"name": "macvlan-net"}, True),
        ({"name": "net.v1", "namespace": "team-a"}, True),  # NAD names are subdomains: dots allowed
        ({"name": "/"}, False),  # found by the fuzz suite: it reached the NAD lookup's API path
        ({"name": "a/b"}, False),
        ({"name": ".."}, False),
        ({"name": "../secrets/x"}, False),
        ({"name": "Net"}, False),
        ({"name": "n%2Fx"}, False),
        ({"name": "net", "namespace": "a/b"}, False),
        ({"name": "net", "namespace": "a.b"}, False),  # a namespace is a label
    ],
)
def test_json_selection_names_are_what_an_api_path_can_hold(element: dict[str, str], ok: bool) -> None:
    annotation = json.dumps([element])
    if ok:
        assert parse_networks_annotation(annotation, "default")[0].name == element["name"]
    else:
        with pytest.raises(cni.CniError) as err:
            parse_networks_annotation(annotation, "default")
        assert err.value.code == cni.INVALID_CONFIG


@pytest.mark.parametrize("version", [{"a": 1}, 1.0, ["1.0.0"], "one.two", "1.0.x", "{'a': -inf}"])
def test_a_delegate_with_a_version_no_one_can_compare_is_refused_before_it_runs(version: object) -> None:
    """Found by the fuzz suite: such a config attached, then every DEL of it failed."""
    with pytest.raises(cni.CniError) as err:
        load_delegate(json.dumps({"cniVersion": version, "name": "n", "type": "bridge"}))
    assert err.value.code == cni.INCOMPATIBLE_VERSION


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0", "1.0", ""])
def test_a_delegate_with_a_usable_version_loads(version: str) -> None:
    assert load_delegate(json.dumps({"cniVersion": version, "name": "n", "type": "bridge"})).cni_version == version


def test_del_of_a_record_with_a_garbled_version_still_runs_without_prev_result() -> None:
    invoker = NetworkInvoker(runner=None)  # type: ignore[arg-type]  # delete_calls runs nothing
    target = Target("c1", "/var/run/netns/x", "net1", "")
    config = {"cniVersion": "garbled", "name": "n", "type": "bridge"}
    (call,) = invoker.delete_calls(config, target, {}, {"cniVersion": "1.0.0", "interfaces": []})
    assert call.plugin == "bridge" and call.command == "DEL"
    assert "prevResult" not in json.loads(call.stdin)
