"""The kubelet PodResources adapter and the checkpoint fallback against a real
grpc.aio PodResourcesLister on a real Unix socket, and the device-info files on
a real filesystem."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.gateway.device_info import (
    DeviceInfoFiles,
    DevicePluginCheckpoint,
    KubeletDeviceInfo,
    PodResourcesUnavailable,
    dp_device_info_path,
)
from services.gateway.podresources import PodResourcesClient
from tests.gateway.podresources_server import FakeKubelet, pod_resources, serve

SRIOV = "intel.com/sriov_netdevice"
UID = "6b1f3c1e-0000-4000-8000-00000000d1d1"


@pytest.fixture
def short_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths must stay under 108 bytes; test names make tmp_path long.
    return tmp_path_factory.mktemp("kl")


@pytest.fixture
def checkpoint(short_dir: Path) -> Path:
    path = short_dir / "kubelet_internal_checkpoint"
    entry = {"PodUID": UID, "ContainerName": "c", "ResourceName": SRIOV, "DeviceIDs": {"0": ["from-checkpoint"]}}
    path.write_text(json.dumps({"Data": {"PodDeviceEntries": [entry]}, "Checksum": 0}))
    return path


@pytest.fixture
async def client(short_dir: Path) -> AsyncIterator[PodResourcesClient]:
    pr = PodResourcesClient(str(short_dir / "kubelet.sock"), timeout=0.5)
    yield pr
    await pr.close()


def web_pod() -> FakeKubelet:
    return FakeKubelet(
        pods=[
            pod_resources("default", "web", {"app": {SRIOV: ["0000:03:00.2", "0000:03:00.1"]}}),
            pod_resources("default", "other", {"app": {SRIOV: ["0000:09:00.1"]}}),
        ]
    )


@pytest.mark.parametrize(
    ("get", "first_calls", "second_calls"),
    [
        ("served", ["Get"], ["Get"]),
        # kubelets before 1.27: Get is UNIMPLEMENTED, remembered, List from then on
        ("unimplemented", ["Get", "List"], ["List"]),
        # kubelets with the KubeletPodResourcesGet feature gate off
        ("disabled", ["Get", "List"], ["List"]),
    ],
)
async def test_get_or_list(
    client: PodResourcesClient, checkpoint: Path, get: str, first_calls: list[str], second_calls: list[str]
) -> None:
    kubelet = web_pod()
    kubelet.get = get
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    async with serve(kubelet, client.socket_path):
        assert await source.device_ids("default", "web", UID) == {SRIOV: ["0000:03:00.1", "0000:03:00.2"]}
        assert kubelet.calls == first_calls
        kubelet.calls.clear()
        assert await source.device_ids("default", "other", "other-uid") == {SRIOV: ["0000:09:00.1"]}
        assert kubelet.calls == second_calls


@pytest.mark.parametrize("get", ["served", "unimplemented"])
async def test_pod_unknown_to_the_kubelet_falls_back_to_the_checkpoint(
    client: PodResourcesClient, checkpoint: Path, get: str
) -> None:
    kubelet = web_pod()
    kubelet.get = get
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    async with serve(kubelet, client.socket_path):
        assert await source.device_ids("default", "ghost", UID) == {SRIOV: ["from-checkpoint"]}
        assert kubelet.calls  # the kubelet was asked first


async def test_no_socket_uses_the_checkpoint(client: PodResourcesClient, checkpoint: Path) -> None:
    assert not client.available()
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    assert await source.device_ids("default", "web", UID) == {SRIOV: ["from-checkpoint"]}
    with pytest.raises(PodResourcesUnavailable):
        await client.pod_resources("default", "web")


async def test_api_switched_off_uses_the_checkpoint(checkpoint: Path) -> None:
    source = KubeletDeviceInfo(None, DevicePluginCheckpoint(str(checkpoint)))
    assert await source.device_ids("default", "web", UID) == {SRIOV: ["from-checkpoint"]}


async def test_neither_source_knows_the_pod(client: PodResourcesClient, short_dir: Path) -> None:
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(short_dir / "missing")))
    async with serve(web_pod(), client.socket_path):
        assert await source.device_ids("default", "ghost", UID) == {}
    assert await source.device_ids("default", "web", "") == {}


async def test_socket_file_nobody_listens_on(client: PodResourcesClient, checkpoint: Path) -> None:
    # A kubelet that died and left its socket file behind.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(client.socket_path)
    stale.close()
    assert stat.S_ISSOCK(os.stat(client.socket_path).st_mode)
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    started = time.monotonic()
    assert await source.device_ids("default", "web", UID) == {SRIOV: ["from-checkpoint"]}
    assert time.monotonic() - started < 2.0


async def test_hung_kubelet_costs_one_deadline_and_never_blocks_the_loop(
    client: PodResourcesClient, checkpoint: Path
) -> None:
    kubelet = web_pod()
    kubelet.delay = 5.0
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    async with serve(kubelet, client.socket_path):
        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        found = await source.device_ids("default", "web", UID)
        elapsed = time.monotonic() - started
        stop.set()
        await tick
    assert found == {SRIOV: ["from-checkpoint"]}
    assert 0.4 < elapsed < 2.0  # the client's 0.5 s deadline, not the kubelet's 5 s
    assert len(lags) > 20 and max(lags) < 0.2


async def test_kubelet_restart_same_channel(client: PodResourcesClient, checkpoint: Path) -> None:
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    async with serve(web_pod(), client.socket_path):
        assert await source.device_ids("default", "web", UID) == {SRIOV: ["0000:03:00.1", "0000:03:00.2"]}
    # Kubelet gone (socket removed): the checkpoint answers.
    assert await source.device_ids("default", "web", UID) == {SRIOV: ["from-checkpoint"]}
    restarted = FakeKubelet(pods=[pod_resources("default", "web", {"app": {SRIOV: ["0000:07:00.1"]}})])
    async with serve(restarted, client.socket_path):
        deadline = time.monotonic() + 5
        found = await source.device_ids("default", "web", UID)
        while found != {SRIOV: ["0000:07:00.1"]} and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            found = await source.device_ids("default", "web", UID)
        assert found == {SRIOV: ["0000:07:00.1"]}  # fresh answer, nothing cached from before


async def test_each_call_asks_again(client: PodResourcesClient, checkpoint: Path) -> None:
    kubelet = web_pod()
    source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
    async with serve(kubelet, client.socket_path):
        assert await source.device_ids("default", "web", UID) == {SRIOV: ["0000:03:00.1", "0000:03:00.2"]}
        kubelet.pods = [pod_resources("default", "web", {"app": {SRIOV: ["0000:03:00.5"]}})]
        assert await source.device_ids("default", "web", UID) == {SRIOV: ["0000:03:00.5"]}


# --- device-info files ---------------------------------------------------------------
DEVICE_INFO = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}}


@pytest.fixture
def files(tmp_path: Path) -> DeviceInfoFiles:
    return DeviceInfoFiles(str(tmp_path / "devinfo"))


def write_dp_file(files: DeviceInfoFiles, resource: str, device: str, content: object) -> Path:
    path = Path(dp_device_info_path(files.base_dir, resource, device))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


async def test_device_plugin_file_copied_loaded_removed(files: DeviceInfoFiles) -> None:
    write_dp_file(files, SRIOV, "0000:03:00.1", DEVICE_INFO)
    path = files.path_for("default/sriov", "cid", "net1")
    await files.prepare(path, SRIOV, "0000:03:00.1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert await files.load(path) == DEVICE_INFO
    await files.prepare(path, SRIOV, "0000:03:00.1")  # a repeated ADD replaces the read-only file
    await files.remove(path)
    assert not os.path.exists(path)
    await files.remove(path)  # DEL is idempotent


async def test_no_device_plugin_file_leaves_it_to_the_delegate(files: DeviceInfoFiles) -> None:
    path = files.path_for("default/sriov", "cid", "net1")
    await files.prepare(path, SRIOV, "0000:03:00.1")
    assert not os.path.exists(path)
    assert await files.load(path) is None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(DEVICE_INFO))  # as a delegate writes it
    assert await files.load(path) == DEVICE_INFO


async def test_malformed_device_plugin_file_is_ignored(files: DeviceInfoFiles) -> None:
    write_dp_file(files, SRIOV, "vf1", ["not", "an", "object"])
    path = files.path_for("n", "cid", "net1")
    await files.prepare(path, SRIOV, "vf1")
    assert not os.path.exists(path)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    victim = tmp_path / "victim.json"
    victim.write_text(json.dumps(DEVICE_INFO))
    yield victim


async def test_paths_outside_the_directory_are_never_read_or_removed(files: DeviceInfoFiles, outside: Path) -> None:
    assert await files.load(str(outside)) is None
    await files.remove(str(outside))
    assert outside.exists()
