"""Table tests for `default-route` planning (which interfaces lose which default
route, which one gets it) and for the pure rewrite of delegate results."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.common import cni
from services.common.selection import NetworkSelectionElement
from services.gateway.default_route import default_route_family, reports_interface, rewrite_default_routes
from services.gateway.delegate import load_delegate
from services.gateway.plan import plan_attachments

# --- planning ----------------------------------------------------------------------


def _delegates(routes: list[tuple[str, ...] | None]) -> list[Any]:
    master = load_delegate({"cniVersion": "1.0.0", "name": "cluster", "type": "bridge"}, master=True)
    secondaries = [
        load_delegate(
            {"cniVersion": "1.0.0", "name": f"n{i}", "type": "macvlan"},
            NetworkSelectionElement(name=f"n{i}", namespace="ns", default_route=route),
        )
        for i, route in enumerate(routes)
    ]
    return [master, *secondaries]


# Each row: the secondaries' default-route requests -> per interface (eth0 first):
# (drop IPv4, drop IPv6, gateways).
PLAN_CASES: list[tuple[str, list[tuple[str, ...] | None], list[tuple[bool, bool, tuple[str, ...]]]]] = [
    (
        "nobody asks: nothing moves",
        [None, None],
        [(False, False, ()), (False, False, ()), (False, False, ())],
    ),
    (
        "ipv4 on the second secondary",
        [None, ("10.2.0.1",)],
        [(True, True, ()), (True, True, ()), (False, True, ("10.2.0.1",))],
    ),
    (
        "dual stack on one secondary",
        [("10.1.0.1", "fd01::1"), None],
        [(True, True, ()), (False, False, ("10.1.0.1", "fd01::1")), (True, True, ())],
    ),
    (
        "ipv4 and ipv6 on different secondaries",
        [("10.1.0.1",), ("fd02::1",)],
        [(True, True, ()), (False, True, ("10.1.0.1",)), (True, False, ("fd02::1",))],
    ),
    (
        "empty list: every interface loses both (upstream's code, not its comment)",
        [(), None],
        [(True, True, ()), (True, True, ()), (True, True, ())],
    ),
]


@pytest.mark.parametrize(("case", "routes", "expected"), PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_plan_default_route(case: str, routes: list[tuple[str, ...] | None], expected: list[Any]) -> None:
    planned = plan_attachments(_delegates(routes), runtime_ifname="eth0", pod=None, runtime_config={})
    assert [p.ifname for p in planned] == ["eth0", "net1", "net2"]
    assert [(p.drop_default_v4, p.drop_default_v6, p.default_gateways) for p in planned] == expected, case


@pytest.mark.parametrize(
    ("case", "routes"),
    [
        ("two ipv4 gateways on two networks", [("10.1.0.1",), ("10.2.0.1",)]),
        ("two ipv6 gateways on two networks", [("fd01::1",), ("fd02::1",)]),
    ],
)
def test_plan_rejects_ecmp(case: str, routes: list[tuple[str, ...] | None]) -> None:
    with pytest.raises(cni.CniError) as caught:
        plan_attachments(_delegates(routes), runtime_ifname="eth0", pod=None, runtime_config={})
    assert caught.value.code == cni.INVALID_CONFIG and "ECMP" in caught.value.msg, case


# --- result rewrite ------------------------------------------------------------------

SUBNET = {"dst": "10.0.0.0/8", "gw": "10.1.0.1"}
V4_DEFAULT = {"dst": "0.0.0.0/0", "gw": "10.1.0.1"}
V6_DEFAULT = {"dst": "::/0", "gw": "fd01::1"}


def _result(routes: list[Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.1.0.2/24", "interface": 0}],
    }
    if routes is not None:
        result["routes"] = routes
    return result


REWRITE_CASES: list[tuple[str, list[Any] | None, dict[str, Any], list[Any] | None]] = [
    ("drop both", [V4_DEFAULT, V6_DEFAULT, SUBNET], {"drop_v4": True, "drop_v6": True}, [SUBNET]),
    ("drop ipv4 keeps ipv6", [V4_DEFAULT, V6_DEFAULT], {"drop_v4": True}, [V6_DEFAULT]),
    ("drop ipv6 keeps ipv4", [V4_DEFAULT, V6_DEFAULT], {"drop_v6": True}, [V4_DEFAULT]),
    ("upstream's ::0/0 spelling", [{"dst": "::0/0"}], {"drop_v6": True}, None),
    ("default without gw", [{"dst": "0.0.0.0/0"}, SUBNET], {"drop_v4": True}, [SUBNET]),
    ("last route gone: no routes key", [V4_DEFAULT], {"drop_v4": True}, None),
    ("nothing to drop", None, {"drop_v4": True, "drop_v6": True}, None),
    (
        "gateway replaces its family",
        [{"dst": "0.0.0.0/0", "gw": "10.1.0.254"}, V6_DEFAULT],
        {"gateways": ["10.1.0.1"]},
        [V6_DEFAULT, V4_DEFAULT],
    ),
    ("gateway added to no routes", None, {"gateways": ["10.1.0.1", "fd01::1"]}, [V4_DEFAULT, V6_DEFAULT]),
    ("malformed entries kept", [{"dst": "nonsense"}, "odd"], {"drop_v4": True}, [{"dst": "nonsense"}, "odd"]),
]


@pytest.mark.parametrize(("case", "routes", "change", "expected"), REWRITE_CASES, ids=[c[0] for c in REWRITE_CASES])
def test_rewrite_default_routes(
    case: str, routes: list[Any] | None, change: dict[str, Any], expected: list[Any] | None
) -> None:
    original = _result(routes)
    untouched = copy.deepcopy(original)
    kwargs = {"drop_v4": False, "drop_v6": False, "gateways": (), **change}
    out = rewrite_default_routes(original, **kwargs)
    assert out is not None
    assert out.get("routes") == expected, case
    assert original == untouched  # the delegate's own result is never mutated
    assert {k: v for k, v in out.items() if k != "routes"} == {k: v for k, v in original.items() if k != "routes"}


def test_rewrite_legacy_020_result_per_section() -> None:
    result = {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.1.0.2/24", "routes": [{"dst": "0.0.0.0/0"}, SUBNET]},
        "ip6": {"ip": "fd01::2/64", "routes": [{"dst": "::/0"}]},
    }
    out = rewrite_default_routes(result, drop_v4=True, drop_v6=False, gateways=("fd01::1",))
    assert out is not None
    assert out["ip4"]["routes"] == [SUBNET]
    assert out["ip6"]["routes"] == [V6_DEFAULT]
    dropped = rewrite_default_routes(result, drop_v4=True, drop_v6=True, gateways=())
    assert dropped is not None and "routes" not in dropped["ip6"]


def test_rewrite_none_is_none() -> None:
    assert rewrite_default_routes(None, drop_v4=True, drop_v6=True, gateways=("10.0.0.1",)) is None


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (None, False),
        ({}, False),
        ({"cniVersion": "1.0.0", "dns": {}}, False),
        ({"cniVersion": "1.0.0", "interfaces": [{"name": "net1"}]}, True),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}, True),
        ({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}, True),
    ],
)
def test_reports_interface(result: dict[str, Any] | None, expected: bool) -> None:
    assert reports_interface(result) is expected


@pytest.mark.parametrize(
    ("dst", "family"),
    [("0.0.0.0/0", 4), ("::/0", 6), ("::0/0", 6), ("10.0.0.0/8", None), ("fd00::/64", None), ("", None), ("x", None)],
)
def test_default_route_family(dst: str, family: int | None) -> None:
    assert default_route_family({"dst": dst}) == family
