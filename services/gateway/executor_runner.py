"""The PluginRunner the CNI logic uses, backed by the executor service."""

from __future__ import annotations

import time

from services.api import executor_pb2
from services.common import cni
from services.common.errors import DelegateFailed
from services.gateway.executor_client import ExecutorClient
from services.gateway.gateway_metrics import DELEGATE_SECONDS
from services.gateway.invoke import Target


class ExecutorRunner:
    def __init__(self, client: ExecutorClient, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def run(self, plugin: str, command: str, target: Target, stdin: bytes) -> bytes:
        request = executor_pb2.ExecPluginRequest(
            plugin=plugin,
            command=command,
            container_id=target.container_id,
            netns=target.netns,
            ifname=target.ifname,
            args=target.cni_args,
            config=stdin,
        )
        started = time.monotonic()
        outcome = "error"
        try:
            response = await self._client.exec_plugin(request, timeout=self._timeout)
            if response.error.code:
                raise DelegateFailed(
                    response.error.code, response.error.msg or f"{plugin} failed", response.error.details, plugin=plugin
                )
            if response.exit_code != 0:
                raise DelegateFailed(
                    cni.IO_FAILURE,
                    f"plugin {plugin!r} exited with status {response.exit_code}",
                    response.stdout[:512].decode(errors="replace"),
                    plugin=plugin,
                )
            outcome = "ok"
            return bytes(response.stdout)
        finally:
            DELEGATE_SECONDS.labels(plugin, command, outcome).observe(time.monotonic() - started)
