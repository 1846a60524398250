"""Start the real service processes on temporary sockets, as the supervisor would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
CNI_BIN = "/usr/lib/cni"


@dataclass
class Instance:
    """One isolated set of paths: a daemon config and every directory it names."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "daemon-config.json"

    @property
    def run_dir(self) -> Path:
        return Path(self.config["runDir"])

    @property
    def socket_dir(self) -> Path:
        return Path(self.config["socketDir"])

    @property
    def cluster_dir(self) -> Path:
        return Path(self.config["clusterDir"])

    def grpc_socket(self, service: str) -> str:
        return str(self.run_dir / "grpc" / f"{service}.sock")

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config, indent=2))


def make_instance(root: Path, **overrides: Any) -> Instance:
    """A daemon config whose every path lives under `root`."""
    for sub in ("run", "sock", "cluster", "netd", "multus-netd", "cnidir", "certs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "runDir": str(root / "run"),
        "socketDir": str(root / "sock"),
        "clusterDir": str(root / "cluster"),
        "cniConfigDir": str(root / "netd"),
        "multusAutoconfigDir": str(root / "netd"),
        "confDir": str(root / "multus-netd"),
        "cniDir": str(root / "cnidir"),
        "deviceInfoDir": str(root / "devinfo"),  # the default is the host's /run/k8s.cni.cncf.io
        "binDir": CNI_BIN,
        "logLevel": "debug",
    }
    config.update(overrides)
    inst = Instance(root, config)
    inst.write_config()
    return inst


def wait_serving(socket_path: str, timeout: float = 20.0, service: str = "") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if os.path.exists(socket_path):
            try:
                with grpc.insecure_channel(f"unix://{socket_path}") as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError as exc:
                last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{socket_path} not SERVING after {timeout}s: {last}")


@dataclass
class ServiceProcess:
    service: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_service(inst: Instance, service: str, *extra: str, env: dict[str, str] | None = None) -> ServiceProcess:
    log_path = inst.root / f"{service}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}", "--config", str(inst.config_path), *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
        env={**os.environ, "MULTUS_NODE_NAME": "node-a", **(env or {})},
        start_new_session=True,
    )
    return ServiceProcess(service, proc, log_path)


@contextmanager
def running_services(inst: Instance, *services: str, wait: bool = True) -> Iterator[dict[str, ServiceProcess]]:
    """Start services in order, each waited for (health SERVING) before the next; stop all on exit."""
    with ExitStack() as stack:
        procs: dict[str, ServiceProcess] = {}
        for service in services:
            sp = start_service(inst, service)
            stack.callback(sp.stop)
            procs[service] = sp
            if wait:
                try:
                    wait_serving(inst.grpc_socket(service))
                except TimeoutError as exc:
                    raise TimeoutError(f"{exc}\n--- {service} log ---\n{sp.log()[-4000:]}") from exc
        yield procs
