"""The benchmark's pure parts, table-tested: its numbers are only as good as these."""

from __future__ import annotations

import pytest
import yaml

from bench.node_cost.clusters import NODE_GROUP, NODE_ROLE, RBAC_MANIFEST, bench_rbac
from bench.node_cost.memory import parse_smaps_rollup
from bench.node_cost.memory_profile import Mapping, classify
from bench.node_cost.networks import HostLinks, direct_calls, selection
from bench.node_cost.stats import percentile

LINKS = HostLinks("cb0", "nb0", "veth0", "/tmp/ipam")


@pytest.mark.parametrize(
    ("case", "values", "q", "expected"),
    [
        ("median of ten is the fifth", list(range(1, 11)), 0.5, 5),
        ("p90 of ten is the ninth", list(range(1, 11)), 0.9, 9),
        ("p99 of ten is the max", list(range(1, 11)), 0.99, 10),
        ("p99 of a hundred is the 99th", list(range(1, 101)), 0.99, 99),
        ("one sample is every percentile", [7.0], 0.1, 7.0),
        ("order does not matter", [3, 1, 2], 0.5, 2),
    ],
)
def test_percentile(case: str, values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected, case


@pytest.mark.parametrize(
    ("case", "size", "expected"),
    [
        ("cluster network only", 1, [("bridge", "eth0")]),
        ("plus macvlan", 2, [("bridge", "eth0"), ("macvlan", "net1")]),
        ("all four", 4, [("bridge", "eth0"), ("macvlan", "net1"), ("bridge", "net2"), ("macvlan", "net3")]),
    ],
)
def test_direct_calls_follow_the_meta_plugins_order(case: str, size: int, expected: list[tuple[str, str]]) -> None:
    calls = direct_calls(size, LINKS)
    assert [(c.plugin, c.ifname) for c in calls] == expected, case
    assert calls[0].config["name"] == "bench-cluster" and calls[0].config["cniVersion"] == "1.0.0"


@pytest.mark.parametrize(
    ("size", "annotation"),
    [(1, ""), (2, "bench-macvlan"), (4, "bench-macvlan,bench-bridge,bench-macvlan2")],
)
def test_selection_annotation(size: int, annotation: str) -> None:
    assert selection(size) == annotation


def test_rbac_copy_renames_cluster_objects_and_keeps_the_node_identity() -> None:
    objects = bench_rbac("bench-x", "-bench-x")
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    node_binding = by_kind[("ClusterRoleBinding", "multus-node-bench-x")]
    assert node_binding["roleRef"]["name"] == "multus-node-bench-x"
    subjects = {(s["kind"], s["name"], s.get("namespace")) for s in node_binding["subjects"]}
    assert ("Group", NODE_GROUP, None) in subjects
    assert ("ServiceAccount", "multus", "bench-x") in subjects
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["name"].endswith("-bench-x")
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "bench-x"
    shipped = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if o}
    # exactly the shipped rules: the benchmark grants the node nothing the manifests do not
    assert by_kind[("ClusterRole", f"{NODE_ROLE}-bench-x")]["rules"] == shipped[("ClusterRole", NODE_ROLE)]["rules"]


def test_smaps_rollup_fields_in_kib() -> None:
    text = "55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:  1234 kB\nPss:   567 kB\nPss_Anon:  89 kB\nbogus line\n"
    assert parse_smaps_rollup(text) == {"Rss": 1234, "Pss": 567, "Pss_Anon": 89}


MIB = 1024 * 1024


def _m(start: int, size_kib: int, perms: str, path: str, pss: int) -> Mapping:
    return Mapping(start, start + size_kib * 1024, perms, path, {"Pss": pss})


def test_classify_mappings() -> None:
    arena = 64 * MIB * 3
    maps = [
        _m(0x1000, 4, "r-xp", "/usr/lib/libpython3.11.so.1.0", 10),
        _m(0x2000000, 100, "rw-p", "[heap]", 20),
        _m(arena, 1024, "rw-p", "", 30),
        _m(arena + MIB, 63 * 1024, "---p", "", 0),
        _m(0x10000000, 4, "---p", "", 0),
        _m(0x10001000, 8192, "rw-p", "", 40),
        _m(0x20000000, 256, "rw-p", "", 50),
        _m(0x30000000, 4, "r-xp", "/x/site-packages/grpc/_cython/cygrpc.so", 60),
    ]
    kinds = classify(maps)
    assert kinds["file: interpreter + libpython"] == 10
    assert kinds["anon: malloc main heap (brk)"] == 20
    assert kinds["anon: malloc per-thread arenas"] == 30
    assert kinds["anon: thread stacks (guarded mappings)"] == 40
    assert kinds["anon: other (obmalloc arenas, large allocations)"] == 50
    assert kinds["file: grpc (extension)"] == 60
