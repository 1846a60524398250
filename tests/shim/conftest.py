"""Fixtures: the shim installed by the real installer, and a way to call it as a runtime does."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shim import install
from tests.support.netns import unique_name

CONTAINER_ID = "0123456789abcdef"
POD_ARGS = (
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
    f"K8S_POD_INFRA_CONTAINER_ID={CONTAINER_ID};K8S_POD_UID=7f0c"
)


@dataclass
class ShimCall:
    returncode: int
    stdout: bytes
    stderr: bytes

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def shim_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("cni-bin")
    install.install(bin_dir, install.DEFAULT_INTERPRETER)
    return bin_dir / "multus-shim"


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes: keep it short, outside pytest's deep tmp.
    path = Path("/tmp") / unique_name("shim")
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def network_conf(socket_dir: Path, cni_version: str = "1.0.0", **extra: Any) -> bytes:
    conf = {
        "cniVersion": cni_version,
        "name": "multus-cni-network",
        "type": "multus-shim",
        "daemonSocketDir": str(socket_dir),
        **extra,
    }
    return json.dumps(conf).encode()


def cni_env(command: str, container_id: str = CONTAINER_ID, **overrides: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": "/var/run/netns/test",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": POD_ARGS,
        "PATH": "/usr/sbin:/usr/bin",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


def call_shim(shim: Path, env: dict[str, str], stdin: bytes, timeout: float = 30) -> ShimCall:
    proc = subprocess.run([str(shim)], input=stdin, env=env, capture_output=True, timeout=timeout)
    return ShimCall(proc.returncode, proc.stdout, proc.stderr)
