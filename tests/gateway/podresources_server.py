"""A real grpc.aio server implementing the kubelet's `v1.PodResourcesLister` on a
Unix socket (there is no kubelet here), for the device-info tests. Serve it on
the test's own loop (`serve()`), or on a thread of its own (`KubeletThread`)
when the test is synchronous and the gateway runs in another process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from services.api import podresources_pb2, podresources_pb2_grpc


def pod_resources(
    namespace: str, name: str, containers: Mapping[str, Mapping[str, Sequence[str]]]
) -> podresources_pb2.PodResources:
    """{container: {resource: [device IDs]}} as the kubelet reports it."""
    return podresources_pb2.PodResources(
        name=name,
        namespace=namespace,
        containers=[
            podresources_pb2.ContainerResources(
                name=container,
                devices=[
                    podresources_pb2.ContainerDevices(
                        resource_name=resource,
                        device_ids=list(ids),
                        topology=podresources_pb2.TopologyInfo(nodes=[podresources_pb2.NUMANode(ID=0)]),
                    )
                    for resource, ids in devices.items()
                ],
                cpu_ids=[2, 3],
            )
            for container, devices in containers.items()
        ],
    )


@dataclass
class FakeKubelet(podresources_pb2_grpc.PodResourcesListerServicer):  # type: ignore[misc]
    """`get`: "served" answers Get, "unimplemented" leaves it to the generated base
    (UNIMPLEMENTED, as kubelets before 1.27), "disabled" answers as a kubelet with the
    feature gate off. `delay` stalls every answer (a hung kubelet)."""

    pods: list[podresources_pb2.PodResources] = field(default_factory=list)
    get: str = "served"
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)

    async def List(
        self, request: podresources_pb2.ListPodResourcesRequest, context: grpc.aio.ServicerContext
    ) -> podresources_pb2.ListPodResourcesResponse:
        self.calls.append("List")
        await asyncio.sleep(self.delay)
        return podresources_pb2.ListPodResourcesResponse(pod_resources=self.pods)

    async def Get(
        self, request: podresources_pb2.GetPodResourcesRequest, context: grpc.aio.ServicerContext
    ) -> podresources_pb2.GetPodResourcesResponse:
        self.calls.append("Get")
        await asyncio.sleep(self.delay)
        if self.get == "unimplemented":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        if self.get == "disabled":
            await context.abort(grpc.StatusCode.UNKNOWN, "PodResources API Get method disabled")
        for pod in self.pods:
            if pod.name == request.pod_name and pod.namespace == request.pod_namespace:
                return podresources_pb2.GetPodResourcesResponse(pod_resources=pod)
        await context.abort(
            grpc.StatusCode.UNKNOWN, f"pod {request.pod_name} in namespace {request.pod_namespace} not found"
        )
        raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def serve(kubelet: FakeKubelet, socket_path: str) -> AsyncIterator[grpc.aio.Server]:
    server = grpc.aio.server()
    podresources_pb2_grpc.add_PodResourcesListerServicer_to_server(kubelet, server)
    server.add_insecure_port(f"unix://{socket_path}")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


class KubeletThread:
    """The fake kubelet on its own thread and event loop, started and stopped at will."""

    def __init__(self, kubelet: FakeKubelet, socket_path: str) -> None:
        self.kubelet = kubelet
        self.socket_path = socket_path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    async def _start(self) -> None:
        self._server = grpc.aio.server()
        podresources_pb2_grpc.add_PodResourcesListerServicer_to_server(self.kubelet, self._server)
        self._server.add_insecure_port(f"unix://{self.socket_path}")
        await self._server.start()

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
        self._server = None

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def close(self) -> None:
        if self._thread.is_alive():
            self.stop()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def kubelet_thread(kubelet: FakeKubelet, socket_path: str) -> Iterator[KubeletThread]:
    runner = KubeletThread(kubelet, socket_path)
    try:
        runner.start()
        yield runner
    finally:
        runner.close()
