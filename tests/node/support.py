"""A real node for the tests: ../shared/node's containerd (CRI), kubelet and
kube-scheduler, with the CNI conf and bin dirs the manifests mount
(/etc/cni/net.d, /opt/cni/bin), the latter filled with links to Debian's
plugins as the distro package leaves it; plus what the tests look at on the
host (host-local leases, pod network namespaces, trees of host paths)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support.kube_identity import KUBE_ROOT
from tests.support.services import REPO
from tests.support.waiting import poll_until

NODE_KIT = REPO.parent / "shared" / "node"
NODE_ROOT = Path(os.environ.get("NODE_ROOT", Path.home() / ".cache" / "test-node"))
NODE_NAME = os.environ.get("NODE_NAME", "test-node")
CONF_DIR = Path("/etc/cni/net.d")
BIN_DIR = Path("/opt/cni/bin")
DISTRO_PLUGINS = Path("/usr/lib/cni")
HOST_LOCAL = Path("/var/lib/cni/networks")
IMAGE = "localhost/multus-grpc:dev"
# The node's primary network, as a cluster's CNI would leave it: what 00-multus.conf wraps.
PRIMARY_NAME = "node-net"
PRIMARY_FILE = CONF_DIR / "10-node-net.conflist"
PRIMARY = {
    "cniVersion": "0.4.0",
    "name": PRIMARY_NAME,
    "plugins": [
        {
            "type": "bridge",
            "bridge": "nodenet0",
            "isGateway": True,
            "isDefaultGateway": True,  # the kit routes the kubernetes Service for pods with a default route
            "ipam": {"type": "host-local", "subnet": "10.94.0.0/24"},
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

T = TypeVar("T")


def kit_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "NODE_ROOT": str(NODE_ROOT),
        "KUBE_ROOT": str(KUBE_ROOT),
        "NODE_NAME": NODE_NAME,
        "CNI_CONF_DIR": str(CONF_DIR),
        "CNI_BIN_DIR": str(BIN_DIR),
        "NODE_DEFAULT_CNI": "0",
        "PYTHON": sys.executable,
        **extra,
    }


def kit(script: str, *args: str, timeout: float = 900, check: bool = True) -> str:
    result = subprocess.run(
        [str(NODE_KIT / script), *args], env=kit_env(), capture_output=True, text=True, timeout=timeout
    )
    out = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed ({result.returncode}):\n{out[-4000:]}")
    return out


def eventually(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    return poll_until(check, timeout=timeout, what=what, interval=interval)


@dataclass
class HostCniDirs:
    """/etc/cni/net.d and /opt/cni/bin as a distro and the cluster's CNI leave them;
    remembers what it created so the host ends as it began."""

    created: list[Path] = field(default_factory=list)

    def prepare(self) -> None:
        for directory in (CONF_DIR, BIN_DIR):
            missing = []
            parent = directory
            while not parent.exists():
                missing.append(parent)
                parent = parent.parent
            directory.mkdir(parents=True, exist_ok=True)
            self.created.extend(reversed(missing))
        for plugin in sorted(DISTRO_PLUGINS.iterdir()):
            link = BIN_DIR / plugin.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(plugin)  # absolute link into /usr/lib/cni, as the Debian package
                self.created.append(link)
        if not PRIMARY_FILE.exists():
            PRIMARY_FILE.write_text(json.dumps(PRIMARY, indent=2))
            self.created.append(PRIMARY_FILE)

    def restore(self) -> None:
        for path in reversed(self.created):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                try:
                    path.rmdir()
                except OSError as exc:
                    print(f"host path {path} kept: {exc.strerror}: {sorted(os.listdir(path))}", file=sys.stderr)


def leases(network: str) -> list[str]:
    """host-local's allocations for `network` (IP-named files)."""
    directory = HOST_LOCAL / network
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit() or ":" in p.name)


def netns_links(netns: str) -> dict[str, list[str]]:
    """Interface name -> global addresses inside a network namespace (by path)."""
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-j", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {
        link["ifname"]: [
            f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") != "link"
        ]
        for link in json.loads(out)
    }


def tree(path: Path) -> dict[str, str]:
    """What is at `path` and below: type, mode, and content digest; absent -> {}."""
    if not path.exists() and not path.is_symlink():
        return {}
    found: dict[str, str] = {}
    entries: Iterable[Path] = [path]
    if path.is_dir() and not path.is_symlink():
        entries = [path, *sorted(path.rglob("*"))]
    for entry in entries:
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[str(entry)] = f"link -> {os.readlink(entry)}"
        elif stat.S_ISDIR(st.st_mode):
            found[str(entry)] = f"dir {stat.S_IMODE(st.st_mode):o}"
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()[:16]
            found[str(entry)] = f"file {stat.S_IMODE(st.st_mode):o} {digest}"
        else:
            found[str(entry)] = f"special {stat.S_IFMT(st.st_mode):o}"
    return found


def processes_matching(*needles: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            pids.append(int(entry.name))
    return pids


def json_of(text: str) -> Any:
    return json.loads(text)
