"""Session fixtures of the real-node suite (`./scripts/test.sh -m node`): the
host's CNI dirs as a distro leaves them, the node kit's containerd (and later
its kubelet and scheduler), the project's image imported into it. Everything
is stopped and removed at the end, even on failure."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.support import IMAGE, NODE_KIT, NODE_ROOT, HostCniDirs, kit
from tests.support.services import REPO


class NodeKit:
    """The node kit's processes, started on demand, stopped once at the end."""

    def __init__(self) -> None:
        self.kubelet = False
        self.image = False

    def start_containerd(self) -> None:
        kit("start.sh")

    def start_kubelet(self) -> None:
        if not self.kubelet:
            kit("start.sh", "--scheduler")
            self.kubelet = True

    def restart_containerd(self) -> None:
        pid_file = NODE_ROOT / "run/pids/containerd.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, 15)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
        kit("start.sh", *(["--scheduler"] if self.kubelet else []))

    def import_image(self) -> None:
        """The project's image, built from compose/Containerfile exactly as docs/deployment.md says."""
        if not self.image:
            kit("image.sh", str(REPO), "-f", "compose/Containerfile", "-t", IMAGE, "--import", timeout=1200)
            self.image = True


@pytest.fixture(scope="session")
def host_cni() -> Iterator[HostCniDirs]:
    if shutil.which("nsenter") is None or not (NODE_KIT / "start.sh").exists():
        pytest.fail("the node kit (../shared/node) and util-linux nsenter are required")
    dirs = HostCniDirs()
    dirs.prepare()
    try:
        yield dirs
    finally:
        dirs.restore()


@pytest.fixture(scope="session")
def node_kit(kube_api: Path, host_cni: HostCniDirs) -> Iterator[NodeKit]:
    kit("build.sh", timeout=1800)
    node = NodeKit()
    try:
        node.start_containerd()
        yield node
    finally:
        print(kit("stop.sh", timeout=600, check=False)[-3000:])
