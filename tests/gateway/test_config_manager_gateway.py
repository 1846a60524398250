"""The gateway process runs the config manager: its readiness (gRPC health,
/readyz, the probes Kubernetes runs) follows the CNI config, its liveness does
not, and stopping it leaves 00-multus.conf in place."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.gateway.conftest import http_call
from tests.support.services import REPO, Instance, make_instance, start_service, wait_serving

PRIMARY = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "bridge", "bridge": "cni0"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(inst: Instance, *args: str) -> int:
    cmd = [sys.executable, "-m", "services.common.probe", "--config", str(inst.config_path), "--service", "gateway"]
    return subprocess.run([*cmd, *args], cwd=REPO, capture_output=True, timeout=30).returncode


def _readyz(inst: Instance) -> int:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(inst.socket_dir / "multus.sock"))
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return int(s.recv(64).split()[1])


def _cni(inst: Instance, command: str) -> tuple[int, bytes]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee",
        "CNI_NETNS": "/var/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    }
    config = base64.b64encode(json.dumps({"cniVersion": "1.0.0", "name": "multus", "type": "multus-shim"}).encode())
    return http_call(
        str(inst.socket_dir / "multus.sock"),
        "POST",
        "/cni",
        json.dumps({"env": env, "config": config.decode()}).encode(),
    )


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_gateway_readiness_follows_the_config_manager(tmp_path: Path) -> None:
    health_port = _free_port()
    inst = make_instance(tmp_path, servicePorts={"gateway": {"healthPort": health_port}})
    netd = Path(inst.config["cniConfigDir"])
    gateway = start_service(inst, "gateway")
    try:
        # Alive, but not ready: no primary network to delegate to yet.
        _wait(lambda: _probe(inst, "--liveness") == 0)
        assert _probe(inst) == 1
        assert _probe(inst, "--unix") == 1
        _wait(lambda: (inst.socket_dir / "multus.sock").exists())
        assert _readyz(inst) == 503
        # A call sent without probing first (our shim's fast path) is refused while not
        # ready, except DEL, which needs no readiness (nothing recorded here: a no-op).
        status, body = _cni(inst, "ADD")
        assert status == 503 and json.loads(body)["code"] == 11
        assert _cni(inst, "DEL") == (200, b"")

        (netd / "10-cluster.conflist").write_text(json.dumps(PRIMARY))
        wait_serving(inst.grpc_socket("gateway"), timeout=15)
        assert _probe(inst) == 0  # TCP health port, as the native and exec probes ask
        assert _probe(inst, "--unix") == 0
        assert _readyz(inst) == 200
        conf = json.loads((netd / "00-multus.conf").read_text())
        assert conf["clusterNetwork"] == str(netd / "10-cluster.conflist")
        assert conf["daemonSocketDir"] == str(inst.socket_dir)
    finally:
        code = gateway.stop()
    assert code == 0, gateway.log()[-2000:]
    assert (netd / "00-multus.conf").exists(), "a gateway restart must not remove the node's CNI config"
    # Nobody listening any more: the probe fails fast instead of hanging.
    assert _probe(inst, "--timeout", "1") == 1
