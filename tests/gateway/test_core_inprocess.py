"""The gateway's CNI logic in-process (tests/gateway/fakes.py): ADD rollback
orderings, DEL continuing past failures, CHECK/STATUS/GC skipping plugins,
hot-plug, network-status write failures and pods that are gone. No root,
no namespaces, no service processes: the whole module runs in about a second.
The same paths with real plugins in real namespaces are in test_cni_paths.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.common import cni, errors
from services.common.errors import PeerUnavailable, PodGone
from tests.gateway.fakes import Node, make_node, plugin_conf

FAIL_ADD = {"ADD": {"code": 7, "msg": "refused by request"}}
FAIL_DEL = {"DEL": {"code": 5, "msg": "link not found"}}


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = make_node(tmp_path)
    node.cluster.add_nad("net-a", plugin_conf("net-a"))
    node.cluster.add_nad("net-b", plugin_conf("net-b"))
    node.cluster.add_nad("net-fail", plugin_conf("net-fail", failOn=FAIL_ADD))
    node.cluster.add_nad("net-del-fails", plugin_conf("net-del-fails", failOn=FAIL_DEL))
    return node


async def failing(coro: Any) -> cni.CniError:
    with pytest.raises(cni.CniError) as raised:
        await coro
    return raised.value


# --- ADD ---------------------------------------------------------------------------
async def test_add_attaches_in_order_and_reports(node: Node) -> None:
    node.cluster.add_pod("web", "net-a, net-b@data0")
    result = await node.cni("ADD")
    assert node.runner.seen("ADD") == [("ADD", "eth0"), ("ADD", "net1"), ("ADD", "data0")]
    assert result is not None and result["ips"][0]["address"] == "10.0.1.2/24"  # the cluster network's
    ((pod, entries),) = node.cluster.statuses
    assert pod == "default/web"
    assert [(e["name"], e["interface"], e.get("default", False)) for e in entries] == [
        ("cluster", "eth0", True),
        ("default/net-a", "net1", False),
        ("default/net-b", "data0", False),
    ]
    await node.service.drain_background()
    assert [e[1] for e in node.cluster.events] == ["AddedInterface"] * 3
    assert [r.state for r in node.records.load("c1")] == ["added"] * 3


async def test_nads_that_came_with_the_pod_are_not_asked_for_again(node: Node) -> None:
    node.cluster.prefetch = True
    node.cluster.add_pod("web", "net-a, net-b@data0")
    await node.cni("ADD")
    assert node.runner.seen("ADD") == [("ADD", "eth0"), ("ADD", "net1"), ("ADD", "data0")]
    assert node.cluster.nad_lookups == []
    # One the cache does not hold is asked for alone, and an unknown one is still code 7.
    node.cluster.add_pod("db", "net-a, ghost")
    err = await failing(node.cni("ADD", "c2", "db"))
    assert err.code == cni.INVALID_CONFIG and "(ghost) in namespace (default)" in err.msg
    assert node.cluster.nad_lookups == [("default", "ghost")]


async def test_add_failure_rolls_back_from_the_failing_delegate_to_the_first(node: Node) -> None:
    node.cluster.add_pod("web", "net-a, net-fail, net-b")
    err = await failing(node.cni("ADD"))
    assert err.code == 7 and "net-fail" in err.msg  # the delegate's own code
    assert node.runner.seen("ADD", "DEL") == [
        ("ADD", "eth0"),
        ("ADD", "net1"),
        ("ADD", "net2"),
        ("DEL", "net2"),  # the failing one may have allocated IPAM before failing
        ("DEL", "net1"),
        ("DEL", "eth0"),
    ]
    assert node.records.load("c1") == []
    assert node.cluster.statuses == []


async def test_add_and_del_each_run_every_delegate_in_one_executor_round_trip(node: Node) -> None:
    node.cluster.add_pod("web", "net-a, net-b@data0")
    await node.cni("ADD")
    await node.cni("DEL")
    assert node.runner.batches == [
        [("ADD", "eth0"), ("ADD", "net1"), ("ADD", "data0")],
        [("DEL", "data0"), ("DEL", "net1"), ("DEL", "eth0")],
    ]
    assert node.records.load("c1") == []


async def test_a_failed_batch_stops_and_rolls_back_in_one_round_trip(node: Node) -> None:
    node.cluster.add_pod("web", "net-a, net-fail, net-b")
    await failing(node.cni("ADD"))
    assert node.runner.batches == [
        [("ADD", "eth0"), ("ADD", "net1"), ("ADD", "net2"), ("ADD", "net3")],  # net3 never ran
        [("DEL", "net2"), ("DEL", "net1"), ("DEL", "eth0")],
    ]


async def test_an_unreadable_result_rolls_back_what_ran_after_it_too(node: Node) -> None:
    """In one round trip the delegates after it already ran: they are undone with the rest."""
    node.cluster.add_nad("net-garbage", plugin_conf("net-garbage"))
    node.cluster.add_pod("web", "net-garbage, net-a")
    real_run = node.runner.run

    async def garbled(plugin: str, command: str, target: Any, stdin: bytes) -> bytes:
        out = await real_run(plugin, command, target, stdin)
        return b"not json" if command == "ADD" and target.ifname == "net1" else out

    node.runner.run = garbled  # type: ignore[method-assign]
    err = await failing(node.cni("ADD"))
    assert err.code == cni.DECODE_FAILURE and "net-garbage" in err.msg
    assert node.runner.seen("DEL") == [("DEL", "net2"), ("DEL", "net1"), ("DEL", "eth0")]
    assert node.records.load("c1") == []


async def test_executor_lost_during_the_batch_undoes_every_delegate(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    node.runner.crash_with = PeerUnavailable("executor lost during 2 delegate calls", "UNAVAILABLE")
    err = await failing(node.cni("ADD"))
    assert err.code == cni.TRY_AGAIN_LATER
    # the rollback was tried for both (the executor is still gone), and the records dropped
    assert node.runner.batches[-1] == [("DEL", "net1"), ("DEL", "eth0")]
    assert node.records.load("c1") == []


async def test_a_chained_network_runs_plugin_by_plugin(tmp_path: Path) -> None:
    """A conflist's second plugin needs the first one's result (prevResult): no batch."""
    conflist = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "first"}, {"type": "second"}]}
    node = make_node(tmp_path, conflist)
    node.cluster.add_pod("web")
    await node.cni("ADD")
    assert node.runner.batches == []
    second = next(c for c in node.runner.calls if c.plugin == "second")
    assert second.stdin["prevResult"]["ips"]  # the first plugin's result


async def test_add_rollback_goes_on_past_a_failing_del(node: Node) -> None:
    """The attached network whose rollback DEL failed keeps its record: the runtime's
    DEL after the failed ADD retries exactly that one (and only it)."""
    node.cluster.add_pod("web", "net-del-fails, net-fail")
    err = await failing(node.cni("ADD"))
    assert err.code == 7  # the ADD failure, not the rollback's
    assert node.runner.seen("DEL") == [("DEL", "net2"), ("DEL", "net1"), ("DEL", "eth0")]
    assert [r.ifname for r in node.records.load("c1")] == ["net1"]
    node.runner.calls.clear()
    assert (await failing(node.cni("DEL"))).code == 5
    assert node.runner.seen() == [("DEL", "net1")]


async def test_status_write_failure_rolls_back_everything(node: Node) -> None:
    """A failed write whose text happens to say "not found" is still a failure
    (it used to be taken for a gone pod by matching the message)."""
    node.cluster.add_pod("web", "net-a")
    node.cluster.status_error = PeerUnavailable("cache unavailable", "UNAVAILABLE: pods/status endpoint not found")
    err = await failing(node.cni("ADD"))
    assert err.code == cni.TRY_AGAIN_LATER and err.msg == "error setting the networks status"
    assert node.runner.seen("DEL") == [("DEL", "net1"), ("DEL", "eth0")]
    assert node.records.load("c1") == []


async def test_status_write_for_a_gone_pod_keeps_the_attachments(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    node.cluster.status_error = PodGone("pod default/web is gone")
    assert await node.cni("ADD") is not None
    assert node.runner.seen("DEL") == []
    assert len(node.records.load("c1")) == 2


async def test_system_namespace_pods_get_no_status(node: Node) -> None:
    node.cluster.add_pod("dns", namespace="kube-system")
    await node.cni("ADD", pod="dns", namespace="kube-system")
    assert node.cluster.statuses == []


async def test_unknown_pod_is_try_again_later_and_runs_nothing(node: Node) -> None:
    err = await failing(node.cni("ADD", pod="ghost"))
    assert err.code == cni.TRY_AGAIN_LATER
    assert node.runner.calls == []


async def test_pod_of_another_incarnation_is_try_again_later(node: Node) -> None:
    node.cluster.add_pod("web")
    request = node.request("ADD")
    env = {**request.env, "CNI_ARGS": request.env["CNI_ARGS"].replace("K8S_POD_UID=uid-1", "K8S_POD_UID=uid-2")}
    err = await failing(node.dispatcher.cni(type(request)(env, request.config)))
    assert err.code == cni.TRY_AGAIN_LATER and "UID" in err.msg
    assert node.runner.calls == []


async def test_missing_nad_is_code_7_with_a_no_network_found_event(node: Node) -> None:
    node.cluster.add_pod("web", "net-a, ghost")
    err = await failing(node.cni("ADD"))
    assert err.code == cni.INVALID_CONFIG and "(ghost) in namespace (default)" in err.msg
    await node.service.drain_background()
    assert [(e[1]) for e in node.cluster.events] == ["NoNetworkFound"]
    assert node.runner.calls == []


async def test_a_nad_with_a_broken_config_is_not_reported_missing(node: Node) -> None:
    """Upstream emits NoNetworkFound only when the NAD cannot be fetched; a NAD
    whose config does not parse used to be reported as missing as well."""
    node.cluster.add_nad("broken", "{not json")
    node.cluster.add_pod("web", "broken")
    err = await failing(node.cni("ADD"))
    assert err.code == cni.INVALID_CONFIG and "cannot find" not in err.msg
    await node.service.drain_background()
    assert node.cluster.events == []


async def test_repeated_add_first_undoes_the_earlier_attachments(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    node.runner.calls.clear()
    await node.cni("ADD")
    assert node.runner.seen("ADD", "DEL") == [("DEL", "net1"), ("DEL", "eth0"), ("ADD", "eth0"), ("ADD", "net1")]


async def test_readiness_file_missing(node: Node, tmp_path: Path) -> None:
    config = {"cniVersion": "1.0.0", "name": "multus", "readinessindicatorfile": str(tmp_path / "absent")}
    node.cluster.add_pod("web")
    assert (await failing(node.cni("ADD", config=config))).code == cni.TRY_AGAIN_LATER
    assert (await failing(node.cni("STATUS", config=config))).code == cni.PLUGIN_NOT_AVAILABLE
    assert node.runner.calls == []


async def test_an_unexpected_exception_is_999_and_logged_as_a_bug(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is never reported as a plugin's I/O failure (5, as before) or as transient (11)."""
    node.cluster.add_pod("web")
    node.runner.crash_with = KeyError("boom")
    # the error table's own logger, recorded: independent of how earlier tests set up logging
    logged: list[str] = []
    monkeypatch.setattr(errors, "log", SimpleNamespace(error=lambda event, **_: logged.append(event)))
    err = await failing(node.cni("ADD"))
    assert err.code == cni.INTERNAL and "KeyError" in err.details
    assert any("this is a bug" in event for event in logged)


