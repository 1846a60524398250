"""Dynamic networks, the pure diff: which attachments the annotation manages,
and what to remove and add so they match it again. One row per case."""

from __future__ import annotations

import pytest

from services.common.selection import NetworkSelectionElement, parse_networks_annotation
from services.gateway.dynamic_plan import (
    annotation_attachments,
    diff_networks,
    fixed_attachments,
    next_free_ifname,
)
from services.gateway.netconf import MultusNetConf
from services.gateway.records import AttachmentRecord


def rec(index: int, network: str, ifname: str, **kw: object) -> AttachmentRecord:
    return AttachmentRecord("c1", ifname, index, "/run/netns/x", network, {"type": "bridge"}, state="added", **kw)  # type: ignore[arg-type]


CLUSTER = rec(0, "cluster", "eth0", master=True)


def elements(text: str) -> list[NetworkSelectionElement]:
    return parse_networks_annotation(text, "ns")


@pytest.mark.parametrize(
    ("case", "annotation", "attached", "removed", "added"),
    [
        ("nothing changed", "a", [rec(1, "ns/a", "net1")], [], []),
        ("one added: next free name", "a,b", [rec(1, "ns/a", "net1")], [], [("ns/b", "net2")]),
        ("one removed", "a", [rec(1, "ns/a", "net1"), rec(2, "ns/b", "net2")], ["net2"], []),
        ("all removed", "", [rec(1, "ns/a", "net1")], ["net1"], []),
        ("gap reused", "b,c", [rec(2, "ns/b", "net2")], [], [("ns/c", "net1")]),
        (
            "same NAD twice matches in order",
            "a,a",
            [rec(1, "ns/a", "net1")],
            [],
            [("ns/a", "net2")],
        ),
        (
            "same NAD twice, first removed: the later one stays",
            "a",
            [rec(1, "ns/a", "net1"), rec(2, "ns/a", "net2")],
            ["net2"],
            [],
        ),
        ("explicit interface kept", "a@foo", [rec(1, "ns/a", "foo", ifname_requested=True)], [], []),
        (
            "interface changed: DEL then ADD",
            "a@bar",
            [rec(1, "ns/a", "foo", ifname_requested=True)],
            ["foo"],
            [("ns/a", "bar")],
        ),
        (
            "explicit name dropped: DEL then ADD under an automatic name",
            "a",
            [rec(1, "ns/a", "foo", ifname_requested=True)],
            ["foo"],
            [("ns/a", "net1")],
        ),
        (
            "explicit net2 is reserved before automatic names",
            "a,b,c@net2",
            [rec(1, "ns/a", "net1")],
            [],
            [("ns/b", "net3"), ("ns/c", "net2")],
        ),
        (
            "other namespace: DEL first frees the name",
            "other/a",
            [rec(1, "ns/a", "net1")],
            ["net1"],
            [("other/a", "net1")],
        ),
        ("old record without the field: netN is automatic", "a", [rec(1, "ns/a", "net1")], [], []),
    ],
)
def test_diff_networks(
    case: str, annotation: str, attached: list[AttachmentRecord], removed: list[str], added: list[tuple[str, str]]
) -> None:
    changes = diff_networks(elements(annotation), attached, ["eth0"])
    assert [r.ifname for r in changes.remove] == removed, case
    assert [(f"{a.element.namespace}/{a.element.name}", a.ifname) for a in changes.add] == added, case


@pytest.mark.parametrize(
    ("case", "records", "fixed", "managed"),
    [
        ("cluster network never managed", [CLUSTER, rec(1, "ns/a", "net1")], 1, ["net1"]),
        ("defaultNetworks never managed", [CLUSTER, rec(1, "dflt", "net1"), rec(2, "ns/a", "net2")], 2, ["net2"]),
        ("POST /delegate hot-plugs never managed", [CLUSTER, rec(1, "x", "hp0", hotplug=True)], 1, []),
        ("our own hot-plugs managed", [CLUSTER, rec(5, "ns/a", "net1", hotplug=True, dynamic=True)], 1, ["net1"]),
    ],
)
def test_annotation_attachments(case: str, records: list[AttachmentRecord], fixed: int, managed: list[str]) -> None:
    assert [r.ifname for r in annotation_attachments(records, fixed)] == managed, case


@pytest.mark.parametrize(
    ("case", "netconf", "namespace", "fixed"),
    [
        ("clusterNetwork", MultusNetConf(cluster_network="c"), "ns", 1),
        ("with defaultNetworks", MultusNetConf(cluster_network="c", default_networks=("d", "e")), "ns", 3),
        (
            "system namespace gets no defaultNetworks",
            MultusNetConf(cluster_network="c", default_networks=("d",)),
            "kube-system",
            1,
        ),
        ("delegates list", MultusNetConf(raw_delegates=({"type": "a"}, {"type": "b"})), "ns", 2),
    ],
)
def test_fixed_attachments(case: str, netconf: MultusNetConf, namespace: str, fixed: int) -> None:
    assert fixed_attachments(netconf, namespace) == fixed, case


def test_next_free_ifname() -> None:
    assert next_free_ifname({"eth0", "net1", "net3"}) == "net2"
    assert next_free_ifname(set()) == "net1"
