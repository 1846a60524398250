"""The kubelet PodResources API (`v1.PodResourcesLister` on
`/var/lib/kubelet/pod-resources/kubelet.sock`): which device-plugin devices the
kubelet allocated to a pod. The adapter only: one long-lived grpc.aio channel,
a short deadline per call, no retries (the caller falls back to the device-plugin
checkpoint file instead of waiting for a kubelet that is not there).

`Get` (one pod) is asked first because `List` returns every pod of the node; a
kubelet that does not serve `Get` (everything before 1.27, and later ones
without the KubeletPodResourcesGet feature gate) is remembered and asked with
`List`, which every v1 kubelet (1.20+) serves."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

import grpc

from services.api import podresources_pb2, podresources_pb2_grpc
from services.common.logs import get_logger
from services.gateway.device_info import PodResourcesUnavailable

log = get_logger(__name__)

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
DEFAULT_TIMEOUT = 1.0
# As upstream Multus: a node with many pods answers List with a big message.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def _get_unsupported(err: grpc.aio.AioRpcError) -> bool:
    """Get is missing (older kubelet) or switched off (feature gate): use List from now on.
    The kubelet answers a disabled Get with a plain error ("... Get method disabled")."""
    if err.code() == grpc.StatusCode.UNIMPLEMENTED:
        return True
    return err.code() == grpc.StatusCode.UNKNOWN and "disabled" in (err.details() or "").lower()


def _pod_not_found(err: grpc.aio.AioRpcError) -> bool:
    # The kubelet answers Get for a pod it does not know with a plain error ("pod ... not found").
    return (
        err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNKNOWN)
        and "not found" in (err.details() or "").lower()
    )


class PodResourcesClient:
    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: podresources_pb2_grpc.PodResourcesListerStub | None = None
        self._get_supported = True

    def available(self) -> bool:
        """The socket exists (a stat, as upstream's check; nothing is dialled)."""
        try:
            return stat.S_ISSOCK(os.stat(self.socket_path).st_mode)
        except OSError:
            return False

    def _lister(self) -> podresources_pb2_grpc.PodResourcesListerStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(
                f"unix://{self.socket_path}",
                options=[
                    ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
                    # A restarted kubelet recreates the socket: reconnect soon, not after minutes.
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ],
            )
            self._stub = podresources_pb2_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    async def pod_resources(self, namespace: str, name: str) -> Sequence[podresources_pb2.PodResources]:
        """The kubelet's PodResources entries that may belong to the pod (List answers
        every pod of the node; the caller picks the pod by namespace and name)."""
        if not self.available():
            raise PodResourcesUnavailable(f"no kubelet PodResources socket at {self.socket_path}")
        lister = self._lister()
        try:
            if self._get_supported:
                try:
                    got = await lister.Get(
                        podresources_pb2.GetPodResourcesRequest(pod_name=name, pod_namespace=namespace),
                        timeout=self._timeout,
                        wait_for_ready=False,
                    )
                    return [got.pod_resources] if got.HasField("pod_resources") else []
                except grpc.aio.AioRpcError as err:
                    if _pod_not_found(err):
                        return []
                    if not _get_unsupported(err):
                        raise
                    self._get_supported = False
                    log.info("kubelet PodResources Get not served, using List", code=err.code().name)
            listed = await lister.List(
                podresources_pb2.ListPodResourcesRequest(), timeout=self._timeout, wait_for_ready=False
            )
            return list(listed.pod_resources)
        except grpc.aio.AioRpcError as err:
            raise PodResourcesUnavailable(f"kubelet PodResources: {err.code().name}: {err.details() or ''}") from err

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub = None
