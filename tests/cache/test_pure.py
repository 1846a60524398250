"""Table tests for the cache's pure logic: trimming, UID rules, annotations,
backoff, watch-line splitting, file parsing, and the store's waiters."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from services.cache.cache import named_networks
from services.cache.file_source import parse_cluster_file
from services.cache.objects import (
    NETWORK_STATUS_ANNOTATION,
    CachedPod,
    ObjectError,
    file_pod_uid,
    nad_from_dict,
    network_status_patch,
    pod_from_dict,
    set_network_status,
    uid_mismatch,
)
from services.cache.store import ObjectStore
from services.common.backoff import backoff_delay
from services.common.kube_api import iter_lines

FULL_POD: dict[str, Any] = {
    "metadata": {
        "name": "web",
        "namespace": "prod",
        "uid": "u1",
        "resourceVersion": "42",
        "annotations": {"a": "1"},
        "labels": {"app": "web"},
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {"nodeName": "n1", "containers": [{"env": [{"name": "X", "value": "secret"}]}], "volumes": [{}]},
}


@pytest.mark.parametrize(
    ("case", "raw", "default_uid", "expected"),
    [
        (
            "full pod is trimmed",
            FULL_POD,
            False,
            CachedPod("prod", "web", "u1", "n1", {"a": "1"}, {"app": "web"}, "42"),
        ),
        ("namespace defaults", {"metadata": {"name": "p", "uid": "u"}}, False, CachedPod("default", "p", "u")),
        (
            "file pod gets a stable uid",
            {"metadata": {"name": "p"}},
            True,
            CachedPod("default", "p", file_pod_uid("default", "p")),
        ),
        ("api pod without uid keeps none", {"metadata": {"name": "p"}}, False, CachedPod("default", "p", "")),
        (
            "non-string annotation values",
            {"metadata": {"name": "p", "uid": "u", "annotations": {"n": 5}}},
            False,
            CachedPod("default", "p", "u", annotations={"n": "5"}),
        ),
    ],
)
def test_pod_from_dict(case: str, raw: dict[str, Any], default_uid: bool, expected: CachedPod) -> None:
    assert pod_from_dict(raw, default_uid=default_uid) == expected, case


@pytest.mark.parametrize(
    ("case", "raw"),
    [
        ("no metadata", {"kind": "Pod"}),
        ("no name", {"metadata": {"namespace": "x"}}),
        ("metadata not a mapping", {"metadata": "x"}),
    ],
)
def test_malformed_objects(case: str, raw: dict[str, Any]) -> None:
    with pytest.raises(ObjectError):
        pod_from_dict(raw)


def test_nad_config_must_be_a_string() -> None:
    assert nad_from_dict({"metadata": {"name": "n"}}).config == ""
    with pytest.raises(ObjectError):
        nad_from_dict({"metadata": {"name": "n"}, "spec": {"config": {"type": "x"}}})


def test_file_uid_is_stable_and_distinct() -> None:
    assert file_pod_uid("a", "b") == file_pod_uid("a", "b") != file_pod_uid("a", "c")


@pytest.mark.parametrize(
    ("case", "annotations", "pod_uid", "wanted", "mismatch"),
    [
        ("no uid asked", {}, "u1", "", False),
        ("same uid", {}, "u1", "u1", False),
        ("other uid", {}, "u1", "u2", True),
        ("mirror pod", {"kubernetes.io/config.mirror": "h"}, "u1", "u2", False),
        ("static pod by config.source", {"kubernetes.io/config.source": "file"}, "u1", "u2", False),
        ("config.source api is not static", {"kubernetes.io/config.source": "api"}, "u1", "u2", True),
    ],
)
def test_uid_mismatch(case: str, annotations: dict[str, str], pod_uid: str, wanted: str, mismatch: bool) -> None:
    assert uid_mismatch(CachedPod("ns", "p", pod_uid, annotations=annotations), wanted) is mismatch, case


@pytest.mark.parametrize(
    ("case", "before", "status", "changed", "after"),
    [
        ("set on a pod without annotations", {}, "[1]", True, {NETWORK_STATUS_ANNOTATION: "[1]"}),
        ("same value", {NETWORK_STATUS_ANNOTATION: "[1]"}, "[1]", False, {NETWORK_STATUS_ANNOTATION: "[1]"}),
        (
            "replace",
            {NETWORK_STATUS_ANNOTATION: "[1]", "o": "x"},
            "[2]",
            True,
            {NETWORK_STATUS_ANNOTATION: "[2]", "o": "x"},
        ),
        ("remove", {NETWORK_STATUS_ANNOTATION: "[1]"}, "", True, {}),
        ("remove absent", {"o": "x"}, "", False, {"o": "x"}),
    ],
)
def test_set_network_status(
    case: str, before: dict[str, str], status: str, changed: bool, after: dict[str, str]
) -> None:
    pod: dict[str, Any] = {"metadata": {"annotations": dict(before)}}
    assert set_network_status(pod, status) is changed, case
    assert pod["metadata"]["annotations"] == after, case


@pytest.mark.parametrize("attempt", [1, 2, 5, 10, 50])
def test_backoff_is_jittered_bounded_and_never_zero(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(30.0, 0.2 * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, 0.2, 30.0, rng.random()) for _ in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


class _Chunks:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        return iter(self.chunks)


@pytest.mark.parametrize(
    ("case", "chunks", "lines"),
    [
        ("one event per chunk", [b'{"a":1}\n', b'{"b":2}\n'], [b'{"a":1}', b'{"b":2}']),
        ("event split over chunks", [b'{"a":', b"1}\n{", b'"b":2}\n'], [b'{"a":1}', b'{"b":2}']),
        ("no trailing newline", [b'{"a":1}\n{"b":2}'], [b'{"a":1}', b'{"b":2}']),
        ("blank lines skipped", [b"\n\n", b'{"a":1}\n'], [b'{"a":1}']),
    ],
)
def test_iter_lines(case: str, chunks: list[bytes], lines: list[bytes]) -> None:
    assert list(iter_lines(_Chunks(chunks))) == lines, case


@pytest.mark.parametrize(
    ("case", "name", "text", "pods", "nads"),
    [
        (
            "multi-document yaml",
            "a.yaml",
            "kind: Pod\nmetadata: {name: p}\n---\nkind: NetworkAttachmentDefinition\nmetadata: {name: n}\n",
            1,
            1,
        ),
        (
            "kind List",
            "b.yml",
            "kind: List\nitems:\n- {kind: Pod, metadata: {name: p1}}\n- {kind: Pod, metadata: {name: p2}}\n",
            2,
            0,
        ),
        ("json", "c.json", '{"kind": "Pod", "metadata": {"name": "p"}}', 1, 0),
        ("other kinds ignored", "d.yaml", "kind: ConfigMap\nmetadata: {name: c}\n", 0, 0),
        ("empty documents", "e.yaml", "---\n---\n", 0, 0),
    ],
)
def test_parse_cluster_file(case: str, name: str, text: str, pods: int, nads: int, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(text)
    got_pods, got_nads = parse_cluster_file(path)
    assert (len(got_pods), len(got_nads)) == (pods, nads), case


def test_parse_cluster_file_rejects_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Pod\nmetadata: [unclosed\n")
    with pytest.raises(ValueError):
        parse_cluster_file(path)


async def test_store_wakes_a_waiter_from_another_thread() -> None:
    store: ObjectStore[CachedPod] = ObjectStore("Pod")
    pod = CachedPod("ns", "p", "u2")
    waiter = asyncio.create_task(store.wait_for(("ns", "p"), 5, lambda p: p.uid == "u2"))
    await asyncio.sleep(0.05)
    threading.Thread(target=store.upsert, args=(CachedPod("ns", "p", "u1"),)).start()  # not accepted
    await asyncio.sleep(0.05)
    assert not waiter.done()
    threading.Thread(target=store.upsert, args=(pod,)).start()
    assert await asyncio.wait_for(waiter, 2) == pod
    assert await store.wait_for(("ns", "absent"), 0.05) is None


def test_store_replace_is_a_full_resync() -> None:
    store: ObjectStore[CachedPod] = ObjectStore("Pod")
    store.upsert(CachedPod("ns", "gone", "u"))
    store.replace([CachedPod("ns", "kept", "u")], "77")
    assert store.keys() == [("ns", "kept")]
    assert store.synced and store.resource_version == "77"


NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK = "v1.multus-cni.io/default-network"


@pytest.mark.parametrize(
    ("case", "annotations", "keys"),
    [
        ("none", {}, []),
        ("text, own namespace and another", {NETWORKS: "a, other/b@net5"}, [("prod", "a"), ("other", "b")]),
        (
            "json list",
            {NETWORKS: '[{"name": "a", "interface": "x1"}, {"name": "c", "namespace": "o"}]'},
            [("prod", "a"), ("o", "c")],
        ),
        ("named twice", {NETWORKS: "a, a@net9"}, [("prod", "a")]),
        ("default network in the multus namespace", {DEFAULT_NETWORK: "calico"}, [("kube-system", "calico")]),
        ("default network first", {NETWORKS: "a", DEFAULT_NETWORK: "x/calico"}, [("x", "calico"), ("prod", "a")]),
        ("malformed: none, the gateway reports it", {NETWORKS: "[{broken"}, []),
        (
            "one malformed annotation spoils only itself",
            {NETWORKS: "a/b/c", DEFAULT_NETWORK: "d"},
            [("kube-system", "d")],
        ),
    ],
)
def test_named_networks(case: str, annotations: dict[str, str], keys: list[tuple[str, str]]) -> None:
    pod = CachedPod("prod", "web", "u1", annotations=annotations)
    assert named_networks(pod, "kube-system") == keys, case


@pytest.mark.parametrize(
    ("case", "status", "uid", "patch"),
    [
        (
            "set, pinned to the pod",
            "[]",
            "u1",
            {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: "[]"}, "uid": "u1"}},
        ),
        (
            "remove (null deletes a key)",
            "",
            "u1",
            {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: None}, "uid": "u1"}},
        ),
        ("no UID to pin", "[]", "", {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: "[]"}}}),
    ],
)
def test_network_status_patch(case: str, status: str, uid: str, patch: dict[str, Any]) -> None:
    assert network_status_patch(status, uid) == patch, case
