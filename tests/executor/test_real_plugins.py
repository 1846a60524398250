"""The executor running the reference plugins (bridge + host-local) in real network namespaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.api import executor_pb2
from tests.executor.conftest import Executor
from tests.support.netns import host_link_exists, ip, netns, unique_name


def bridge_conf(bridge: str, data_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "exec-bridge",
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": "10.251.7.0/24", "dataDir": str(data_dir)},
    }


def test_bridge_add_check_del_in_a_real_netns(executor: Executor, tmp_path: Path) -> None:
    bridge = unique_name("exb")
    conf = bridge_conf(bridge, tmp_path / "ipam")
    try:
        with netns("exe") as ns:
            common: dict[str, Any] = {
                "plugin": "bridge",
                "container_id": "c0ffee01",
                "netns": ns.path,
                "ifname": "net1",
            }
            added = executor.exec(command="ADD", config=conf, **common)
            assert not added.HasField("error"), added.error
            result = json.loads(added.stdout)
            assert result["ips"][0]["address"].startswith("10.251.7.")
            assert ns.addresses("net1") == [result["ips"][0]["address"]]

            checked = executor.exec(command="CHECK", config={**conf, "prevResult": result}, **common)
            assert not checked.HasField("error"), checked.error

            listed = executor.stub().ListInterfaces(executor_pb2.ListInterfacesRequest(netns=ns.path), timeout=5)
            by_name = {i.name: i for i in listed.interfaces}
            assert by_name["net1"].kind == "veth" and by_name["net1"].up
            assert result["ips"][0]["address"] in by_name["net1"].addresses
            assert any(r.destination == "10.251.7.0/24" and r.ifname == "net1" for r in listed.routes)

            deleted = executor.exec(command="DEL", config=conf, **common)
            assert not deleted.HasField("error"), deleted.error
            assert "net1" not in ns.links()
            assert not list((tmp_path / "ipam" / "exec-bridge").glob("10.*"))
    finally:
        if host_link_exists(bridge):
            ip("link", "delete", bridge, check=False)


def test_a_real_plugin_failure_comes_back_as_its_cni_error_object(executor: Executor) -> None:
    bridge = unique_name("exb")
    try:
        with netns("exe") as ns:
            # The bridge plugin refuses an unknown CNI version with code 1 (incompatible version).
            conf = {"cniVersion": "9.9.9", "name": "bad", "type": "bridge", "bridge": bridge}
            resp = executor.exec(
                plugin="bridge", command="ADD", container_id="c1", netns=ns.path, ifname="net1", config=conf
            )
            assert resp.exit_code != 0
            assert resp.error.code == 1, resp.error
            assert "9.9.9" in resp.error.msg + resp.error.details
            assert "net1" not in ns.links()
    finally:
        if host_link_exists(bridge):
            ip("link", "delete", bridge, check=False)


def test_recorder_error_object_keeps_code_msg_and_details(executor: Executor) -> None:
    failure = {"code": 117, "msg": "custom failure", "details": "line one\nline two"}
    conf = executor.recorder_conf(failOn={"DEL": failure})
    resp = executor.exec(plugin="recorder", command="DEL", container_id="c2", ifname="net1", config=conf)
    assert resp.exit_code == 1
    assert (resp.error.code, resp.error.msg, resp.error.details) == (117, "custom failure", "line one\nline two")


def test_nonzero_exit_without_error_object_is_an_io_failure(executor: Executor) -> None:
    conf = executor.recorder_conf(exitOn={"DEL": 3})
    resp = executor.exec(plugin="recorder", command="DEL", container_id="c3", ifname="net1", config=conf)
    assert resp.exit_code == 3
    assert resp.error.code == 5 and "exit status 3" in resp.error.details


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("../bridge", grpc.StatusCode.INVALID_ARGUMENT),
        ("/usr/lib/cni/bridge", grpc.StatusCode.INVALID_ARGUMENT),
        ("bri\0dge", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("..", grpc.StatusCode.INVALID_ARGUMENT),
        ("bin/../bridge", grpc.StatusCode.INVALID_ARGUMENT),
        ("no-such-plugin", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_plugin_names_that_are_not_plain_names_are_refused(
    executor: Executor, name: str, status: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        executor.exec(plugin=name, command="VERSION", config={"cniVersion": "1.0.0"})
    assert caught.value.code() == status


def test_unreadable_netns_paths_are_refused(executor: Executor, tmp_path: Path) -> None:
    plain_file = tmp_path / "not-a-netns"
    plain_file.write_text("")
    for path in (
        "/var/run/netns/../../../etc/passwd",
        str(plain_file),
        "/proc/self/ns/net",
        "/proc/1/ns/mnt",
        "/var/run/netns/does-not-exist",
        "relative/netns",
    ):
        with pytest.raises(grpc.RpcError) as caught:
            executor.exec(
                plugin="bridge",
                command="ADD",
                container_id="c",
                netns=path,
                ifname="net1",
                config={"cniVersion": "1.0.0"},
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
