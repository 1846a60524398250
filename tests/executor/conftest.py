"""A real executor process on a temporary socket, with a bin dir holding our
recorder test plugin next to the reference plugins, and gRPC helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.api import executor_pb2, executor_pb2_grpc
from services.common.callers import CALLER_METADATA_KEY, GATEWAY_CALLER
from tests.support.plugins import make_bin_dir
from tests.support.procs import processes
from tests.support.services import Instance, ServiceProcess, make_instance, start_service, wait_serving

GATEWAY = ((CALLER_METADATA_KEY, GATEWAY_CALLER),)


@dataclass
class Executor:
    instance: Instance
    process: ServiceProcess
    socket: str
    bin_dir: Path
    record_dir: Path

    def stub(self) -> executor_pb2_grpc.ExecutorStub:
        channel = grpc.insecure_channel(f"unix://{self.socket}")
        return executor_pb2_grpc.ExecutorStub(channel)

    def exec(self, timeout: float = 10.0, metadata: Any = GATEWAY, **fields: Any) -> executor_pb2.ExecPluginResponse:
        if isinstance(fields.get("config"), dict):
            fields["config"] = json.dumps(fields["config"]).encode()
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            stub = executor_pb2_grpc.ExecutorStub(channel)
            response: executor_pb2.ExecPluginResponse = stub.ExecPlugin(
                executor_pb2.ExecPluginRequest(**fields), timeout=timeout, metadata=metadata
            )
            return response

    def recorder_conf(self, **keys: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "recordDir": str(self.record_dir), **keys}


def launch_executor(inst: Instance, *extra: str, socket: str | None = None) -> ServiceProcess:
    args = [*extra, *(["--socket", socket] if socket else [])]
    proc = start_service(inst, "executor", *args)
    try:
        wait_serving(socket or inst.grpc_socket("executor"))
    except TimeoutError as exc:
        proc.stop()
        raise TimeoutError(f"{exc}\n{proc.log()[-3000:]}") from exc
    return proc


def make_executor_instance(
    tmp_path: Path, *, with_reference: bool = True, **overrides: Any
) -> tuple[Instance, Path, Path]:
    bin_dir = make_bin_dir(tmp_path / "bin", with_reference=with_reference)
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    inst = make_instance(tmp_path, binDir=str(bin_dir), **overrides)
    return inst, bin_dir, record_dir


@pytest.fixture(scope="module")
def executor_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, ServiceProcess, Path]]:
    """One executor per test module (starting one takes most of a second)."""
    root = tmp_path_factory.mktemp("executor")
    inst, bin_dir, _ = make_executor_instance(root)
    proc = launch_executor(inst)
    try:
        yield inst, proc, bin_dir
    finally:
        proc.stop()


@pytest.fixture
def executor(executor_process: tuple[Instance, ServiceProcess, Path], tmp_path: Path) -> Executor:
    """The module's executor, with a record dir of this test's own."""
    inst, proc, bin_dir = executor_process
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    return Executor(inst, proc, inst.grpc_socket("executor"), bin_dir, record_dir)


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    return [p.pid for p in processes() if p.pgrp == pgid and p.state != "Z"]


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
