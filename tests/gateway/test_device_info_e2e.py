"""Device IDs and device-info end to end: real cache (file mode), executor and
gateway processes, a real grpc.aio PodResourcesLister standing in for the
kubelet on a Unix socket, NADs with `k8s.v1.cni.cncf.io/resourceName`, and the
recorder plugin capturing what each delegate was given."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.gateway.device_info import cni_device_info_path, dp_device_info_path
from tests.gateway.conftest import GatewayNode, nad, new_container_id
from tests.gateway.podresources_server import FakeKubelet, KubeletThread, kubelet_thread, pod_resources
from tests.support.netns import Netns
from tests.support.plugins import make_bin_dir, recorded_calls
from tests.support.services import make_instance, running_services

SRIOV = "intel.com/sriov_netdevice"
RDMA = "example.com/rdma"
RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"
DP_INFO = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1", "pf-pci-address": "0000:03:00.0"}}
DELEGATE_INFO = {"type": "vdpa", "version": "1.1.0", "vdpa": {"parent-device": "vdpa:0000:65:00.3"}}


class DeviceNode:
    def __init__(self, node: GatewayNode, kubelet: KubeletThread, checkpoint: Path, devinfo: Path) -> None:
        self.node = node
        self.kubelet = kubelet
        self.checkpoint = checkpoint
        self.devinfo = devinfo

    def write_checkpoint(self, entries: list[dict[str, Any]]) -> None:
        self.checkpoint.write_text(json.dumps({"Data": {"PodDeviceEntries": entries}, "Checksum": 0}))

    def calls(self, network: str, container_id: str, command: str = "ADD") -> list[dict[str, Any]]:
        return [
            c
            for c in recorded_calls(self.node.record_dir)
            if c["stdin"].get("name") == network
            and c["env"].get("CNI_CONTAINERID") == container_id
            and c["command"] == command
        ]


def recorder_nad(node: GatewayNode, name: str, resource: str, **extra: Any) -> dict[str, Any]:
    config = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "recorder",
        "recordDir": str(node.record_dir),
        "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True},
        **extra,
    }
    return nad(name, config, **{RESOURCE_NAME: resource})


@pytest.fixture(scope="module")
def device_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceNode]:
    root = tmp_path_factory.mktemp("dv")
    bin_dir = make_bin_dir(root / "bin", with_reference=False)
    (root / "kl").mkdir()
    (root / "dp").mkdir()
    socket_path = str(root / "kl" / "kubelet.sock")
    checkpoint = root / "dp" / "kubelet_internal_checkpoint"
    devinfo = root / "devinfo"
    inst = make_instance(
        root,
        binDir=str(bin_dir),
        clusterNetwork="10-dv.conf",
        podWaitMs=1500,
        podResourcesSocket=socket_path,
        devicePluginCheckpoint=str(checkpoint),
        deviceInfoDir=str(devinfo),
    )
    node = GatewayNode(inst, master="", bridge="", ipam_dir=root / "ipam", record_dir=root / "rec")
    node.record_dir.mkdir()
    cluster = {"cniVersion": "1.0.0", "name": "dv-cluster", "type": "recorder", "recordDir": str(node.record_dir)}
    (Path(inst.config["cniConfigDir"]) / "10-dv.conf").write_text(json.dumps(cluster))
    node.write_nads(
        recorder_nad(node, "sriov-a", SRIOV),
        # No CNIDeviceInfoFile capability: the delegate is not told where to write.
        nad(
            "sriov-b",
            {
                "cniVersion": "1.0.0",
                "name": "sriov-b",
                "type": "recorder",
                "recordDir": str(node.record_dir),
                "capabilities": {"deviceID": True},
            },
            **{RESOURCE_NAME: SRIOV},
        ),
        recorder_nad(node, "rdma-self", RDMA, deviceInfo=DELEGATE_INFO),
        filename="nads.json",
    )
    with kubelet_thread(FakeKubelet(), socket_path) as kubelet, running_services(inst, "cache", "executor", "gateway"):
        yield DeviceNode(node, kubelet, checkpoint, devinfo)


def device_ids(dn: DeviceNode, cid: str) -> dict[str, tuple[str, str]]:
    """network -> (runtimeConfig.deviceID, config deviceID) as each delegate saw them."""
    out = {}
    for network in ("sriov-a", "sriov-b", "rdma-self"):
        for call in dn.calls(network, cid):
            stdin = call["stdin"]
            out[network] = (stdin.get("runtimeConfig", {}).get("deviceID", ""), stdin.get("deviceID", ""))
    return out


def test_device_ids_from_the_kubelet_and_device_info_in_network_status(
    device_node: DeviceNode, pod_netns: Netns
) -> None:
    dn, node = device_node, device_node.node
    uid = "0d7c5b0e-0000-4000-8000-0000000000a1"
    dn.kubelet.kubelet.pods = [
        pod_resources("default", "dv1", {"app": {SRIOV: ["vf-b", "vf-a"]}, "side": {RDMA: ["mlx-1"]}}),
    ]
    dn.kubelet.kubelet.get = "unimplemented"  # a 1.20-era kubelet: List only
    dn.write_checkpoint([{"PodUID": uid, "ResourceName": SRIOV, "DeviceIDs": {"0": ["from-checkpoint"]}}])
    dp_file = Path(dp_device_info_path(str(dn.devinfo), SRIOV, "vf-a"))
    dp_file.parent.mkdir(parents=True, exist_ok=True)
    dp_file.write_text(json.dumps(DP_INFO))
    node.write_pod("dv1", "sriov-a,sriov-b,rdma-self", uid=uid)
    cid = new_container_id()

    status, body = node.cni("ADD", pod_netns, cid, "dv1", uid=uid)
    assert status == 200, body

    # Sorted device IDs handed out in attach order; the checkpoint was not needed.
    assert device_ids(dn, cid) == {
        "sriov-a": ("vf-a", "vf-a"),
        "sriov-b": ("vf-b", "vf-b"),
        "rdma-self": ("mlx-1", "mlx-1"),
    }
    assert "List" in dn.kubelet.kubelet.calls
    (sriov_a,) = dn.calls("sriov-a", cid)
    info_a = cni_device_info_path(str(dn.devinfo), "default/sriov-a", cid, "net1")
    assert sriov_a["stdin"]["runtimeConfig"]["CNIDeviceInfoFile"] == info_a
    (sriov_b,) = dn.calls("sriov-b", cid)
    assert "CNIDeviceInfoFile" not in sriov_b["stdin"].get("runtimeConfig", {})
    (cluster,) = dn.calls("dv-cluster", cid)
    assert "deviceID" not in cluster["stdin"] and "runtimeConfig" not in cluster["stdin"]

    entries = {e["name"]: e for e in node.network_status("dv1")}
    assert entries["dv-cluster"]["interface"] == "eth0" and "device-info" not in entries["dv-cluster"]
    assert entries["default/sriov-a"]["device-info"] == DP_INFO  # from the device plugin's file
    assert "device-info" not in entries["default/sriov-b"]  # nobody provided one
    assert entries["default/rdma-self"]["device-info"] == DELEGATE_INFO  # written by the delegate
    info_files = sorted(p.name for p in (dn.devinfo / "cni").iterdir())
    assert info_files == sorted(
        os.path.basename(cni_device_info_path(str(dn.devinfo), f"default/{n}", cid, i))
        for n, i in (("sriov-a", "net1"), ("rdma-self", "net3"))
    )

    status, body = node.cni("DEL", pod_netns, cid, "dv1", uid=uid)
    assert status == 200, body
    assert not any(cid in p.name for p in (dn.devinfo / "cni").iterdir())
    assert dp_file.exists()  # the device plugin's file is not ours to remove
    dp_file.unlink()


def test_checkpoint_when_the_kubelet_socket_is_absent(device_node: DeviceNode, pod_netns: Netns) -> None:
    dn, node = device_node, device_node.node
    uid = "0d7c5b0e-0000-4000-8000-0000000000a2"
    dn.kubelet.stop()
    try:
        assert not os.path.exists(dn.kubelet.socket_path)
        dn.write_checkpoint(
            [
                {"PodUID": "someone-else", "ResourceName": SRIOV, "DeviceIDs": {"0": ["vf-x"]}},
                {"PodUID": uid, "ResourceName": SRIOV, "DeviceIDs": {"1": ["vf-9"], "0": ["vf-3"]}},
            ]
        )
        node.write_pod("dv2", "sriov-a,sriov-b", uid=uid)
        cid = new_container_id()
        status, body = node.cni("ADD", pod_netns, cid, "dv2", uid=uid)
        assert status == 200, body
        assert device_ids(dn, cid) == {"sriov-a": ("vf-3", "vf-3"), "sriov-b": ("vf-9", "vf-9")}
        status, body = node.cni("DEL", pod_netns, cid, "dv2", uid=uid)
        assert status == 200, body
    finally:
        dn.kubelet.start()


def test_checkpoint_when_the_kubelet_knows_no_devices_for_the_pod(device_node: DeviceNode, pod_netns: Netns) -> None:
    dn, node = device_node, device_node.node
    uid = "0d7c5b0e-0000-4000-8000-0000000000a3"
    dn.kubelet.kubelet.pods = [pod_resources("default", "someone-else", {"app": {SRIOV: ["vf-0"]}})]
    dn.kubelet.kubelet.get = "served"
    dn.kubelet.kubelet.calls.clear()
    dn.write_checkpoint([{"PodUID": uid, "ResourceName": SRIOV, "DeviceIDs": ["vf-7"]}])
    node.write_pod("dv3", "sriov-a", uid=uid)
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dv3", uid=uid)
    assert status == 200, body
    assert dn.kubelet.kubelet.calls  # asked the kubelet first
    assert device_ids(dn, cid) == {"sriov-a": ("vf-7", "vf-7")}
    status, body = node.cni("DEL", pod_netns, cid, "dv3", uid=uid)
    assert status == 200, body


def test_no_device_anywhere_leaves_the_delegate_without_one(device_node: DeviceNode, pod_netns: Netns) -> None:
    dn, node = device_node, device_node.node
    uid = "0d7c5b0e-0000-4000-8000-0000000000a4"
    dn.kubelet.kubelet.pods = []
    dn.write_checkpoint([])
    node.write_pod("dv4", "sriov-a", uid=uid)
    cid = new_container_id()
    status, body = node.cni("ADD", pod_netns, cid, "dv4", uid=uid)
    assert status == 200, body
    (call,) = dn.calls("sriov-a", cid)
    assert "deviceID" not in call["stdin"] and "CNIDeviceInfoFile" not in call["stdin"].get("runtimeConfig", {})
    assert all("device-info" not in e for e in node.network_status("dv4"))
    status, body = node.cni("DEL", pod_netns, cid, "dv4", uid=uid)
    assert status == 200, body
