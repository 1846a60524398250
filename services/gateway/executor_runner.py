"""The PluginRunner the CNI logic uses, backed by the executor service."""

from __future__ import annotations

import time
from collections.abc import Sequence

from services.api import executor_pb2
from services.common import cni
from services.common.errors import DelegateFailed
from services.common.grpc_client import cni_error_from_status, status_code
from services.gateway.executor_client import ExecutorClient
from services.gateway.gateway_metrics import DELEGATE_SECONDS
from services.gateway.invoke import Outcome, PluginCall, Target


def _request(plugin: str, command: str, target: Target, stdin: bytes) -> executor_pb2.ExecPluginRequest:
    return executor_pb2.ExecPluginRequest(
        plugin=plugin,
        command=command,
        container_id=target.container_id,
        netns=target.netns,
        ifname=target.ifname,
        args=target.cni_args,
        config=stdin,
    )


def _failure(plugin: str, response: executor_pb2.ExecPluginResponse) -> DelegateFailed | None:
    """The plugin's own failure, if it failed."""
    if response.error.code:
        return DelegateFailed(
            response.error.code, response.error.msg or f"{plugin} failed", response.error.details, plugin=plugin
        )
    if response.exit_code != 0:
        return DelegateFailed(
            cni.IO_FAILURE,
            f"plugin {plugin!r} exited with status {response.exit_code}",
            response.stdout[:512].decode(errors="replace"),
            plugin=plugin,
        )
    return None


class ExecutorRunner:
    def __init__(self, client: ExecutorClient, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def run(self, plugin: str, command: str, target: Target, stdin: bytes) -> bytes:
        started = time.monotonic()
        outcome = "error"
        try:
            response = await self._client.exec_plugin(_request(plugin, command, target, stdin), timeout=self._timeout)
            if failure := _failure(plugin, response):
                raise failure
            outcome = "ok"
            return bytes(response.stdout)
        finally:
            DELEGATE_SECONDS.labels(plugin, command, outcome).observe(time.monotonic() - started)

    async def run_all(self, calls: Sequence[PluginCall], *, stop_at_failure: bool) -> list[Outcome]:
        """The calls in order in one executor round trip (ExecPlugins). The deadline is
        each call's own, summed; a delegate's time is the executor's measure of it."""
        if not calls:
            return []
        request = executor_pb2.ExecPluginsRequest(
            calls=[_request(c.plugin, c.command, c.target, c.stdin) for c in calls], stop_at_failure=stop_at_failure
        )
        response = await self._client.exec_plugins(request, timeout=self._timeout * len(calls))
        outcomes: list[Outcome] = []
        for call, result in zip(calls, response.results, strict=False):
            failure: cni.CniError | None
            if result.refused_code:
                failure = cni_error_from_status("executor", status_code(result.refused_code), result.refused_message)
            else:
                failure = _failure(call.plugin, result.response)
            outcomes.append(failure if failure is not None else bytes(result.response.stdout))
            outcome = "ok" if failure is None else "error"
            DELEGATE_SECONDS.labels(call.plugin, call.command, outcome).observe(result.response.duration_seconds)
        return outcomes
