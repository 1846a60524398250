"""Benchmark: one delegate call through the executor (gRPC over the Unix socket,
validation, setpriv, process group) against exec'ing the same plugin directly.

    .venv/bin/python -m bench.executor.exec_overhead [--calls 200]

Runs the bridge plugin's VERSION (no netns work) and the recorder's DEL, so the
figures are the executor's own overhead."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from services.api import executor_pb2
from services.gateway.executor_client import ExecutorClient
from tests.executor.conftest import launch_executor, make_executor_instance


def direct(plugin: Path, command: str, stdin: bytes, calls: int) -> list[float]:
    env = {"CNI_COMMAND": command, "CNI_PATH": str(plugin.parent), "PATH": "/usr/bin:/bin"}
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        subprocess.run([str(plugin)], input=stdin, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


async def through_executor(
    socket: str, plugin: str, command: str, stdin: bytes, calls: int
) -> tuple[list[float], list[float]]:
    client = ExecutorClient([socket])
    req = executor_pb2.ExecPluginRequest(plugin=plugin, command=command, config=stdin)
    times = []
    inside = []
    try:
        await client.exec_plugin(req, timeout=10)  # connect
        for _ in range(calls):
            started = time.perf_counter()
            resp = await client.exec_plugin(req, timeout=10)
            assert not resp.HasField("error"), resp.error
            times.append(time.perf_counter() - started)
            inside.append(resp.duration_seconds)
    finally:
        await client.close()
    return times, inside


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"median {statistics.median(ms):6.2f} ms  p90 {ms[int(len(ms) * 0.9)]:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inst, bin_dir, _ = make_executor_instance(Path(tmp))
        proc = launch_executor(inst)
        try:
            cases = [
                ("bridge", "VERSION", b'{"cniVersion":"1.0.0"}'),
                ("recorder", "DEL", json.dumps({"cniVersion": "1.0.0"}).encode()),
            ]
            for plugin, command, stdin in cases:
                d = direct(bin_dir / plugin, command, stdin, args.calls)
                e, inside = asyncio.run(
                    through_executor(inst.grpc_socket("executor"), plugin, command, stdin, args.calls)
                )
                print(f"{plugin:9} {command:8} direct   {summary(d)}")
                print(f"{plugin:9} {command:8} executor {summary(e)}")
                print(f"{plugin:9} {command:8} (plugin process as the executor timed it: {summary(inside)})")
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