async def test_an_os_error_is_an_io_failure(node: Node) -> None:
    node.cluster.add_pod("web")
    node.runner.crash_with = PermissionError(13, "Permission denied")
    assert (await failing(node.cni("ADD"))).code == cni.IO_FAILURE


# --- DEL ---------------------------------------------------------------------------
async def test_del_continues_past_failures_and_keeps_only_the_failed_record(node: Node) -> None:
    """The retry of a failed DEL runs the failed delegate again from its record; it
    used to find no record and resolve every network of the pod from the cluster."""
    node.cluster.add_pod("web", "net-a, net-del-fails, net-b")
    await node.cni("ADD")
    node.runner.calls.clear()
    err = await failing(node.cni("DEL"))
    assert err.code == 5 and "link not found" in err.msg
    assert node.runner.seen() == [("DEL", "net3"), ("DEL", "net2"), ("DEL", "net1"), ("DEL", "eth0")]
    assert [r.ifname for r in node.records.load("c1")] == ["net2"]
    node.runner.calls.clear()
    await failing(node.cni("DEL"))  # an attached network that cannot be deleted: still the runtime's to retry
    assert node.runner.seen() == [("DEL", "net2")]


async def test_del_without_records_or_pod_is_a_no_op(node: Node) -> None:
    assert await node.cni("DEL", container_id="never-added", pod="ghost") is None
    assert node.runner.calls == []


