"""ExecPlugins: several delegate calls in one round trip, in order, each
checked, bounded and answered as ExecPlugin answers it, stopping after the
first failure only when asked (the gateway's ADD), never otherwise (its DEL)."""

from __future__ import annotations

import json
from typing import Any

import grpc

from services.api import executor_pb2
from tests.executor.conftest import GATEWAY, Executor
from tests.support.plugins import recorded_calls


def call(executor: Executor, command: str, ifname: str, **keys: Any) -> executor_pb2.ExecPluginRequest:
    conf = executor.recorder_conf(**keys)
    return executor_pb2.ExecPluginRequest(
        plugin="recorder",
        command=command,
        container_id="c1",
        netns="" if command == "DEL" else "/proc/self/ns/net",
        ifname=ifname,
        config=json.dumps(conf).encode(),
    )


def batch(executor: Executor, calls: list[Any], stop: bool, metadata: Any = GATEWAY) -> Any:
    request = executor_pb2.ExecPluginsRequest(calls=calls, stop_at_failure=stop)
    return executor.stub().ExecPlugins(request, timeout=20, metadata=metadata)


def test_calls_run_in_order_and_stop_after_the_first_failure(executor: Executor) -> None:
    calls = [
        call(executor, "DEL", "net1"),
        call(executor, "DEL", "net2", failOn={"DEL": {"code": 7, "msg": "refused"}}),
        call(executor, "DEL", "net3"),
    ]
    answer = batch(executor, calls, stop=True)
    assert [(r.refused_code, r.response.error.code) for r in answer.results] == [(0, 0), (0, 7)]
    assert [c["env"]["CNI_IFNAME"] for c in recorded_calls(executor.record_dir)] == ["net1", "net2"]


def test_without_stopping_every_call_runs_past_failures(executor: Executor) -> None:
    calls = [
        call(executor, "DEL", "net3", exitOn={"DEL": 3}),
        executor_pb2.ExecPluginRequest(plugin="../evil", command="DEL", container_id="c1", ifname="net2"),
        call(executor, "DEL", "net1"),
    ]
    answer = batch(executor, calls, stop=False)
    first, refused, last = answer.results
    assert first.response.exit_code == 3 and not first.refused_code
    # what ExecPlugin would have answered with INVALID_ARGUMENT, in the result
    assert refused.refused_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and refused.refused_message
    assert last.response.exit_code == 0 and not last.response.error.code
    assert [c["env"]["CNI_IFNAME"] for c in recorded_calls(executor.record_dir)] == ["net3", "net1"]


def test_the_operator_guard_applies_to_each_call(executor: Executor) -> None:
    answer = batch(executor, [call(executor, "DEL", "net1"), call(executor, "DEL", "net2")], stop=True, metadata=())
    (only,) = answer.results
    assert only.refused_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert recorded_calls(executor.record_dir) == []
