"""What a device-ID lookup costs an ADD: the kubelet PodResources API (Get, and
List on a node with many pods) against a real grpc.aio server on a Unix
socket, and the checkpoint-file fallback.

Run: .venv/bin/python -m bench.gateway.device_info [--pods 110] [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.gateway.device_info import DevicePluginCheckpoint, KubeletDeviceInfo
from services.gateway.podresources import PodResourcesClient
from tests.gateway.podresources_server import FakeKubelet, pod_resources, serve

RESOURCE = "intel.com/sriov_netdevice"


async def measure(label: str, rounds: int, lookup: Callable[[], Awaitable[object]]) -> None:
    await lookup()  # connect once: the channel is long-lived in the gateway
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await lookup()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(f"{label:<40} median {statistics.median(samples):6.3f} ms   p99 {p99:6.3f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=110, help="pods on the node (kubelet default max: 110)")
    parser.add_argument("--rounds", type=int, default=300)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bdi") as tmp:
        socket_path = str(Path(tmp) / "kubelet.sock")
        pods = [
            pod_resources("default", f"pod-{i}", {"app": {RESOURCE: [f"0000:{i // 8:02x}:00.{i % 8}"]}})
            for i in range(opts.pods)
        ]
        checkpoint = Path(tmp) / "kubelet_internal_checkpoint"
        entries = [
            {"PodUID": f"uid-{i}", "ContainerName": "app", "ResourceName": RESOURCE, "DeviceIDs": {"0": [f"vf{i}"]}}
            for i in range(opts.pods)
        ]
        checkpoint.write_text(json.dumps({"Data": {"PodDeviceEntries": entries}, "Checksum": 0}))
        target = f"pod-{opts.pods // 2}"
        for get in ("served", "unimplemented"):
            kubelet = FakeKubelet(pods=pods, get=get)
            client = PodResourcesClient(socket_path)
            source = KubeletDeviceInfo(client, DevicePluginCheckpoint(str(checkpoint)))
            async with serve(kubelet, socket_path):
                method = "Get" if get == "served" else f"List ({opts.pods} pods)"
                await measure(
                    f"kubelet PodResources {method}",
                    opts.rounds,
                    functools.partial(source.device_ids, "default", target, ""),
                )
            await client.close()
        fallback = KubeletDeviceInfo(None, DevicePluginCheckpoint(str(checkpoint)))
        await measure(
            f"checkpoint file ({opts.pods} entries)",
            opts.rounds,
            lambda: fallback.device_ids("default", target, f"uid-{opts.pods // 2}"),
        )


if __name__ == "__main__":
    asyncio.run(main())
