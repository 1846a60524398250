"""The gateway's ExecutorClient against real executor processes: spreading calls,
riding out a restart, retrying a DEL whose executor was killed mid-call, and
turning an ADD in flight into CNI code 11."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.api import executor_pb2
from services.common.cni import CniError
from services.common.config import load_config
from services.gateway.executor_client import ExecutorClient, executor_sockets
from tests.executor.conftest import launch_executor, make_executor_instance, process_alive, wait_until
from tests.support.netns import netns
from tests.support.plugins import recorded_calls
from tests.support.services import Instance, ServiceProcess


@dataclass
class Pair:
    instance: Instance
    sockets: list[str]
    processes: list[ServiceProcess]
    record_dir: Path

    def conf(self, **keys: object) -> bytes:
        return json.dumps({"cniVersion": "1.0.0", "recordDir": str(self.record_dir), **keys}).encode()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    inst, _, record_dir = make_executor_instance(tmp_path)
    sockets = [inst.grpc_socket("executor"), str(inst.run_dir / "grpc" / "executor-2.sock")]
    procs: list[ServiceProcess] = []
    try:
        procs.append(launch_executor(inst))
        procs.append(launch_executor(inst, socket=sockets[1]))
        yield Pair(inst, sockets, procs, record_dir)
    finally:
        for proc in procs:
            proc.stop()


def exec_request(command: str, conf: bytes, netns_path: str = "") -> executor_pb2.ExecPluginRequest:
    return executor_pb2.ExecPluginRequest(
        plugin="recorder", command=command, container_id="c1", netns=netns_path, ifname="net1", config=conf
    )


def test_default_sockets_come_from_the_config(tmp_path: Path) -> None:
    inst, _, _ = make_executor_instance(tmp_path)
    assert executor_sockets(load_config(inst.config_path)) == (inst.grpc_socket("executor"),)
    inst.config["executorSockets"] = ["/a.sock", "/b.sock"]
    inst.write_config()
    assert executor_sockets(load_config(inst.config_path)) == ("/a.sock", "/b.sock")


async def test_calls_are_spread_over_the_executors(pair: Pair) -> None:
    client = ExecutorClient(pair.sockets)
    try:
        # Calls prefer connected executors: let both connect first.
        for _ in range(200):
            if client.ready_executors() == 2:
                break
            await asyncio.sleep(0.01)
        assert client.ready_executors() == 2
        conf = pair.conf(sleep={"DEL": 0.3})
        await asyncio.gather(*(client.exec_plugin(exec_request("DEL", conf), timeout=10) for _ in range(4)))
    finally:
        await client.close()
    calls = recorded_calls(pair.record_dir)
    assert len(calls) == 4
    # Each plugin reported its pid while running; its parent is the executor that ran it.
    parents = {c["ppid"] for c in calls}
    assert parents == {p.proc.pid for p in pair.processes}


async def test_del_in_flight_is_retried_on_the_other_executor_when_its_executor_is_killed(pair: Pair) -> None:
    client = ExecutorClient(pair.sockets)
    try:
        call = asyncio.create_task(client.exec_plugin(exec_request("DEL", pair.conf(sleep={"DEL": 1.0})), timeout=15))
        assert await asyncio.to_thread(wait_until, lambda: len(recorded_calls(pair.record_dir)) == 1, 10)
        first = recorded_calls(pair.record_dir)[0]
        victim = [p.proc.pid for p in pair.processes].index(first["ppid"])
        os.kill(pair.processes[victim].proc.pid, signal.SIGKILL)
        response = await call
    finally:
        await client.close()
    assert response.exit_code == 0 and not response.HasField("error")
    calls = recorded_calls(pair.record_dir)
    assert [c["command"] for c in calls] == ["DEL", "DEL"]
    assert calls[1]["ppid"] == pair.processes[1 - victim].proc.pid
    # The orphaned plugin got its parent-death signal instead of running on.
    assert await asyncio.to_thread(wait_until, lambda: not process_alive(first["pid"]), 5)


async def test_add_in_flight_when_its_executor_dies_fails_with_code_11(pair: Pair) -> None:
    client = ExecutorClient(pair.sockets)
    try:
        with netns("exk") as ns:
            req = exec_request("ADD", pair.conf(sleep={"ADD": 5}), ns.path)
            call = asyncio.create_task(client.exec_plugin(req, timeout=15))
            assert await asyncio.to_thread(wait_until, lambda: len(recorded_calls(pair.record_dir)) == 1, 10)
            first = recorded_calls(pair.record_dir)[0]
            started = time.monotonic()
            os.kill(first["ppid"], signal.SIGKILL)
            with pytest.raises(CniError) as caught:
                await call
            assert caught.value.code == 11
            assert time.monotonic() - started < 3
    finally:
        await client.close()
    assert len(recorded_calls(pair.record_dir)) == 1, "an ADD must never be repeated by the client"
    assert await asyncio.to_thread(wait_until, lambda: not process_alive(first["pid"]), 5)


async def test_a_restarting_executor_is_waited_for_within_the_deadline(tmp_path: Path) -> None:
    inst, _, record_dir = make_executor_instance(tmp_path)
    first = launch_executor(inst)
    client = ExecutorClient([inst.grpc_socket("executor")])
    second: ServiceProcess | None = None
    try:
        conf = json.dumps({"cniVersion": "1.0.0", "recordDir": str(record_dir)}).encode()
        await client.exec_plugin(exec_request("DEL", conf), timeout=10)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        call = asyncio.create_task(client.exec_plugin(exec_request("DEL", conf), timeout=15))
        await asyncio.sleep(0.5)
        assert not call.done()
        second = await asyncio.to_thread(launch_executor, inst)
        response = await call
        assert response.exit_code == 0
        assert len(recorded_calls(record_dir)) == 2
    finally:
        await client.close()
        first.stop()
        if second is not None:
            second.stop()


async def test_no_executor_within_the_deadline_is_code_11(tmp_path: Path) -> None:
    client = ExecutorClient([str(tmp_path / "nobody.sock"), str(tmp_path / "nobody-2.sock")])
    try:
        started = time.monotonic()
        with pytest.raises(CniError) as caught:
            await client.exec_plugin(exec_request("DEL", b"{}"), timeout=0.5)
        assert caught.value.code == 11
        assert 0.4 < time.monotonic() - started < 2
        with pytest.raises(CniError) as caught:
            await client.list_interfaces("/var/run/netns/x", timeout=0.3)
        assert caught.value.code == 11
    finally:
        await client.close()


async def test_request_errors_and_plugin_errors(pair: Pair) -> None:
    client = ExecutorClient(pair.sockets[:1])
    try:
        for plugin in ("../recorder", "missing-plugin"):
            req = executor_pb2.ExecPluginRequest(plugin=plugin, command="DEL", config=b"{}")
            with pytest.raises(CniError) as caught:
                await client.exec_plugin(req, timeout=5)
            assert caught.value.code == 7, plugin
        failing = pair.conf(failOn={"DEL": {"code": 118, "msg": "nope", "details": "why"}})
        response = await client.exec_plugin(exec_request("DEL", failing), timeout=5)
        assert (response.error.code, response.error.msg, response.error.details) == (118, "nope", "why")
        with netns("exl") as ns:
            listed = await client.list_interfaces(ns.path, timeout=5)
            assert [i.name for i in listed.interfaces] == ["lo"]
            deleted = await client.delete_interface(ns.path, "nothere0", timeout=5)
            assert not deleted.deleted  # the gateway's marker passes the operator guard
    finally:
        await client.close()