async def test_del_without_records_resolves_the_pods_networks(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("DEL", container_id="c9")
    assert node.runner.seen() == [("DEL", "net1"), ("DEL", "eth0")]


async def test_del_with_an_unusable_config_still_uses_the_records(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    node.runner.calls.clear()
    await node.cni("DEL", config={"cniVersion": "1.0.0", "name": "multus", "namespaceIsolation": "yes"})
    assert node.runner.seen() == [("DEL", "net1"), ("DEL", "eth0")]


# --- CHECK, STATUS, GC -----------------------------------------------------------------
async def test_check_skips_networks_older_than_check(node: Node) -> None:
    node.cluster.add_nad("old", plugin_conf("old", cni_version="0.3.1"))
    node.cluster.add_pod("web", "old, net-a")
    await node.cni("ADD")
    await node.cni("CHECK")
    assert node.runner.seen("CHECK") == [("CHECK", "eth0"), ("CHECK", "net2")]


async def test_check_of_an_unknown_or_unfinished_container_is_code_3(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    assert (await failing(node.cni("CHECK", container_id="unknown"))).code == cni.UNKNOWN_CONTAINER
    await node.cni("ADD")
    cluster_record, secondary = node.records.load("c1")
    node.records.save(replace(secondary, state="adding"))
    assert cluster_record.state == "added"
    assert (await failing(node.cni("CHECK"))).code == cni.UNKNOWN_CONTAINER


async def test_check_failure_names_the_network(node: Node) -> None:
    node.cluster.add_nad("sick", plugin_conf("sick", failOn={"CHECK": {"code": 4, "msg": "gone"}}))
    node.cluster.add_pod("web", "sick")
    await node.cni("ADD")
    err = await failing(node.cni("CHECK"))
    assert err.code == 4 and "'default/sick' (net1)" in err.msg


async def test_status_asks_only_plugins_that_speak_cni_1_1(tmp_path: Path) -> None:
    old = make_node(tmp_path / "old")
    await old.cni("STATUS")
    assert old.runner.seen("STATUS") == []  # 1.0.0 config: not even asked for its versions
    new = make_node(tmp_path / "new", plugin_conf("cluster", "1.1.0", speaks=["1.0.0", "1.1.0"]))
    await new.cni("STATUS", config={"cniVersion": "1.1.0", "name": "multus"})
    assert new.runner.seen("VERSION", "STATUS") == [("VERSION", ""), ("STATUS", "")]
    refusing = make_node(tmp_path / "refusing", plugin_conf("cluster", "1.1.0", speaks=["1.0.0"]))
    await refusing.cni("STATUS", config={"cniVersion": "1.1.0", "name": "multus"})
    assert refusing.runner.seen("STATUS") == []


async def test_gc_deletes_stale_containers_and_tells_plugins_what_is_valid(tmp_path: Path) -> None:
    node = make_node(tmp_path, plugin_conf("cluster", "1.1.0", speaks=["1.1.0"]))
    node.cluster.add_pod("web")
    await node.cni("ADD", container_id="keep")
    await node.cni("ADD", container_id="stale")
    node.runner.calls.clear()
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    config = {"cniVersion": "1.1.0", "name": "multus", "cni.dev/valid-attachments": valid}
    await node.cni("GC", config=config)
    assert [(c.command, c.container_id) for c in node.runner.calls if c.command != "VERSION"] == [
        ("DEL", "stale"),
        ("GC", ""),
    ]
    assert node.runner.calls[-1].stdin["cni.dev/valid-attachments"] == valid
    assert node.records.container_ids() == ["keep"]


async def test_gc_needs_valid_attachments(node: Node) -> None:
    assert (await failing(node.cni("GC"))).code == cni.INVALID_CONFIG


# --- hot-plug (POST /delegate) --------------------------------------------------------
async def test_hotplug_add_check_del(node: Node) -> None:
    node.cluster.add_pod("web", "net-a")
    await node.cni("ADD")
    extra = plugin_conf("extra")
    result = await node.delegate("ADD", "c1", "hot0", extra)
    assert result["interfaces"][0]["name"] == "hot0"
    assert [(r.ifname, r.index, r.hotplug) for r in node.records.load("c1")] == [
        ("eth0", 0, False),
        ("net1", 1, False),
        ("hot0", 2, True),
    ]
    dup = await failing(node.delegate("ADD", "c1", "hot0", extra))
    assert dup.code == cni.INVALID_CONFIG
    node.runner.calls.clear()
    await node.delegate("CHECK", "c1", "hot0", extra)
    await node.delegate("DEL", "c1", "hot0", extra)
    assert node.runner.seen() == [("CHECK", "hot0"), ("DEL", "hot0")]
    assert [r.ifname for r in node.records.load("c1")] == ["eth0", "net1"]


async def test_hotplug_add_failure_rolls_back_that_interface_only(node: Node) -> None:
    node.cluster.add_pod("web")
    await node.cni("ADD")
    node.runner.calls.clear()
    err = await failing(node.delegate("ADD", "c1", "hot0", plugin_conf("bad", failOn=FAIL_ADD)))
    assert err.code == 7 and "'hot0'" in err.msg
    assert node.runner.seen() == [("ADD", "hot0"), ("DEL", "hot0")]
    assert [r.ifname for r in node.records.load("c1")] == ["eth0"]


async def test_hotplug_of_an_unrecorded_interface_uses_the_given_config(node: Node) -> None:
    await node.delegate("DEL", "c1", "hot9", plugin_conf("other"))
    assert [(c.command, c.ifname, c.network) for c in node.runner.calls] == [("DEL", "hot9", "other")]
