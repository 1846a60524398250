"""Benchmark: what `default-route` adds to an ADD, one SetDefaultRoutes call per
attachment, through the gateway's ExecutorClient (async, one long-lived
channel, as in production) against a real executor and a real netns;
ListInterfaces (read-only netlink) for comparison.

    .venv/bin/python -m bench.executor.default_route [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.gateway.executor_client import ExecutorClient
from tests.executor.conftest import launch_executor, make_executor_instance
from tests.support.netns import Netns, ip, netns


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


async def measure(socket: str, ns: Netns, calls: int) -> dict[str, list[float]]:
    client = ExecutorClient([socket])
    try:
        await client.list_interfaces(ns.path, timeout=10)  # connect and warm up

        async def drop() -> object:
            return await client.set_default_routes(
                ns.path, "eth0", drop_ipv4=True, drop_ipv6=True, gateways=(), timeout=5
            )

        async def gateway() -> object:
            return await client.set_default_routes(
                ns.path, "net1", drop_ipv4=False, drop_ipv6=False, gateways=("10.2.0.1",), timeout=5
            )

        return {
            "ListInterfaces": await timed(calls, lambda: client.list_interfaces(ns.path, timeout=5)),
            "SetDefaultRoutes (drop both families)": await timed(calls, drop),
            "SetDefaultRoutes (replace via gateway)": await timed(calls, gateway),
        }
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, netns("drb") as ns:
        ip("link", "add", "eth0", "type", "veth", "peer", "name", "net1", netns=ns.name)
        for link, address in (("eth0", "10.1.0.2/24"), ("net1", "10.2.0.2/24")):
            ip("addr", "add", address, "dev", link, netns=ns.name)
            ip("link", "set", link, "up", netns=ns.name)
        inst, _, _ = make_executor_instance(Path(tmp))
        proc = launch_executor(inst)
        try:
            results = asyncio.run(measure(inst.grpc_socket("executor"), ns, args.calls))
        finally:
            proc.stop()
    for name, times in results.items():
        ordered = sorted(times)
        print(
            f"{name:40s} median {statistics.median(times) * 1000:6.2f} ms"
            f"  p90 {ordered[int(len(ordered) * 0.9)] * 1000:6.2f} ms  ({len(times)} calls)"
        )


if __name__ == "__main__":
    main()
