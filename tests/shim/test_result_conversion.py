"""Table tests: the daemon's CNI 1.0.0 result converted to the stdin config's cniVersion."""

from __future__ import annotations

from typing import Any

import pytest

from shim import multus_shim as shim

RESULT_100: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
        {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/p", "mtu": 1450, "pciID": "x"},
    ],
    "ips": [
        {"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1"},
        {"interface": 1, "address": "fd00:10:244::5/64", "gateway": "fd00:10:244::1"},
        {"interface": 1, "address": "10.245.0.5/24"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}, {"dst": "::/0", "gw": "fd00:10:244::1", "mtu": 1400}],
    "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
}

INTERFACES_040 = [
    {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
    {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/p"},
]
IPS_040 = [
    {"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1", "version": "4"},
    {"interface": 1, "address": "fd00:10:244::5/64", "gateway": "fd00:10:244::1", "version": "6"},
    {"interface": 1, "address": "10.245.0.5/24", "version": "4"},
]


def expected_040(version: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "interfaces": INTERFACES_040,
        "ips": IPS_040,
        "routes": RESULT_100["routes"],
        "dns": RESULT_100["dns"],
    }


def expected_020(version: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "ip4": {"ip": "10.244.0.5/24", "gateway": "10.244.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}]},
        "ip6": {
            "ip": "fd00:10:244::5/64",
            "gateway": "fd00:10:244::1",
            "routes": [{"dst": "::/0", "gw": "fd00:10:244::1"}],
        },
        "dns": RESULT_100["dns"],
    }


@pytest.mark.parametrize(
    ("case", "version", "expected"),
    [
        ("1.1.0 is the 1.0.0 shape with its own cniVersion", "1.1.0", {**RESULT_100, "cniVersion": "1.1.0"}),
        ("1.0.0 passes through unchanged", "1.0.0", RESULT_100),
        ("0.4.0 gets ips[].version and drops 1.x interface fields", "0.4.0", expected_040("0.4.0")),
        ("0.3.1 has the 0.4.0 shape", "0.3.1", expected_040("0.3.1")),
        ("0.3.0 has the 0.4.0 shape", "0.3.0", expected_040("0.3.0")),
        ("0.2.0 keeps the first address per family, routes by family", "0.2.0", expected_020("0.2.0")),
        ("0.1.0 has the 0.2.0 shape", "0.1.0", expected_020("0.1.0")),
    ],
)
def test_convert_result(case: str, version: str, expected: dict[str, Any]) -> None:
    assert shim.convert_result(RESULT_100, version) == expected, case


@pytest.mark.parametrize(
    ("case", "result", "version", "expected"),
    [
        (
            "a result without interfaces or routes stays minimal in 0.4.0",
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}]},
            "0.4.0",
            {"cniVersion": "0.4.0", "ips": [{"address": "10.1.0.2/24", "version": "4"}], "dns": {}},
        ),
        (
            "an empty result converts to an empty 0.3.1 result",
            {"cniVersion": "1.0.0"},
            "0.3.1",
            {"cniVersion": "0.3.1", "dns": {}},
        ),
        (
            "an IPv6-only result has only ip6 in 0.2.0",
            {"cniVersion": "1.0.0", "ips": [{"address": "fd00::2/64"}]},
            "0.2.0",
            {"cniVersion": "0.2.0", "ip6": {"ip": "fd00::2/64"}, "dns": {}},
        ),
        (
            "a 1.x result with unknown fields keeps them for 1.1.0 (tolerant of a newer gateway)",
            {"cniVersion": "1.1.0", "ips": [], "future": True},
            "1.1.0",
            {"cniVersion": "1.1.0", "ips": [], "future": True},
        ),
    ],
)
def test_convert_result_edges(case: str, result: dict[str, Any], version: str, expected: dict[str, Any]) -> None:
    assert shim.convert_result(result, version) == expected, case


@pytest.mark.parametrize(
    ("case", "result", "version", "code"),
    [
        ("0.2.0 cannot express a result without addresses", {"cniVersion": "1.0.0", "ips": []}, "0.2.0", 1),
        ("a version nobody speaks", RESULT_100, "2.0.0", 1),
        ("no result object at all", None, "1.0.0", 999),
        ("a result that is not an object", ["x"], "0.4.0", 999),
    ],
)
def test_convert_result_failures(case: str, result: object, version: str, code: int) -> None:
    with pytest.raises(shim.ShimError) as raised:
        shim.convert_result(result, version)
    assert raised.value.code == code, case


def test_conversion_does_not_modify_the_daemon_result() -> None:
    before = repr(RESULT_100)
    for version in shim.SUPPORTED_VERSIONS:
        shim.convert_result(RESULT_100, version)
    assert repr(RESULT_100) == before
