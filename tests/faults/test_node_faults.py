"""Faults around one container, through the real shim and real plugins under
the supervisor: the same container ADDed twice, DEL racing ADD, DEL after the
netns is gone, a full and a read-only records directory, and delegates that
hang, crash, print garbage or megabytes. After each: every call within its
bound, with a CNI code that says what happened, and nothing leaked."""

from __future__ import annotations

import random
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.node import CALL_BOUND, EXECUTOR_TIMEOUT, FaultNode, Outcome, fault_node, pod_namespace
from tests.support import fault_report
from tests.support.netns import ip

pytestmark = [pytest.mark.faults, pytest.mark.root]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[FaultNode]:
    with fault_node(tmp_path) as node:
        node.write_pod("web")
        for name in ("hangs", "crashes", "garbage", "megabytes"):
            node.write_pod(name, name)
        time.sleep(0.5)
        yield node


def check_bounds(node: FaultNode, section: str) -> None:
    slowest = max(o.seconds for o in node.outcomes)
    fault_report.record(section, calls=len(node.outcomes), slowest_call_seconds=round(slowest, 2))
    assert slowest <= CALL_BOUND, f"a call took {slowest:.1f}s"
    assert all(o.code != 999 for o in node.outcomes), [o for o in node.outcomes if o.code == 999]


def test_the_same_container_added_twice(node: FaultNode) -> None:
    cid = uuid.uuid4().hex
    with pod_namespace() as ns:
        results: list[Outcome] = []
        threads = [threading.Thread(target=lambda: results.append(node.call("ADD", cid, ns.path, "web"))) for _ in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert any(r.ok for r in results), results  # the later supersedes the earlier (code 11) or waits for it
        assert all(r.ok or r.code == 11 for r in results), results
        assert node.call("ADD", cid, ns.path, "web").ok  # and once more, in sequence: undone, then redone
        links = set(ns_links(ns.name))
        assert {"eth0", "net1"} <= links, links
        assert node.call("DEL", cid, ns.path, "web").ok
        assert set(ns_links(ns.name)) == {"lo"}
    check_bounds(node, "duplicate ADD")
    assert node.leaks({cid}) == []


def test_del_racing_add(node: FaultNode) -> None:
    rng = random.Random(7)
    cids: set[str] = set()
    for _ in range(15):
        cid = uuid.uuid4().hex
        cids.add(cid)
        with pod_namespace() as ns:
            add = threading.Thread(target=node.call, args=("ADD", cid, ns.path, "web"))
            add.start()
            time.sleep(rng.uniform(0.0, 0.12))
            deleted = node.call("DEL", cid, ns.path, "web")
            add.join()
            assert deleted.ok, deleted
            # The runtime's DEL after its ADD (whichever way the race went) leaves nothing.
            assert node.call("DEL", cid, ns.path, "web").ok
            assert set(ns_links(ns.name)) == {"lo"}, "DEL returned before the racing ADD's interfaces were gone"
    check_bounds(node, "DEL racing ADD")
    assert node.leaks(cids) == []


def test_del_after_the_netns_is_gone(node: FaultNode) -> None:
    cid = uuid.uuid4().hex
    with pod_namespace() as ns:
        assert node.call("ADD", cid, ns.path, "web").ok
        path = ns.path
    assert not Path(path).exists()
    assert node.call("DEL", cid, path, "web").ok
    assert node.call("DEL", cid, "", "web").ok  # and without CNI_NETNS at all
    check_bounds(node, "DEL after netns gone")
    assert node.leaks({cid}) == []


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_records_directory(node: FaultNode) -> None:
    cid, later = uuid.uuid4().hex, uuid.uuid4().hex
    with tmpfs(node.records_dir, "64k") as records, pod_namespace() as ns:
        filler = records / ".filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"], capture_output=True)
        refused = node.call("ADD", cid, ns.path, "web")
        assert refused.code == 5, refused  # an I/O failure, before any delegate ran
        assert set(ns_links(ns.name)) == {"lo"}
        assert node.call("DEL", cid, ns.path, "web").ok
        filler.unlink()
        assert node.call("ADD", later, ns.path, "web").ok  # space again: back to normal
        assert node.call("DEL", later, ns.path, "web").ok
    check_bounds(node, "full records dir")
    assert node.leaks({cid, later}) == []


def test_a_read_only_records_directory(node: FaultNode) -> None:
    cid, refused_cid = uuid.uuid4().hex, uuid.uuid4().hex
    with tmpfs(node.records_dir, "4m") as records, pod_namespace() as ns:
        assert node.call("ADD", cid, ns.path, "web").ok
        subprocess.run(["mount", "-o", "remount,ro", str(records)], check=True)
        with pod_namespace() as other:
            refused = node.call("ADD", refused_cid, other.path, "web")
            assert refused.code == 5, refused
            assert set(ns_links(other.name)) == {"lo"}
        stuck = node.call("DEL", cid, ns.path, "web")
        assert stuck.code == 5, stuck  # its records cannot be dropped: the runtime retries
        subprocess.run(["mount", "-o", "remount,rw", str(records)], check=True)
        assert node.call("DEL", cid, ns.path, "web").ok
        assert node.call("DEL", refused_cid, ns.path, "web").ok
        assert set(ns_links(ns.name)) == {"lo"}
    check_bounds(node, "read-only records dir")
    assert node.leaks({cid, refused_cid}) == []


@pytest.mark.parametrize("behaviour", ["hangs", "crashes", "garbage", "megabytes"])
def test_misbehaving_delegates(node: FaultNode, behaviour: str) -> None:
    cid = uuid.uuid4().hex
    with pod_namespace() as ns:
        failed = node.call("ADD", cid, ns.path, behaviour)
        assert not failed.ok and failed.code not in (0, 999), failed
        if behaviour == "hangs":
            assert failed.seconds < EXECUTOR_TIMEOUT + 10, failed.seconds
        assert set(ns_links(ns.name)) == {"lo"}  # rolled back, the chained bridge's veth included
        assert node.call("DEL", cid, ns.path, behaviour).ok
    check_bounds(node, f"delegate that {behaviour}")
    fault_report.record(f"delegate that {behaviour}", add_code=failed.code, add_seconds=round(failed.seconds, 2))
    assert node.leaks({cid}) == []


def ns_links(name: str) -> list[str]:
    import json

    return [link["ifname"] for link in json.loads(ip("-j", "link", "show", netns=name).stdout or "[]")]
