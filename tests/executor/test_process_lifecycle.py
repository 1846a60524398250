"""The plugin process's life under the executor: deadlines and cancellation kill
its whole process group, nothing it started survives, output is capped, stderr
reaches the logs redacted, and its environment is built, not inherited."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.api import executor_pb2, executor_pb2_grpc
from tests.executor.conftest import (
    GATEWAY,
    Executor,
    launch_executor,
    make_executor_instance,
    process_alive,
    process_group_members,
    wait_until,
)
from tests.support.netns import netns
from tests.support.plugins import recorded_calls


def children(record_dir: Path) -> list[dict[str, int]]:
    path = record_dir / "children.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_nothing_survives(record_dir: Path) -> None:
    calls = recorded_calls(record_dir)
    kids = children(record_dir)
    assert calls and kids, "the plugin never started its child: the test proves nothing"
    plugin_pid, child_pid = calls[-1]["pid"], kids[-1]["pid"]
    assert wait_until(lambda: not process_alive(child_pid) and not process_alive(plugin_pid), 5)
    assert process_group_members(plugin_pid) == []


def test_deadline_kills_the_plugin_and_every_child(executor: Executor) -> None:
    conf = executor.recorder_conf(sleep={"DEL": 30}, spawnChild={"DEL": 60})
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        executor.exec(plugin="recorder", command="DEL", container_id="c", ifname="net1", config=conf, timeout=1.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3
    assert_nothing_survives(executor.record_dir)


def test_executor_timeout_ceiling_applies_without_a_client_deadline(tmp_path: Path) -> None:
    inst, _, record_dir = make_executor_instance(tmp_path, executorTimeoutSeconds=1)
    proc = launch_executor(inst)
    try:
        conf = {"cniVersion": "1.0.0", "recordDir": str(record_dir), "sleep": {"DEL": 30}, "spawnChild": {"DEL": 60}}
        with grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}") as channel:
            stub = executor_pb2_grpc.ExecutorStub(channel)
            req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=json.dumps(conf).encode())
            with pytest.raises(grpc.RpcError) as caught:
                stub.ExecPlugin(req, metadata=GATEWAY)  # no deadline at all
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "killed after" in (caught.value.details() or "")
        assert_nothing_survives(record_dir)
    finally:
        proc.stop()


def test_client_cancellation_kills_the_plugin_group(executor: Executor) -> None:
    conf = executor.recorder_conf(sleep={"DEL": 30}, spawnChild={"DEL": 60})
    with grpc.insecure_channel(f"unix://{executor.socket}") as channel:
        stub = executor_pb2_grpc.ExecutorStub(channel)
        req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=json.dumps(conf).encode())
        future = stub.ExecPlugin.future(req, timeout=30, metadata=GATEWAY)
        assert wait_until(lambda: bool(children(executor.record_dir)), 10)
        future.cancel()
    assert_nothing_survives(executor.record_dir)


def test_children_left_behind_by_a_successful_plugin_are_killed_and_do_not_hold_the_call(executor: Executor) -> None:
    conf = executor.recorder_conf(spawnChild={"DEL": 60})
    started = time.monotonic()
    resp = executor.exec(plugin="recorder", command="DEL", container_id="c", config=conf, timeout=20)
    assert not resp.HasField("error") and resp.exit_code == 0
    assert time.monotonic() - started < 5, "a leftover child holding stdout stalled the call"
    assert_nothing_survives(executor.record_dir)


def test_output_over_the_cap_is_an_io_failure(executor: Executor) -> None:
    conf = executor.recorder_conf(hugeOutput=64 * 1024 * 1024, spawnChild={"DEL": 60})
    started = time.monotonic()
    resp = executor.exec(plugin="recorder", command="DEL", config=conf, timeout=20)
    assert resp.error.code == 5 and "more than 4194304 bytes" in resp.error.msg
    assert resp.stdout == b""
    assert time.monotonic() - started < 10
    assert_nothing_survives(executor.record_dir)


def test_output_under_the_cap_comes_back_whole(executor: Executor) -> None:
    conf = executor.recorder_conf(hugeOutput=3 * 1024 * 1024)
    resp = executor.exec(plugin="recorder", command="DEL", config=conf, timeout=20)
    assert not resp.HasField("error")
    assert resp.stdout == b"x" * (3 * 1024 * 1024)


def test_stderr_is_logged_redacted(executor: Executor) -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
    conf = executor.recorder_conf(stderr=f"calling API with token: {secret}", exitOn={"DEL": 2})
    resp = executor.exec(plugin="recorder", command="DEL", container_id="c", config=conf)
    assert resp.error.code == 5 and "calling API" in resp.error.msg
    assert secret not in resp.error.msg + resp.error.details
    assert wait_until(lambda: "calling API" in executor.process.log())
    log = executor.process.log()
    assert secret not in log and "[REDACTED]" in log


def test_the_environment_is_built_from_the_request_only(executor: Executor) -> None:
    conf = executor.recorder_conf(recordFullEnv=True)
    executor.exec(
        plugin="recorder",
        command="DEL",
        container_id="ctr-1",
        ifname="net7",
        args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p",
        config=conf,
    )
    env = recorded_calls(executor.record_dir)[-1]["env"]
    env.pop("LC_CTYPE", None)  # Python's own locale coercion (PEP 538) in the plugin
    assert env == {
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "ctr-1",
        "CNI_NETNS": "",
        "CNI_IFNAME": "net7",
        "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p",
        "CNI_PATH": str(executor.bin_dir),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    assert recorded_calls(executor.record_dir)[-1]["stdin"] == conf


def test_delegates_get_kubeconfig_once_the_certs_service_wrote_it(executor: Executor) -> None:
    conf = executor.recorder_conf()
    executor.exec(plugin="recorder", command="DEL", config=conf)
    assert "KUBECONFIG" not in recorded_calls(executor.record_dir)[-1]["env"]
    kubeconfig = Path(executor.instance.config["cniConfigDir"]) / "multus.d" / "multus.kubeconfig"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    try:
        executor.exec(plugin="recorder", command="DEL", config=conf)
        assert recorded_calls(executor.record_dir)[-1]["env"]["KUBECONFIG"] == str(kubeconfig)
    finally:
        kubeconfig.unlink()


def test_extra_env_is_limited_to_the_allowed_names(executor: Executor) -> None:
    conf = executor.recorder_conf()
    executor.exec(plugin="recorder", command="DEL", config=conf, extra_env={"KUBECONFIG": "/etc/k.conf"})
    assert recorded_calls(executor.record_dir)[-1]["env"]["KUBECONFIG"] == "/etc/k.conf"
    for name in ("LD_PRELOAD", "PATH", "CNI_COMMAND"):
        with pytest.raises(grpc.RpcError) as caught:
            executor.exec(plugin="recorder", command="DEL", config=conf, extra_env={name: "/tmp/x"})
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(recorded_calls(executor.record_dir)) == 1


@pytest.mark.parametrize("field", ["container_id", "ifname", "args"])
def test_nul_bytes_in_env_values_are_refused(executor: Executor, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        fields: dict[str, Any] = {field: "a\0b"}
        executor.exec(plugin="recorder", command="DEL", config=executor.recorder_conf(), **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert recorded_calls(executor.record_dir) == []


@pytest.mark.parametrize(
    ("container_id", "ifname"),
    [
        ("c1\r\nnet9", "net1"),  # would forge a line in host-local's lease file
        ("", "net1"),
        ("-c1", "net1"),
        ("c1", "net1\nX=1"),
        ("c1", ""),
        ("c1", "\u00e9" * 8),
    ],
)
def test_add_refuses_what_libcni_refuses(executor: Executor, container_id: str, ifname: str) -> None:
    with netns("exa") as ns:
        with pytest.raises(grpc.RpcError) as caught:
            executor.exec(
                plugin="recorder",
                command="ADD",
                container_id=container_id,
                ifname=ifname,
                netns=ns.path,
                config=executor.recorder_conf(),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert recorded_calls(executor.record_dir) == []
        # The same values with a valid runtime pass, and '=' and newlines in CNI_ARGS stay as given.
        args = "IgnoreUnknown=1;K8S_POD_NAME=a=b\nc"
        executor.exec(
            plugin="recorder",
            command="ADD",
            container_id="c1",
            ifname="net1",
            netns=ns.path,
            args=args,
            config=executor.recorder_conf(),
        )
        assert recorded_calls(executor.record_dir)[-1]["env"]["CNI_ARGS"] == args
    # DEL cleans up whatever was added before, as libcni: no ID or ifname rule.
    executor.exec(
        plugin="recorder", command="DEL", container_id=container_id, ifname=ifname, config=executor.recorder_conf()
    )
    assert recorded_calls(executor.record_dir)[-1]["env"]["CNI_CONTAINERID"] == container_id


def test_unknown_commands_are_refused(executor: Executor) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        executor.exec(plugin="recorder", command="ADD; rm -rf /", config=executor.recorder_conf())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_output_cap_is_configurable(tmp_path: Path) -> None:
    inst, _, record_dir = make_executor_instance(tmp_path, executorMaxOutputBytes=1024)
    proc = launch_executor(inst)
    try:
        with grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}") as channel:
            stub = executor_pb2_grpc.ExecutorStub(channel)
            for size, failed in ((1024, False), (1025, True)):
                conf = {"cniVersion": "1.0.0", "recordDir": str(record_dir), "hugeOutput": size}
                req = executor_pb2.ExecPluginRequest(plugin="recorder", command="DEL", config=json.dumps(conf).encode())
                resp = stub.ExecPlugin(req, timeout=10, metadata=GATEWAY)
                assert resp.HasField("error") is failed, size
    finally:
        proc.stop()
