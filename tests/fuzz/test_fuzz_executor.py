"""Hypothesis fuzzing of the executor's gRPC requests, against a real executor
process on its real socket: plugin names with path traversal, absolute paths
and NUL bytes; environment injection (LD_PRELOAD and friends); the host
network namespace in every spelling (/proc/self/ns/net, /proc/<pid>/ns/net,
`..` segments, doubled slashes, and a bind mount of the host's netns under
/run/netns). Expected: a refusal or a plugin result, a canary executable
outside the bin dirs never runs, no plugin ever sees LD_PRELOAD or the host's
netns."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api import executor_pb2, executor_pb2_grpc
from tests.executor.conftest import GATEWAY, launch_executor, make_executor_instance
from tests.fuzz.test_fuzz_inputs import FUZZ, NASTY, count
from tests.support import fault_report
from tests.support.netns import netns, unique_name
from tests.support.plugins import recorded_calls

pytestmark = [pytest.mark.faults, pytest.mark.root]

# What protobuf can carry: no lone surrogates (the gateway's decoder turns them into U+FFFD).
WIRE_NASTY = [n for n in NASTY if not any(0xD800 <= ord(c) <= 0xDFFF for c in n)]


def wire_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=max_size)


EXPECTED_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
}


@pytest.fixture
def host_netns_bind() -> Iterator[str]:
    """The host's (ours, and the executor's) network namespace bind-mounted where pod namespaces live."""
    path = f"/run/netns/{unique_name('hostbind')}"
    os.makedirs("/run/netns", exist_ok=True)
    Path(path).touch()
    subprocess.run(["mount", "--bind", "/proc/self/ns/net", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=False)
        os.unlink(path)


def test_fuzz_executor_requests(tmp_path: Path, host_netns_bind: str) -> None:
    inst, _, record_dir = make_executor_instance(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    canary, ran = outside / "canary", tmp_path / "canary-ran"
    canary.write_text(f"#!/bin/sh\ntouch {ran}\n")
    canary.chmod(0o755)
    host = os.stat("/proc/self/ns/net")  # the executor (our child) lives in ours
    proc = launch_executor(inst)
    try:
        with netns("fz") as pod, grpc.insecure_channel(f"unix://{inst.grpc_socket('executor')}") as channel:
            stub = executor_pb2_grpc.ExecutorStub(channel)
            plugins = st.one_of(
                st.sampled_from(
                    [
                        "recorder",
                        "../outside/canary",
                        f"../{outside.name}/canary",
                        str(canary),
                        "recorder\x00",
                        "recorder/../recorder",
                        "./recorder",
                        "",
                        ".",
                        "..",
                        "canary",
                    ]
                ),
                st.sampled_from(WIRE_NASTY),
                wire_text(32),
            )
            netnses = st.one_of(
                st.sampled_from(
                    [
                        pod.path,
                        "",
                        host_netns_bind,
                        "/proc/self/ns/net",
                        "/proc/1/ns/net",
                        f"/proc/{os.getpid()}/ns/net",
                        f"/proc/{proc.proc.pid}/ns/net",
                        "/proc/thread-self/ns/net",
                        "/var/run/netns/../../proc/1/ns/net",
                        "/run/netns/../../proc/1/ns/net",
                        "//proc//1//ns//net",
                        "/proc/1/../1/ns/net",
                        "/proc/1/task/1/ns/net",
                        pod.path + "/../../../proc/1/ns/net",
                    ]
                ),
                wire_text(40),
            )
            envs = st.dictionaries(
                st.sampled_from(["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "KUBECONFIG", "CNI_COMMAND", "PYTHONPATH"]),
                st.sampled_from(["/tmp/evil.so", "/tmp", "x\x00y", "/etc/kubernetes/admin.conf"]),
                max_size=3,
            )
            conf = {"cniVersion": "1.0.0", "name": "fz", "type": "recorder", "recordDir": str(record_dir),
                    "recordFullEnv": True}

            @FUZZ
            @given(
                plugin=plugins,
                command=st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "add", "RUN", ""]),
                netns_path=netnses,
                ifname=st.one_of(st.sampled_from(["net1", "eth0", "lo", "", "../x", "a" * 20]), wire_text(16)),
                container_id=st.one_of(st.sampled_from(["c1", "", "../c", "c\x00"]), wire_text(16)),
                extra_env=envs,
                config=st.one_of(st.just(json.dumps(conf).encode()), st.binary(max_size=64)),
                # Most requests: a valid one with ONE field fuzzed, so the checks behind the first refusal run too.
                fuzzed=st.sampled_from(["plugin", "command", "netns", "ifname", "container_id", "extra_env", "all"]),
            )
            def run(
                plugin: str,
                command: str,
                netns_path: str,
                ifname: str,
                container_id: str,
                extra_env: dict[str, str],
                config: bytes,
                fuzzed: str,
            ) -> None:
                count("executor gRPC requests")
                if fuzzed != "all":
                    valid: dict[str, Any] = {
                        "plugin": "recorder",
                        "command": "ADD",
                        "netns": pod.path,
                        "ifname": "net1",
                        "container_id": "c1",
                        "extra_env": {},
                    }
                    drawn = {"plugin": plugin, "command": command, "netns": netns_path, "ifname": ifname,
                             "container_id": container_id, "extra_env": extra_env}
                    valid[fuzzed] = drawn[fuzzed]
                    plugin, command, netns_path = valid["plugin"], valid["command"], valid["netns"]
                    ifname, container_id, extra_env = valid["ifname"], valid["container_id"], valid["extra_env"]
                    config = json.dumps(conf).encode()
                request = executor_pb2.ExecPluginRequest(
                    plugin=plugin,
                    command=command,
                    netns=netns_path,
                    ifname=ifname,
                    container_id=container_id,
                    config=config,
                    extra_env=extra_env,
                )
                try:
                    stub.ExecPlugin(request, timeout=10, metadata=GATEWAY)
                except grpc.RpcError as err:
                    assert err.code() in EXPECTED_REFUSALS, (err.code(), err.details())
                for name, value in (("ListInterfaces", netns_path),):
                    try:
                        stub.ListInterfaces(executor_pb2.ListInterfacesRequest(netns=value), timeout=10)
                    except grpc.RpcError as err:
                        assert err.code() in EXPECTED_REFUSALS | {grpc.StatusCode.INTERNAL}, (name, err.details())

            run()
        assert not ran.exists(), "an executable outside the bin dirs ran"
        calls = recorded_calls(record_dir)
        fault_report.add("fuzz inputs", "executor requests that ran the plugin", len(calls))
        for call in calls:
            env: dict[str, Any] = call["env"]
            assert "LD_PRELOAD" not in env and "LD_LIBRARY_PATH" not in env, env
            ns_path = env.get("CNI_NETNS", "")
            if ns_path and os.path.exists(ns_path):
                st_ = os.stat(ns_path)
                identity = (st_.st_dev, st_.st_ino)
                assert identity != (host.st_dev, host.st_ino), f"host netns handed to a plugin: {ns_path}"
        count_calls = {c["command"] for c in calls}
        assert count_calls <= {"ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"}
    finally:
        proc.stop()
