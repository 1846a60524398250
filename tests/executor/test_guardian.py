"""No plugin outlives the executor: plugins run in the executor's session and its
guardian kills what is left there when the executor dies (services/executor/
guardian.py), with setpriv as the fallback when the executor does not lead
its session. Real executor processes, real plugins, real SIGKILLs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest

from services.api import executor_pb2, executor_pb2_grpc
from services.executor.orphans import session_members, session_of
from tests.executor.conftest import GATEWAY, launch_executor, make_executor_instance, process_alive, wait_until
from tests.support.plugins import recorded_calls
from tests.support.procs import processes
from tests.support.services import REPO, Instance, ServiceProcess, wait_serving


@pytest.mark.parametrize(
    ("stat", "session"),
    [
        ("123 (bridge) S 1 123 77 0 -1", 77),
        ("124 (a (b) c) R 1 124 77 0", 77),  # a command with spaces and parentheses
        ("125 (x) Z 1 125 77 0", None),  # a zombie is dead already
        ("garbage", None),
        ("126 (x) S 1", None),
    ],
)
def test_session_of_a_stat_line(stat: str, session: int | None) -> None:
    assert session_of(stat) == session


def test_session_members_spare_the_leader_and_other_sessions() -> None:
    stats = [
        (77, "77 (python3) S 1 77 77 0"),  # the executor itself, still exiting
        (80, "80 (bridge) S 1 80 77 0"),
        (81, "81 (host-local) S 80 80 77 0"),
        (90, "90 (sshd) S 1 90 90 0"),
        (91, "91 (old) Z 1 91 77 0"),
    ]
    assert session_members(stats, 77) == [80, 81]


def session_id(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[3])


def guardians(executor_pid: int) -> list[int]:
    return [
        p.pid
        for p in processes()
        if p.ppid == executor_pid and b"multus-executor-guardian" in p.cmdline and p.state != "Z"
    ]


def start_call(socket: str, conf: Mapping[str, object]) -> threading.Thread:
    """A DEL in the background (it fails when the executor is killed under it)."""

    def call() -> None:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            request = executor_pb2.ExecPluginRequest(
                plugin="recorder", command="DEL", container_id="c", config=json.dumps(conf).encode()
            )
            with contextlib.suppress(grpc.RpcError):  # the executor is killed under some of these calls
                executor_pb2_grpc.ExecutorStub(channel).ExecPlugin(request, timeout=30, metadata=GATEWAY)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def children_of_calls(record_dir: Path) -> list[int]:
    path = record_dir / "children.jsonl"
    return [json.loads(line)["pid"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def own_executor(tmp_path: Path) -> Iterator[tuple[Instance, ServiceProcess, Path]]:
    inst, _, record_dir = make_executor_instance(tmp_path)
    proc = launch_executor(inst)
    try:
        yield inst, proc, record_dir
    finally:
        proc.stop()


def test_plugins_run_in_the_executors_session_in_a_group_of_their_own(
    own_executor: tuple[Instance, ServiceProcess, Path],
) -> None:
    inst, proc, record_dir = own_executor
    executor_pid = proc.proc.pid
    assert len(guardians(executor_pid)) == 1
    conf = {"cniVersion": "1.0.0", "type": "recorder", "recordDir": str(record_dir), "sleep": {"DEL": 1}}
    thread = start_call(inst.grpc_socket("executor"), conf)
    assert wait_until(lambda: len(recorded_calls(record_dir)) == 1, 10)
    plugin = recorded_calls(record_dir)[0]
    # Started straight from the executor (no setpriv in between), in its session, leading its own group.
    assert plugin["ppid"] == executor_pid
    assert session_id(plugin["pid"]) == executor_pid
    assert os.getpgid(plugin["pid"]) == plugin["pid"]
    thread.join(10)


def test_a_plugin_and_what_it_started_die_with_a_killed_executor(
    own_executor: tuple[Instance, ServiceProcess, Path],
) -> None:
    inst, proc, record_dir = own_executor
    executor_pid = proc.proc.pid
    (guardian,) = guardians(executor_pid)
    conf = {
        "cniVersion": "1.0.0",
        "type": "recorder",
        "recordDir": str(record_dir),
        "sleep": {"DEL": 30},
        "spawnChild": {"DEL": 30},
    }
    start_call(inst.grpc_socket("executor"), conf)
    assert wait_until(lambda: bool(recorded_calls(record_dir)) and bool(children_of_calls(record_dir)), 10)
    plugin, grandchild = recorded_calls(record_dir)[0]["pid"], children_of_calls(record_dir)[0]
    os.kill(executor_pid, signal.SIGKILL)
    proc.proc.wait()
    # setpriv's parent-death signal reached the plugin only; the guardian ends its children too.
    assert wait_until(lambda: not process_alive(plugin) and not process_alive(grandchild), 5)
    assert wait_until(lambda: not process_alive(guardian), 5), "the guardian exits once it has swept"


def test_a_guardian_that_dies_is_replaced(own_executor: tuple[Instance, ServiceProcess, Path]) -> None:
    inst, proc, record_dir = own_executor
    executor_pid = proc.proc.pid
    (first,) = guardians(executor_pid)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: len(guardians(executor_pid)) == 1 and guardians(executor_pid) != [first], 5)
    conf = {"cniVersion": "1.0.0", "type": "recorder", "recordDir": str(record_dir), "sleep": {"DEL": 30}}
    start_call(inst.grpc_socket("executor"), conf)
    assert wait_until(lambda: bool(recorded_calls(record_dir)), 10)
    plugin = recorded_calls(record_dir)[0]["pid"]
    os.kill(executor_pid, signal.SIGKILL)
    proc.proc.wait()
    assert wait_until(lambda: not process_alive(plugin), 5)


def test_a_stopped_executor_leaves_no_guardian(own_executor: tuple[Instance, ServiceProcess, Path]) -> None:
    _, proc, _ = own_executor
    (guardian,) = guardians(proc.proc.pid)
    assert proc.stop() == 0
    assert not process_alive(guardian)


def test_an_executor_that_does_not_lead_its_session_runs_plugins_through_setpriv(tmp_path: Path) -> None:
    inst, _, record_dir = make_executor_instance(tmp_path)
    # Started in our session (as a foreground job in a shell): it stays there, and uses setpriv.
    log = (tmp_path / "executor.log").open("wb")
    executor = subprocess.Popen(
        [sys.executable, "-m", "services.executor", "--config", str(inst.config_path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "MULTUS_NODE_NAME": "node-a"},
        process_group=0,
    )
    try:
        wait_serving(inst.grpc_socket("executor"))
        assert session_id(executor.pid) == os.getsid(0), "it did not leave our session"
        assert guardians(executor.pid) == []
        conf = {"cniVersion": "1.0.0", "type": "recorder", "recordDir": str(record_dir), "sleep": {"DEL": 30}}
        start_call(inst.grpc_socket("executor"), conf)
        assert wait_until(lambda: bool(recorded_calls(record_dir)), 10)
        plugin = recorded_calls(record_dir)[0]
        assert plugin["ppid"] == executor.pid
        assert session_id(plugin["pid"]) == plugin["pid"], "a session of its own, as before"
        executor.kill()
        executor.wait()
        assert wait_until(lambda: not process_alive(plugin["pid"]), 5), "setpriv's parent-death signal"
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait()
        log.close()
