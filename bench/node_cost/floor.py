"""The memory floor of the chosen libraries: what four processes cost a node
when each imports exactly the third-party and standard-library modules its
service imports at start-up, and runs a bare grpc.aio server with health and
reflection on a Unix socket (the gateway's also an aiohttp Unix site), with
none of the project's own code or data. Measured side by side (PSS divides
shared pages among the four), so it is the lowest PSS the services can reach
without dropping a library from a long-running process. Profiling only.

    .venv/bin/python -m bench.node_cost.floor
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.node_cost.memory import footprint

SERVICES = ("gateway", "cache", "executor", "certs")
REPO = Path(__file__).resolve().parents[2]

# The modules a service's entry point leaves in sys.modules, without the project's own.
LIST_MODULES = r"""
import json, sys
import services.{service}.__main__, services.{service}.server
own = ("services", "shim", "__main__")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] not in own)))
"""

# A process with those modules and a bare server: the floor of one service.
FLOOR_PROCESS = r"""
import asyncio, importlib, json, sys
modules = json.loads(sys.stdin.read())
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException:
        pass
import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

async def main():
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    reflection.enable_server_reflection(["grpc.health.v1.Health"], server)
    server.add_insecure_port("unix:" + sys.argv[1])
    await server.start()
    if "aiohttp.web" in modules:
        from aiohttp import web
        runner = web.AppRunner(web.Application())
        await runner.setup()
        await web.UnixSite(runner, sys.argv[1] + ".http").start()
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_up_modules(service: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", LIST_MODULES.format(service=service)],
        capture_output=True,
        check=True,
        cwd=REPO,
        text=True,
    )
    return list(json.loads(proc.stdout))


def measure(settle: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        procs: dict[str, subprocess.Popen[str]] = {}
        try:
            for service in SERVICES:
                modules = start_up_modules(service)
                proc = subprocess.Popen(
                    [sys.executable, "-c", FLOOR_PROCESS, f"{tmp}/{service}.sock"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=REPO,
                    text=True,
                )
                procs[service] = proc
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps(modules))
                proc.stdin.close()
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"the {service} floor process did not start")
                out[service] = {"modules": len(modules)}
            time.sleep(settle)
            for service, proc in procs.items():
                fp = footprint(proc.pid)
                out[service].update(
                    pss_mib=fp.pss_kib / 1024, rss_mib=fp.rss_kib / 1024, anon_mib=fp.pss_anon_kib / 1024
                )
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading /proc")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    figures = measure(args.settle)
    print("floor of the chosen libraries, four processes side by side (MiB)")
    print(f"{'service':10s} {'modules':>8s} {'PSS':>7s} {'anon':>7s} {'RSS':>7s}")
    for service, row in figures.items():
        print(f"{service:10s} {row['modules']:8.0f} {row['pss_mib']:7.1f} {row['anon_mib']:7.1f} {row['rss_mib']:7.1f}")
    total = sum(row["pss_mib"] for row in figures.values())
    rss = sum(row["rss_mib"] for row in figures.values())
    print(f"{'total':10s} {'':8s} {total:7.1f} {'':7s} {rss:7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
