"""SetDefaultRoutes: moving a pod's default routes (`default-route`) in a real
network namespace through the real executor process, its bad-input paths and
guard, plus table tests of the gateway checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from services.api import executor_pb2
from services.common.peercred import PeerCred
from services.executor.guard import CallerPolicy
from services.executor.rejection import Reason, Rejected
from services.executor.validation import validate_gateways
from tests.executor.conftest import GATEWAY, Executor
from tests.support.netns import Netns, ip, netns

# --- pure: gateway validation and the guard ---------------------------------------


@pytest.mark.parametrize(
    ("case", "gateways", "ok"),
    [
        ("none", [], True),
        ("one ipv4", ["10.2.0.1"], True),
        ("one ipv6", ["fd02::1"], True),
        ("dual stack", ["10.2.0.1", "fd02::1"], True),
        ("ipv6 link-local", ["fe80::1"], True),
        ("not an address", ["gw"], False),
        ("cidr", ["10.2.0.1/24"], False),
        ("empty string", [""], False),
        ("unspecified v4", ["0.0.0.0"], False),
        ("unspecified v6", ["::"], False),
        ("multicast", ["224.0.0.1"], False),
        ("loopback", ["127.0.0.1"], False),
        ("limited broadcast", ["255.255.255.255"], False),
        ("zone given", ["fe80::1%eth0"], False),
        ("ecmp v4", ["10.2.0.1", "10.2.0.2"], False),
        ("ecmp v6", ["fd02::1", "fd02::2"], False),
    ],
)
def test_validate_gateways(case: str, gateways: list[str], ok: bool) -> None:
    if ok:
        assert [str(g) for g in validate_gateways(gateways)] == gateways, case
    else:
        with pytest.raises(Rejected) as caught:
            validate_gateways(gateways)
        assert caught.value.reason is Reason.INVALID, case


@pytest.mark.parametrize(
    ("caller", "allowed_by_config", "ok"),
    [("gateway", False, True), ("", False, False), ("operator", False, False), ("", True, True)],
)
def test_route_change_guard(caller: str, allowed_by_config: bool, ok: bool) -> None:
    policy, root = CallerPolicy(allow_operator_exec=allowed_by_config), PeerCred(1, 0, 0)
    if ok:
        policy.check_route_change(root, caller)
    else:
        with pytest.raises(Rejected) as caught:
            policy.check_route_change(root, caller)
        assert caught.value.reason is Reason.DENIED


# --- a real executor in a real netns ------------------------------------------------


@pytest.fixture
def pod() -> Iterator[Netns]:
    """A netns shaped like a pod after its cluster network's ADD: eth0 holds both
    default routes; net1 is a secondary attachment with addresses and no default."""
    with netns("exr") as ns:
        ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", netns=ns.name)
        ip("link", "add", "net1", "type", "veth", "peer", "name", "net1p", netns=ns.name)
        for link in ("eth0", "eth0p", "net1", "net1p"):
            ip("link", "set", link, "up", netns=ns.name)
        ip("addr", "add", "10.1.0.2/24", "dev", "eth0", netns=ns.name)
        ip("addr", "add", "10.2.0.2/24", "dev", "net1", netns=ns.name)
        ip("-6", "addr", "add", "fd01::2/64", "dev", "eth0", "nodad", netns=ns.name)
        ip("-6", "addr", "add", "fd02::2/64", "dev", "net1", "nodad", netns=ns.name)
        ip("route", "add", "default", "via", "10.1.0.1", "dev", "eth0", netns=ns.name)
        ip("-6", "route", "add", "default", "via", "fd01::1", "dev", "eth0", netns=ns.name)
        yield ns


def defaults(ns: Netns) -> list[tuple[str, str]]:
    """(gateway, dev) of every default route, IPv4 then IPv6, as `ip route` shows them."""
    return [
        (r.get("gateway", ""), r.get("dev", "")) for f in ("-4", "-6") for r in ns.routes(f) if r["dst"] == "default"
    ]


def set_routes(executor: Executor, metadata: Any = GATEWAY, **fields: Any) -> executor_pb2.SetDefaultRoutesResponse:
    response: executor_pb2.SetDefaultRoutesResponse = executor.stub().SetDefaultRoutes(
        executor_pb2.SetDefaultRoutesRequest(**fields), timeout=5, metadata=metadata
    )
    return response


def refused(executor: Executor, metadata: Any = GATEWAY, **fields: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        set_routes(executor, metadata, **fields)
    return caught.value.code(), caught.value.details() or ""


def test_default_routes_move_from_eth0_to_net1(executor: Executor, pod: Netns) -> None:
    assert defaults(pod) == [("10.1.0.1", "eth0"), ("fd01::1", "eth0")]
    dropped = set_routes(executor, netns=pod.path, ifname="eth0", drop_ipv4=True, drop_ipv6=True)
    assert [(r.destination, r.gateway, r.ifname) for r in dropped.removed] == [
        ("0.0.0.0/0", "10.1.0.1", "eth0"),
        ("::/0", "fd01::1", "eth0"),
    ]
    assert not dropped.added
    assert defaults(pod) == []
    moved = set_routes(executor, netns=pod.path, ifname="net1", gateways=["10.2.0.1", "fd02::1"])
    assert [(r.destination, r.gateway, r.ifname) for r in moved.added] == [
        ("0.0.0.0/0", "10.2.0.1", "net1"),
        ("::/0", "fd02::1", "net1"),
    ]
    assert defaults(pod) == [("10.2.0.1", "net1"), ("fd02::1", "net1")]
    # A repeated call (the gateway's client retries when an executor dies mid-call) converges.
    again = set_routes(executor, netns=pod.path, ifname="net1", gateways=["10.2.0.1", "fd02::1"])
    assert [r.gateway for r in again.removed] == ["10.2.0.1", "fd02::1"]
    assert defaults(pod) == [("10.2.0.1", "net1"), ("fd02::1", "net1")]
    # Dropping from an interface without a default route is a no-op, not an error.
    assert not set_routes(executor, netns=pod.path, ifname="eth0", drop_ipv4=True, drop_ipv6=True).removed


def test_a_gateway_replaces_its_family_only(executor: Executor, pod: Netns) -> None:
    set_routes(executor, netns=pod.path, ifname="eth0", drop_ipv4=True)
    set_routes(executor, netns=pod.path, ifname="net1", gateways=["10.2.0.1"])
    assert defaults(pod) == [("10.2.0.1", "net1"), ("fd01::1", "eth0")]


def test_bad_input_is_refused_cleanly(executor: Executor, pod: Netns) -> None:
    before = defaults(pod)
    cases: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
        ("no netns", {"netns": "", "ifname": "eth0"}, grpc.StatusCode.INVALID_ARGUMENT, "needs a netns"),
        ("outside prefixes", {"netns": "/tmp/x", "ifname": "eth0"}, grpc.StatusCode.INVALID_ARGUMENT, "prefix"),
        (
            "missing netns",
            {"netns": "/var/run/netns/no-such-ns-here", "ifname": "eth0"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "does not exist",
        ),
        ("host netns", {"netns": "/proc/self/ns/net", "ifname": "eth0"}, grpc.StatusCode.INVALID_ARGUMENT, "host"),
        ("bad ifname", {"netns": pod.path, "ifname": "a/b"}, grpc.StatusCode.INVALID_ARGUMENT, "interface name"),
        ("missing interface", {"netns": pod.path, "ifname": "net9"}, grpc.StatusCode.NOT_FOUND, "net9"),
        (
            "bad gateway",
            {"netns": pod.path, "ifname": "net1", "gateways": ["not-an-ip"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "not an IP address",
        ),
        (
            "ecmp",
            {"netns": pod.path, "ifname": "net1", "gateways": ["10.2.0.1", "10.2.0.3"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "ECMP",
        ),
        (
            "conflict with eth0's default",
            {"netns": pod.path, "ifname": "net1", "gateways": ["10.2.0.1"]},
            grpc.StatusCode.FAILED_PRECONDITION,
            "default via 10.1.0.1 dev eth0",
        ),
    ]
    for case, fields, code, text in cases:
        got_code, details = refused(executor, **fields)
        assert (got_code, text in details) == (code, True), (case, details)
    assert defaults(pod) == before


def test_gateway_the_kernel_refuses(executor: Executor, pod: Netns) -> None:
    set_routes(executor, netns=pod.path, ifname="eth0", drop_ipv4=True, drop_ipv6=True)
    for gateway in ("10.9.0.1", "fd09::1"):
        code, details = refused(executor, netns=pod.path, ifname="net1", gateways=[gateway])
        assert code == grpc.StatusCode.FAILED_PRECONDITION, details
        assert f"gateway {gateway} is not reachable through net1" in details
    ip("link", "set", "net1", "down", netns=pod.name)
    code, details = refused(executor, netns=pod.path, ifname="net1", gateways=["10.2.0.1"])
    assert code == grpc.StatusCode.FAILED_PRECONDITION, details
    assert defaults(pod) == []


def test_operators_cannot_move_routes(executor: Executor, pod: Netns) -> None:
    for metadata in ((), (("x-multus-caller", "operator"),)):
        code, details = refused(executor, metadata, netns=pod.path, ifname="eth0", drop_ipv4=True)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "executorAllowOperatorExec" in details
    assert defaults(pod) == [("10.1.0.1", "eth0"), ("fd01::1", "eth0")]
