"""Dynamic networks in-process (tests/gateway/fakes.py): the reconciler's
rules that the end-to-end tests (tests/e2e/test_dynamic_networks.py) do not
reach cheaply: it waits for the container's turn, leaves deleting pods and
gone sandboxes alone, keeps what was there when a change fails and backs
off, undoes a change a crash interrupted, coalesces quick edits, and never
touches interfaces hot-plugged through POST /delegate."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from services.gateway.dynamic_networks import DynamicNetworks
from services.gateway.ports import PodView
from tests.gateway.fakes import Node, make_node, plugin_conf

NETWORKS = "k8s.v1.cni.cncf.io/networks"
FAIL_ADD = {"ADD": {"code": 7, "msg": 'failed to lookup master "nope": Link not found'}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = make_node(tmp_path, dynamicNetworks=True)
    for name in ("net-a", "net-b", "net-c"):
        node.cluster.add_nad(name, plugin_conf(name))
    node.cluster.add_nad("net-bad", plugin_conf("net-bad", failOn=FAIL_ADD))
    return node


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dynamic(node: Node, clock: Clock) -> DynamicNetworks:
    # The fake sandboxes are /var/run/netns/<container>: they "exist" unless the test says otherwise.
    return DynamicNetworks(
        node.service.core, retry_base=10.0, retry_max=60.0, clock=clock, sandbox_exists=lambda p: True
    )


def edited(node: Node, networks: str, pod: str = "web", **changes: object) -> PodView:
    current = node.cluster.pods[("default", pod)]
    view = replace(current, annotations={**current.annotations, NETWORKS: networks}, **changes)  # type: ignore[arg-type]
    node.cluster.pods[("default", pod)] = view
    return view


def ifnames(node: Node, container_id: str = "c1") -> list[str]:
    return [r.ifname for r in node.records.load(container_id)]


async def test_add_then_remove_and_status_lists_exactly_what_is_attached(node: Node, dynamic: DynamicNetworks) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    outcome = await dynamic.reconcile(edited(node, "net-a,net-b"))
    assert (outcome.result, outcome.added) == ("changed", ("net2",))
    assert ifnames(node) == ["eth0", "net1", "net2"]
    added = node.runner.calls[-1]
    assert (added.command, added.ifname, added.network) == ("ADD", "net2", "net-b")
    assert "runtimeConfig" not in added.stdin  # secondary networks get no runtime capabilities
    assert [e["interface"] for e in node.cluster.statuses[-1][1]] == ["eth0", "net1", "net2"]

    outcome = await dynamic.reconcile(edited(node, "net-a"))
    assert (outcome.result, outcome.removed) == ("changed", ("net2",))
    assert node.runner.seen("DEL") == [("DEL", "net2")]
    assert ifnames(node) == ["eth0", "net1"]
    assert [e["interface"] for e in node.cluster.statuses[-1][1]] == ["eth0", "net1"]
    await node.service.drain_background()
    reasons = [reason for _, reason, _ in node.cluster.events]
    assert "AddedInterface" in reasons and "RemovedInterface" in reasons

    # Nothing left to do: no plugin runs, no status is rewritten.
    calls, writes = len(node.runner.calls), len(node.cluster.statuses)
    node.cluster.pods[("default", "web")] = replace(
        node.cluster.pods[("default", "web")],
        annotations={
            **node.cluster.pods[("default", "web")].annotations,
            "k8s.v1.cni.cncf.io/network-status": json.dumps(node.cluster.statuses[-1][1]),
        },
    )
    assert (await dynamic.reconcile(node.cluster.pods[("default", "web")])).result == "converged"
    assert (len(node.runner.calls), len(node.cluster.statuses)) == (calls, writes)


async def test_waits_for_the_containers_turn(node: Node, dynamic: DynamicNetworks) -> None:
    """A pass over a pod takes the same per-container turn as ADD/DEL/CHECK/hot-plug."""
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    node.runner.hang.add(("CHECK", "net-a"))
    check = asyncio.create_task(node.cni("CHECK"))
    await asyncio.wait_for(node.runner.entered.get(), 5)
    reconcile = asyncio.create_task(dynamic.reconcile(edited(node, "net-a,net-b")))
    await asyncio.sleep(0.2)
    assert not reconcile.done(), "a pass ran while CHECK held the container"
    assert ifnames(node) == ["eth0", "net1"]
    node.runner.release.set()
    await check
    assert (await asyncio.wait_for(reconcile, 5)).added == ("net2",)


async def test_deleting_pod_and_gone_sandbox_are_left_alone(node: Node, clock: Clock) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    calls = len(node.runner.calls)
    present = DynamicNetworks(node.service.core, clock=clock, sandbox_exists=lambda p: True)
    assert (await present.reconcile(edited(node, "net-a,net-b", deleting=True))).result == "ignored"
    gone = DynamicNetworks(node.service.core, clock=clock, sandbox_exists=lambda p: False)
    assert (await gone.reconcile(edited(node, "net-a,net-b"))).result == "ignored"
    node.cluster.add_pod("other", "net-a,net-b")  # a pod this gateway never attached
    assert (await present.reconcile(node.cluster.pods[("default", "other")])).result == "ignored"
    assert len(node.runner.calls) == calls
    assert ifnames(node) == ["eth0", "net1"]


async def test_failure_keeps_existing_interfaces_and_backs_off(
    node: Node, dynamic: DynamicNetworks, clock: Clock
) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    outcome = await dynamic.reconcile(edited(node, "net-a,net-bad,no-such-nad"))
    assert outcome.result == "failed" and len(outcome.errors) == 2
    assert ifnames(node) == ["eth0", "net1"]  # the failed element was rolled back alone
    assert node.runner.seen("DEL") == [("DEL", "net2")]  # ... the failing plugin's own ADD
    await node.service.drain_background()
    reasons = {reason for _, reason, _ in node.cluster.events}
    assert {"AddInterfaceFailed", "NoNetworkFound"} <= reasons
    assert all("unchanged" in m for _, r, m in node.cluster.events if r in ("AddInterfaceFailed", "NoNetworkFound"))

    # The same annotation again (a resync, a status write): no retry inside the backoff.
    calls = len(node.runner.calls)
    assert (await dynamic.reconcile(node.cluster.pods[("default", "web")])).result == "deferred"
    assert len(node.runner.calls) == calls
    clock.now += 61  # past the backoff: retried (and fails again)
    assert (await dynamic.reconcile(node.cluster.pods[("default", "web")])).result == "failed"
    # A new edit retries at once.
    assert (await dynamic.reconcile(edited(node, "net-a,net-b"))).added == ("net2",)
    dynamic.observe("DELETED", PodView("default", "web"))
    await dynamic.stop()


async def test_interrupted_change_is_undone_and_redone(node: Node, dynamic: DynamicNetworks) -> None:
    """A gateway killed while a dynamic ADD ran leaves an "adding" record: the next pass
    (after the restart) DELs it and adds the element afresh."""
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    await dynamic.reconcile(edited(node, "net-a,net-b"))
    (net2,) = [r for r in node.records.load("c1") if r.ifname == "net2"]
    node.records.save(replace(net2, state="adding", result=None))
    restarted = DynamicNetworks(node.service.core, sandbox_exists=lambda p: True)
    outcome = await restarted.reconcile(node.cluster.pods[("default", "web")])
    assert outcome.added == ("net2",)
    assert node.runner.seen("DEL") == [("DEL", "net2")]
    assert [r.state for r in node.records.load("c1")] == ["added"] * 3


async def test_quick_edits_converge_to_the_last(node: Node, dynamic: DynamicNetworks) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    dynamic.observe("UPDATED", edited(node, "net-a,net-b"))
    dynamic.observe("UPDATED", edited(node, "net-c"))
    await dynamic.idle()
    assert [(r.ifname, r.network_name) for r in node.records.load("c1")] == [
        ("eth0", "cluster"),
        ("net1", "default/net-c"),
    ]
    assert ("ADD", "net2") not in node.runner.seen("ADD")  # net-b never attached


async def test_delegate_hotplugs_are_not_touched(node: Node, dynamic: DynamicNetworks) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    await node.delegate("ADD", "c1", "hp0", plugin_conf("hotplugged"))
    await dynamic.reconcile(edited(node, ""))
    assert ifnames(node) == ["eth0", "hp0"]
    assert node.runner.seen("DEL") == [("DEL", "net1")]


async def test_interface_name_in_use_is_refused_before_any_plugin_runs(node: Node, dynamic: DynamicNetworks) -> None:
    """A rollback of the failed ADD would DEL that name: the pod's own eth0."""
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    calls = len(node.runner.calls)
    outcome = await dynamic.reconcile(edited(node, "net-a,net-b@eth0,net-c@net1"))
    assert outcome.result == "failed" and len(outcome.errors) == 2
    assert all("duplicate interface name" in e for e in outcome.errors)
    assert len(node.runner.calls) == calls  # no ADD, no rollback DEL
    assert ifnames(node) == ["eth0", "net1"]


async def test_a_new_snapshot_forgets_pods_deleted_meanwhile(node: Node, dynamic: DynamicNetworks) -> None:
    node.cluster.add_pod("web", "net-a")
    node.cluster.add_pod("old", "net-a")
    dynamic.observe("SNAPSHOT", node.cluster.pods[("default", "web")])
    dynamic.observe("SNAPSHOT", node.cluster.pods[("default", "old")])
    dynamic.observe("SYNCED", PodView("", ""))
    await dynamic.idle()
    assert set(dynamic._latest) == {("default", "web"), ("default", "old")}
    dynamic._snapshot = set()  # the stream reopened (follow() does this)
    dynamic.observe("SNAPSHOT", node.cluster.pods[("default", "web")])
    dynamic.observe("SYNCED", PodView("", ""))
    await dynamic.idle()
    assert set(dynamic._latest) == {("default", "web")}
