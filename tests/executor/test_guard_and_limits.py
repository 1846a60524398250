"""The operator guard, the concurrency limit with its queue, and the metrics
scraped from the executor's metrics port."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest

from services.api import executor_pb2, executor_pb2_grpc
from tests.executor.conftest import GATEWAY, Executor, launch_executor, make_executor_instance, wait_until
from tests.support.netns import netns
from tests.support.plugins import recorded_calls
from tests.support.services import ServiceProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


# --- operator guard ---------------------------------------------------------------


def test_operators_cannot_run_delegates_by_default(executor: Executor) -> None:
    conf = executor.recorder_conf()
    for metadata in ((), (("x-multus-caller", "operator"),)):
        with pytest.raises(grpc.RpcError) as caught:
            executor.exec(plugin="recorder", command="DEL", config=conf, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "executorAllowOperatorExec" in (caught.value.details() or "")
    assert recorded_calls(executor.record_dir) == []
    # VERSION has no side effects; inspecting a namespace is read-only.
    version = executor.exec(plugin="recorder", command="VERSION", config=conf, metadata=())
    assert json.loads(version.stdout)["supportedVersions"]
    with netns("exg") as ns:
        listed = executor.stub().ListInterfaces(executor_pb2.ListInterfacesRequest(netns=ns.path), timeout=5)
        assert [i.name for i in listed.interfaces] == ["lo"]
        with pytest.raises(grpc.RpcError) as caught:
            executor.stub().DeleteInterface(
                executor_pb2.DeleteInterfaceRequest(netns=ns.path, ifname="eth0"), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_operator_exec_when_enabled(tmp_path: Path) -> None:
    inst, _, record_dir = make_executor_instance(tmp_path, executorAllowOperatorExec=True)
    proc = launch_executor(inst)
    try:
        conf = {"cniVersion": "1.0.0", "recordDir": str(record_dir)}
        with grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}") as channel:
            stub = executor_pb2_grpc.ExecutorStub(channel)
            req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=json.dumps(conf).encode())
            assert stub.ExecPlugin(req, timeout=10).exit_code == 0
        assert [c["command"] for c in recorded_calls(record_dir)] == ["DEL"]
    finally:
        proc.stop()


# --- DeleteInterface ----------------------------------------------------------------


def test_delete_interface_removes_a_link_and_tolerates_a_missing_one(executor: Executor) -> None:
    from tests.support.netns import ip

    with netns("exd") as ns:
        ip("link", "add", "gc0", "type", "veth", "peer", "name", "gc1", netns=ns.name)
        stub = executor.stub()
        req = executor_pb2.DeleteInterfaceRequest(netns=ns.path, ifname="gc0")
        assert stub.DeleteInterface(req, timeout=5, metadata=GATEWAY).deleted
        assert set(ns.links()) == {"lo"}
        assert not stub.DeleteInterface(req, timeout=5, metadata=GATEWAY).deleted
        for bad in ("lo", "", "a/b", "x" * 16):
            with pytest.raises(grpc.RpcError) as caught:
                stub.DeleteInterface(
                    executor_pb2.DeleteInterfaceRequest(netns=ns.path, ifname=bad), timeout=5, metadata=GATEWAY
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeleteInterface(
            executor_pb2.DeleteInterfaceRequest(netns=ns.path, ifname="gc0"), timeout=5, metadata=GATEWAY
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the namespace is gone


# --- concurrency limit and metrics ---------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str, Path, int]]:
    port = free_port()
    inst, _, record_dir = make_executor_instance(tmp_path, executorMaxConcurrency=1)
    proc = launch_executor(inst, "--metrics-port", str(port))
    try:
        yield proc, inst.grpc_socket("executor"), record_dir, port
    finally:
        proc.stop()


def test_excess_calls_queue_and_the_wait_is_measured(limited: tuple[ServiceProcess, str, Path, int]) -> None:
    _, sock, record_dir, port = limited
    conf = json.dumps({"cniVersion": "1.0.0", "recordDir": str(record_dir), "sleep": {"DEL": 0.6}}).encode()
    req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=conf)
    with grpc.insecure_channel(f"unix://{sock}") as channel:
        stub = executor_pb2_grpc.ExecutorStub(channel)
        first = stub.ExecPlugin.future(req, timeout=10, metadata=GATEWAY)
        assert wait_until(lambda: len(recorded_calls(record_dir)) == 1)
        second = stub.ExecPlugin.future(req, timeout=10, metadata=GATEWAY)
        assert wait_until(lambda: scrape(port).get("multus_executor_delegates_queued") == 1.0)
        in_flight = scrape(port)["multus_executor_delegates_in_flight"]
        # A call whose deadline passes while it waits in the queue never runs.
        with pytest.raises(grpc.RpcError) as caught:
            stub.ExecPlugin(req, timeout=0.2, metadata=GATEWAY)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert first.result().exit_code == 0 and second.result().exit_code == 0
    assert in_flight == 1.0
    calls = recorded_calls(record_dir)
    assert len(calls) == 2
    assert calls[1]["time"] - calls[0]["time"] >= 0.5, "the second call did not wait for the first"
    samples = scrape(port)
    assert samples["multus_executor_queue_wait_seconds_count"] == 2
    assert samples['multus_executor_queue_wait_seconds_bucket{le="0.1"}'] == 1  # the first started at once
    assert samples["multus_executor_queue_wait_seconds_sum"] >= 0.3
    key = 'multus_delegate_exec_duration_seconds_count{command="DEL",plugin="recorder",result="success"}'
    assert samples[key] == 2
    assert samples['multus_executor_rejected_total{reason="deadline_exceeded"}'] == 1
    assert samples["multus_executor_delegates_in_flight"] == 0


def test_metrics_label_timeouts_plugin_errors_and_rejections(limited: tuple[ServiceProcess, str, Path, int]) -> None:
    _, sock, record_dir, port = limited
    base = {"cniVersion": "1.0.0", "recordDir": str(record_dir)}
    with netns("exm") as ns, grpc.insecure_channel(f"unix://{sock}") as channel:
        stub = executor_pb2_grpc.ExecutorStub(channel)

        def check(conf: Mapping[str, object], timeout: float, netns_path: str) -> grpc.StatusCode:
            req = executor_pb2.ExecPluginRequest(
                plugin="recorder", command="CHECK", netns=netns_path, ifname="net1", config=json.dumps(conf).encode()
            )
            try:
                stub.ExecPlugin(req, timeout=timeout, metadata=GATEWAY)
            except grpc.RpcError as err:
                return err.code()  # type: ignore[no-any-return]
            return grpc.StatusCode.OK

        started = time.monotonic()
        assert check({**base, "sleep": {"CHECK": 5}}, 0.5, ns.path) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2
        assert check({**base, "failOn": {"CHECK": {"code": 3}}}, 5, ns.path) == grpc.StatusCode.OK
        assert check(base, 5, "") == grpc.StatusCode.INVALID_ARGUMENT  # CHECK needs a netns
        with pytest.raises(grpc.RpcError) as caught:
            stub.ExecPlugin(executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    samples = scrape(port)
    for result in ("timeout", "error"):
        key = f'multus_delegate_exec_duration_seconds_count{{command="CHECK",plugin="recorder",result="{result}"}}'
        assert samples[key] == 1, result
    assert samples['multus_executor_rejected_total{reason="invalid_argument"}'] == 1
    assert samples['multus_executor_rejected_total{reason="permission_denied"}'] == 1
    assert len(recorded_calls(record_dir)) == 2
