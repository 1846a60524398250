"""Table tests for the pure part of device info: PodResources and checkpoint
answers -> device IDs per resource, one device per attachment, device-info
file names and contents."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.gateway.device_info import (
    CNI_DEVICE_INFO_CAPABILITY,
    DeviceInfoFiles,
    PodDevices,
    cni_device_info_path,
    devices_from_checkpoint,
    devices_from_pod_resources,
    dp_device_info_path,
    next_device_id,
    parse_device_info,
    with_device_info_file,
)
from services.gateway.ports import PodView
from tests.gateway.podresources_server import pod_resources

SRIOV = "intel.com/sriov_netdevice"
RDMA = "mellanox.com/rdma"


# Plain objects shaped like the protobuf answer: the pure code reads attributes only.
@dataclass
class Devices:
    resource_name: str
    device_ids: Sequence[str]


@dataclass
class Container:
    devices: Sequence[Devices] = ()


@dataclass
class Pod:
    name: str
    namespace: str
    containers: Sequence[Container] = field(default_factory=list)


NODE = [
    pod_resources(
        "default", "web", {"app": {SRIOV: ["0000:03:00.3", "0000:03:00.1"]}, "side": {SRIOV: ["0000:03:00.2"]}}
    ),
    pod_resources("default", "db", {"app": {SRIOV: ["0000:04:00.1"], RDMA: ["mlx5_3"]}}),
    pod_resources("other", "web", {"app": {SRIOV: ["0000:05:00.1"]}}),
    pod_resources("default", "plain", {"app": {}}),
]


@pytest.mark.parametrize(
    ("case", "pods", "namespace", "name", "expected"),
    [
        (
            "every container's devices, sorted",
            NODE,
            "default",
            "web",
            {SRIOV: ["0000:03:00.1", "0000:03:00.2", "0000:03:00.3"]},
        ),
        ("several resources", NODE, "default", "db", {SRIOV: ["0000:04:00.1"], RDMA: ["mlx5_3"]}),
        ("same name, other namespace", NODE, "other", "web", {SRIOV: ["0000:05:00.1"]}),
        ("pod without devices", NODE, "default", "plain", {}),
        ("pod the kubelet does not know", NODE, "default", "ghost", {}),
        ("empty answer", [], "default", "web", {}),
        (
            "plain objects, split across entries of one resource",
            [Pod("p", "ns", [Container([Devices("r/x", ["b"]), Devices("r/x", ["a"])])])],
            "ns",
            "p",
            {"r/x": ["a", "b"]},
        ),
    ],
)
def test_devices_from_pod_resources(
    case: str, pods: Sequence[Any], namespace: str, name: str, expected: Mapping[str, list[str]]
) -> None:
    assert devices_from_pod_resources(pods, namespace, name) == expected, case


CHECKPOINT = {
    "Data": {
        "PodDeviceEntries": [
            # 1.20+: a NUMA node -> IDs map
            {"PodUID": "u1", "ContainerName": "c", "ResourceName": SRIOV, "DeviceIDs": {"1": ["vf3"], "0": ["vf1"]}},
            {"PodUID": "u1", "ContainerName": "d", "ResourceName": SRIOV, "DeviceIDs": {"0": ["vf2"]}},
            # before 1.20: a plain list
            {"PodUID": "u2", "ContainerName": "c", "ResourceName": RDMA, "DeviceIDs": ["m2", "m1"]},
            {"PodUID": "u3", "ContainerName": "c", "ResourceName": RDMA, "DeviceIDs": None},
            "not an entry",
        ],
        "RegisteredDevices": {SRIOV: ["vf1", "vf2", "vf3"]},
    },
    "Checksum": 1,
}


@pytest.mark.parametrize(
    ("case", "text", "uid", "expected"),
    [
        ("numa map, two containers", json.dumps(CHECKPOINT).encode(), "u1", {SRIOV: ["vf1", "vf2", "vf3"]}),
        ("old list form", json.dumps(CHECKPOINT).encode(), "u2", {RDMA: ["m1", "m2"]}),
        ("entry without IDs", json.dumps(CHECKPOINT).encode(), "u3", {RDMA: []}),
        ("unknown pod", json.dumps(CHECKPOINT).encode(), "u9", {}),
        ("not JSON", b"garbage", "u1", {}),
        ("JSON but not an object", b"[1, 2]", "u1", {}),
        ("no Data", b"{}", "u1", {}),
    ],
)
def test_devices_from_checkpoint(case: str, text: bytes, uid: str, expected: Mapping[str, list[str]]) -> None:
    assert devices_from_checkpoint(text, uid) == expected, case


ALLOCATED = {SRIOV: ["vf1", "vf2", "vf3"], RDMA: ["m1"]}


@pytest.mark.parametrize(
    ("case", "resource", "used", "expected"),
    [
        ("first attachment takes the first device", SRIOV, [], "vf1"),
        ("earlier attachments' devices are skipped", SRIOV, ["vf1"], "vf2"),
        ("skipping is by ID, not by position", SRIOV, ["vf2"], "vf1"),
        ("all taken: no deviceID", SRIOV, ["vf1", "vf2", "vf3"], ""),
        ("devices of another resource do not count", RDMA, ["vf1", "vf2"], "m1"),
        ("resource not allocated to the pod", "x.com/none", [], ""),
        ("empty resource name", "", [], ""),
    ],
)
def test_next_device_id(case: str, resource: str, used: list[str], expected: str) -> None:
    assert next_device_id(ALLOCATED, resource, used) == expected, case


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        (
            "NAD network: '/' in the name becomes '-'",
            ("/var/run/k8s.cni.cncf.io/devinfo", "default/sriov-a", "c0ffee", "net1"),
            "/var/run/k8s.cni.cncf.io/devinfo/cni/default-sriov-a-c0ffee_net1",
        ),
        (
            "plain CNI name",
            ("/d", "cluster", "abc", "eth0"),
            "/d/cni/cluster-abc_eth0",
        ),
    ],
)
def test_cni_device_info_path(case: str, args: tuple[str, str, str, str], expected: str) -> None:
    assert cni_device_info_path(*args) == expected, case


@pytest.mark.parametrize(
    ("case", "resource", "device", "expected"),
    [
        ("PCI address", SRIOV, "0000:03:00.1", "/d/dp/intel.com-sriov_netdevice-0000:03:00.1-device.json"),
        ("'/' in the device ID", "a.io/r", "x/y", "/d/dp/a.io-r-x-y-device.json"),
    ],
)
def test_dp_device_info_path(case: str, resource: str, device: str, expected: str) -> None:
    assert dp_device_info_path("/d", resource, device) == expected, case


@pytest.mark.parametrize(
    ("case", "caps", "device", "expected"),
    [
        ("no device: unchanged", {"mac": "x"}, "", {"mac": "x"}),
        ("device: path added", {"mac": "x"}, "vf1", {"mac": "x", CNI_DEVICE_INFO_CAPABILITY: "/p"}),
        (
            "runtime's own path is replaced",
            {CNI_DEVICE_INFO_CAPABILITY: "/etc/passwd"},
            "vf1",
            {CNI_DEVICE_INFO_CAPABILITY: "/p"},
        ),
    ],
)
def test_with_device_info_file(case: str, caps: dict[str, Any], device: str, expected: dict[str, Any]) -> None:
    assert dict(with_device_info_file(caps, device, "/p")) == expected, case


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        (
            "spec object",
            b'{"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}}',
            {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}},
        ),
        ("empty object", b"{}", None),
        ("list", b"[]", None),
        ("not JSON", b"{", None),
        ("not UTF-8", b"\xff\xfe", None),
    ],
)
def test_parse_device_info(case: str, text: bytes, expected: dict[str, Any] | None) -> None:
    assert parse_device_info(text) == expected, case


@pytest.mark.parametrize(
    ("case", "path", "expected"),
    [
        ("our file", "/d/cni/ns-net-cid_net1", True),
        ("our file, written with dots", "/d/./cni/x/../ns-net-cid_net1", True),
        ("escape with ..", "/d/cni/../../etc/passwd", False),
        ("device plugin's directory", "/d/dp/x-device.json", False),
        ("elsewhere", "/etc/passwd", False),
        ("nested below cni/", "/d/cni/sub/file", False),
        ("empty", "", False),
    ],
)
def test_device_info_files_owns(case: str, path: str, expected: bool) -> None:
    assert DeviceInfoFiles("/d").owns(path) is expected, case


class CountingSource:
    """A DeviceInfoSource that answers from a table and counts how often it is asked."""

    def __init__(self, table: Mapping[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, str, str]] = []

    async def device_ids(self, pod_namespace: str, pod_name: str, pod_uid: str) -> Mapping[str, list[str]]:
        self.asked.append((pod_namespace, pod_name, pod_uid))
        return self.table


def PodRef(name: str = "web") -> PodView:
    return PodView("default", name, "u1")


async def test_pod_devices_asks_once_and_hands_out_in_order() -> None:
    source = CountingSource(ALLOCATED)
    devices = PodDevices(source, PodRef())
    assert source.asked == []  # nothing asked until a NAD names a resource
    taken = [await devices.take(SRIOV), await devices.take(RDMA), await devices.take(SRIOV), await devices.take("")]
    assert taken == ["vf1", "m1", "vf2", ""]
    assert source.asked == [("default", "web", "u1")]
    assert [await devices.take(SRIOV), await devices.take(SRIOV)] == ["vf3", ""]


async def test_pod_devices_without_pod_or_source() -> None:
    source = CountingSource(ALLOCATED)
    assert await PodDevices(source, None).take(SRIOV) == ""
    assert await PodDevices(None, PodRef()).take(SRIOV) == ""
    assert source.asked == []


async def test_pod_devices_nothing_shared_between_pods() -> None:
    source = CountingSource(ALLOCATED)
    first, second = PodDevices(source, PodRef(name="a")), PodDevices(source, PodRef(name="b"))
    assert await first.take(SRIOV) == "vf1"
    assert await second.take(SRIOV) == "vf1"
    assert [a[1] for a in source.asked] == ["a", "b"]
