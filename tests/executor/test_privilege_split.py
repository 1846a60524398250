"""The executor's caller check is real (issue 12): SO_PEERCRED per method.
Real executor process, real clients running as other uids on the real socket:
the cache's uid (in the socket's group) may ask for health, stats, VERSION
and ListInterfaces but cannot run a delegate, delete an interface or change
routes, even sending the gateway's marker; the gateway's uid can; a process
outside the socket's group cannot connect at all; and the socket is born
0660 (umask before bind, never a chmod after)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.executor.conftest import launch_executor, make_executor_instance
from tests.support.as_user import run_as, shared_tmpdir
from tests.support.netns import netns
from tests.support.plugins import recorded_calls
from tests.support.services import Instance, ServiceProcess

pytestmark = pytest.mark.root

SOCKET_GID, GATEWAY_UID, CACHE_UID, OUTSIDER = 64201, 64202, 64203, 64204

CLIENT = """
import json, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from services.api import executor_pb2, executor_pb2_grpc
from services.common.callers import CALLER_METADATA_KEY, GATEWAY_CALLER
out = {{}}
channel = grpc.insecure_channel("unix://{socket}")
stub = executor_pb2_grpc.ExecutorStub(channel)
marker = ((CALLER_METADATA_KEY, GATEWAY_CALLER),)
def attempt(name, fn):
    try:
        fn()
        out[name] = "OK"
    except grpc.RpcError as err:
        out[name] = err.code().name
conf = json.dumps({conf}).encode()
attempt("health", lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5))
attempt("stats", lambda: stub.GetStats(executor_pb2.GetStatsRequest(), timeout=5))
attempt("version", lambda: stub.ExecPlugin(
    executor_pb2.ExecPluginRequest(plugin="recorder", command="VERSION", config=conf), timeout=5))
attempt("list", lambda: stub.ListInterfaces(executor_pb2.ListInterfacesRequest(netns="{netns}"), timeout=5))
attempt("add", lambda: stub.ExecPlugin(executor_pb2.ExecPluginRequest(
    plugin="recorder", command="ADD", container_id="c1", netns="{netns}", ifname="net9", config=conf),
    timeout=5, metadata=marker))
attempt("delete", lambda: stub.DeleteInterface(
    executor_pb2.DeleteInterfaceRequest(netns="{netns}", ifname="nothere0"), timeout=5, metadata=marker))
print(json.dumps(out))
"""


@pytest.fixture
def split_executor() -> Iterator[tuple[Instance, ServiceProcess, Path]]:
    with shared_tmpdir("priv-split-") as root:
        inst, _, record_dir = make_executor_instance(
            root, grpcSocketGroup=str(SOCKET_GID), gatewayUid=GATEWAY_UID
        )
        os.chmod(Path(inst.config["runDir"]), 0o755)
        proc = launch_executor(inst)
        try:
            yield inst, proc, record_dir
        finally:
            proc.stop()


def client(inst: Instance, record_dir: Path, uid: int, gid: int) -> dict[str, str]:
    conf = {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "recordDir": str(record_dir)}
    with netns("priv") as ns:
        code = CLIENT.format(socket=inst.grpc_socket("executor"), conf=repr(conf), netns=ns.path)
        done = run_as(uid, gid, code)
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_the_caches_uid_cannot_run_a_delegate(split_executor: tuple[Instance, ServiceProcess, Path]) -> None:
    inst, _, record_dir = split_executor
    got = client(inst, record_dir, CACHE_UID, SOCKET_GID)
    assert got == {
        "health": "OK",
        "stats": "OK",
        "version": "OK",
        "list": "OK",
        "add": "PERMISSION_DENIED",  # the gateway's marker does not make the cache the gateway
        "delete": "PERMISSION_DENIED",
    }
    assert [c["command"] for c in recorded_calls(record_dir)] == ["VERSION"]


def test_the_gateways_uid_can(split_executor: tuple[Instance, ServiceProcess, Path]) -> None:
    inst, _, record_dir = split_executor
    got = client(inst, record_dir, GATEWAY_UID, SOCKET_GID)
    assert got["add"] == "OK" and got["delete"] == "OK" and got["health"] == "OK"
    assert "ADD" in [c["command"] for c in recorded_calls(record_dir)]


def test_a_process_outside_the_sockets_group_cannot_connect(
    split_executor: tuple[Instance, ServiceProcess, Path],
) -> None:
    inst, _, record_dir = split_executor
    got = client(inst, record_dir, OUTSIDER, OUTSIDER)
    assert set(got.values()) == {"UNAVAILABLE"}, got
    assert recorded_calls(record_dir) == []


def test_health_checks_still_work_for_any_peer_that_can_connect(
    split_executor: tuple[Instance, ServiceProcess, Path],
) -> None:
    inst, _, _ = split_executor
    probe = run_as(
        CACHE_UID,
        SOCKET_GID,
        "from services.common.probe import main\nraise SystemExit(main(['--config', "
        f"{str(inst.config_path)!r}, '--service', 'executor']))",
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr


def test_the_socket_is_born_with_its_final_mode(split_executor: tuple[Instance, ServiceProcess, Path]) -> None:
    inst, _, _ = split_executor
    st = os.stat(inst.grpc_socket("executor"))
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == SOCKET_GID
    private = Path(inst.grpc_socket("executor")).parent / ".private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
