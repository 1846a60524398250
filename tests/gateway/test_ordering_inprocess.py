"""Ordering, ownership and deadlines of the gateway's CNI logic, in-process
(tests/gateway/fakes.py): the exact CNI verb, DEL after a rolled-back ADD,
per-container serialization, DEL superseding an in-flight ADD, the whole-call
deadline and cancellation when the caller goes away (issue 12)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from services.common import cni
from services.gateway.request import CniRequest
from tests.gateway.fakes import Node, make_node, plugin_conf


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = make_node(tmp_path)
    node.cluster.add_nad("net-a", plugin_conf("net-a"))
    node.cluster.add_nad("net-b", plugin_conf("net-b"))
    return node


async def failing(coro: Any) -> cni.CniError:
    with pytest.raises(cni.CniError) as raised:
        await coro
    return raised.value


@pytest.mark.parametrize("verb", ["add", "Add", "del", "check", "status", "gc", " ADD", "ADD ", "ADD\x00", "VERSION"])
async def test_cni_command_must_be_exactly_a_verb(node: Node, verb: str) -> None:
    """`add` used to run as ADD on /cni and /delegate; libcni and the shim require the exact verb."""
    node.cluster.add_pod("web", "net-a")
    base = node.request("ADD")
    request = CniRequest({**base.env, "CNI_COMMAND": verb}, base.config)
    assert (await failing(node.dispatcher.cni(request))).code == cni.INVALID_ENV
    assert (await failing(node.dispatcher.delegate(request))).code == cni.INVALID_ENV
    assert node.runner.calls == []
    assert node.records.container_ids() == []


FAIL_ADD_AND_DEL = {
    "ADD": {"code": 7, "msg": 'failed to lookup master "nope": Link not found'},
    "DEL": {"code": 7, "msg": 'failed to lookup master "nope": Link not found'},
}
FAIL_DEL = {"DEL": {"code": 5, "msg": "link not found"}}


# --- DEL after a failed ADD (item 1) ---------------------------------------------------
async def test_del_after_a_rolled_back_add_runs_no_delegate(node: Node) -> None:
    """The reported wedge: a macvlan whose master does not exist fails ADD and
    rolls back; every DEL after it resolved the pod's networks from the cluster
    again, DELed the macvlan (which cannot even load its config) and the network
    that was never added, and failed, so the pod stayed Terminating forever."""
    node.cluster.add_nad("macvlan-bad", plugin_conf("macvlan-bad", failOn=FAIL_ADD_AND_DEL))
    node.cluster.add_pod("web", "net-a, macvlan-bad, net-b")
    err = await failing(node.cni("ADD"))
    assert err.code == 7 and "Link not found" in err.msg
    assert node.records.load("c1") == []
    node.runner.calls.clear()
    for _ in range(2):  # the runtime's DEL, and its retry
        assert await node.cni("DEL") is None
    assert node.runner.calls == []
    assert node.records.load("c1") == []
    node.records.sweep_abandoned(older_than=-1)  # the gateway's periodic sweep (or GC) drops the mark
    assert node.records.container_ids() == []


async def test_del_after_an_add_that_never_got_past_planning_runs_no_delegate(node: Node) -> None:
    err = await failing(node.cni("ADD"))  # the pod is not in the cache yet: code 11
    assert err.code == cni.TRY_AGAIN_LATER
    node.cluster.add_pod("web", "net-a")  # ... and is by the time the runtime DELs
    await node.cni("DEL")
    assert node.runner.calls == []


async def test_a_new_add_after_a_rolled_back_one_clears_the_mark(node: Node) -> None:
    node.cluster.add_nad("flaky", plugin_conf("flaky", failOn=FAIL_ADD_AND_DEL))
    node.cluster.add_pod("web", "flaky")
    await failing(node.cni("ADD"))
    node.cluster.add_pod("web", "net-a")  # fixed annotation, same container retried
    await node.cni("ADD")
    node.runner.calls.clear()
    await node.cni("DEL")
    assert node.runner.seen() == [("DEL", "net1"), ("DEL", "eth0")]


async def test_del_of_an_unknown_container_reports_delegate_failures_without_failing(node: Node) -> None:
    """No record and no mark (attached before an upgrade that lost the records): the
    networks are resolved from the cluster and DELed; a failure there is logged,
    evented and counted, not returned (nothing says it was ever attached)."""
    node.cluster.add_nad("net-del-fails", plugin_conf("net-del-fails", failOn=FAIL_DEL))
    node.cluster.add_pod("web", "net-a, net-del-fails")
    assert await node.cni("DEL", container_id="from-before-the-upgrade") is None
    assert node.runner.seen() == [("DEL", "net2"), ("DEL", "net1"), ("DEL", "eth0")]
    await node.service.drain_background()
    assert [e[1] for e in node.cluster.events] == ["NetworkDeleteFailed"]


# --- one owner per container (item 2) --------------------------------------------------
@pytest.fixture
def slow(node: Node) -> Node:
    node.cluster.add_nad("net-slow", plugin_conf("net-slow"))
    node.cluster.add_pod("web", "net-a, net-slow")
    node.runner.hang.add(("ADD", "net-slow"))
    return node


async def hung_add(node: Node, container_id: str = "c1") -> asyncio.Task[Any]:
    task = asyncio.create_task(node.cni("ADD", container_id=container_id))
    await asyncio.wait_for(node.runner.entered.get(), 5)
    return task


async def test_del_supersedes_an_add_in_flight_and_tears_down_what_it_attached(slow: Node) -> None:
    add = await hung_add(slow)
    assert await asyncio.wait_for(slow.cni("DEL"), 5) is None
    err = await failing(asyncio.wait_for(add, 5))
    assert err.code == cni.TRY_AGAIN_LATER and "superseded" in err.msg
    assert slow.runner.seen() == [
        ("ADD", "eth0"),
        ("ADD", "net1"),
        ("ADD", "net2"),  # hung, cancelled
        ("DEL", "net2"),
        ("DEL", "net1"),
        ("DEL", "eth0"),
    ]
    assert slow.records.load("c1") == []
    assert slow.service.core.owners.busy() == 0


async def test_a_repeated_add_supersedes_the_one_in_flight(slow: Node) -> None:
    first = await hung_add(slow)
    slow.runner.hang.clear()
    second = await asyncio.wait_for(slow.cni("ADD"), 5)
    assert second is not None
    assert (await failing(asyncio.wait_for(first, 5))).code == cni.TRY_AGAIN_LATER
    assert [r.state for r in slow.records.load("c1")] == ["added", "added", "added"]
    assert not (slow.root / "records" / "c1" / ".add-abandoned.json").exists()


async def test_check_waits_for_the_add_in_flight(slow: Node) -> None:
    add = await hung_add(slow)
    check = asyncio.create_task(slow.cni("CHECK"))
    await asyncio.sleep(0.05)
    assert not check.done()  # it used to run at once, against records still "adding"
    slow.runner.release.set()
    await asyncio.wait_for(add, 5)
    assert await asyncio.wait_for(check, 5) is None
    assert slow.runner.seen("CHECK") == [("CHECK", "eth0"), ("CHECK", "net1"), ("CHECK", "net2")]


async def test_other_containers_do_not_wait(slow: Node) -> None:
    add = await hung_add(slow)
    slow.cluster.add_pod("other", "net-a")
    assert await asyncio.wait_for(slow.cni("ADD", container_id="c2", pod="other"), 5) is not None
    assert not add.done()
    slow.runner.release.set()
    await asyncio.wait_for(add, 5)


async def test_gc_of_a_container_waits_for_its_add(tmp_path: Path) -> None:
    node = make_node(tmp_path, plugin_conf("cluster", "1.1.0", speaks=["1.1.0"]))
    node.cluster.add_nad("net-slow", plugin_conf("net-slow", "1.1.0"))
    node.cluster.add_pod("web", "net-slow")
    node.runner.hang.add(("ADD", "net-slow"))
    add = await hung_add(node)
    config = {"cniVersion": "1.1.0", "name": "multus", "cni.dev/valid-attachments": []}
    gc = asyncio.create_task(node.cni("GC", config=config))
    await asyncio.sleep(0.05)
    assert node.runner.seen("DEL") == []  # GC used to DEL the records of the running ADD
    node.runner.release.set()
    await asyncio.wait_for(add, 5)
    await asyncio.wait_for(gc, 5)
    assert node.runner.seen("DEL") == [("DEL", "net1"), ("DEL", "eth0")]
    assert node.records.container_ids() == []


# --- the whole-call deadline and a caller that goes away (item 3) ------------------------
async def test_an_add_past_its_deadline_is_cancelled_and_rolled_back(tmp_path: Path) -> None:
    node = make_node(tmp_path, deadline=0.3)
    node.cluster.add_nad("net-slow", plugin_conf("net-slow"))
    node.cluster.add_pod("web", "net-slow")
    node.runner.hang.add(("ADD", "net-slow"))
    started = time.monotonic()
    err = await failing(node.cni("ADD"))
    assert time.monotonic() - started < 2.0
    assert err.code == cni.TRY_AGAIN_LATER and "did not finish within 0.3s" in err.msg
    assert node.runner.seen("DEL") == [("DEL", "net1"), ("DEL", "eth0")]
    node.runner.calls.clear()
    await node.cni("DEL")
    assert node.runner.calls == []


async def test_an_add_whose_caller_goes_away_is_rolled_back(slow: Node) -> None:
    add = await hung_add(slow)
    add.cancel()  # what aiohttp does to the handler when the shim's connection closes
    with pytest.raises(asyncio.CancelledError):
        await add
    await asyncio.wait_for(slow.dispatcher.wait_idle(5), 5)
    assert slow.runner.seen("DEL") == [("DEL", "net2"), ("DEL", "net1"), ("DEL", "eth0")]
    assert slow.records.load("c1") == []


async def test_a_del_whose_caller_goes_away_still_finishes(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    node.runner.hang.add(("DEL", "net-a"))
    delete = asyncio.create_task(node.cni("DEL"))
    await asyncio.wait_for(node.runner.entered.get(), 5)
    delete.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delete
    node.runner.release.set()
    assert await node.dispatcher.wait_idle(5)
    assert node.runner.seen("DEL") == [("DEL", "net1"), ("DEL", "eth0")]
    assert node.records.container_ids() == []
