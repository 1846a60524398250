"""The README's demo: the four services under the local supervisor with a
file-backed cluster, a pod attached to three networks through the shim exactly
as kubelet would call it, the result shown, then DEL and a full tear-down.

Run as root: `./scripts/demo.sh` (or `.venv/bin/python -m compose.demo`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc

from compose.supervisor import wait_serving
from services.api import cache_pb2, cache_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "demo"
NETNS = "mdemo-pod"
VETH = ("mdemo-p0", "mdemo-p1")
BRIDGES = ("mdemo-br0", "mdemo-br1")
POD_NAMESPACE, POD_NAME, POD_UID = "default", "demo-pod", "3f6c1a52-8d7e-4b1e-9f3a-5d2c7e8a9b10"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def remove_leftovers() -> None:
    """A previous demo killed half-way must not break this one."""
    run("ip", "netns", "delete", NETNS, check=False)
    for link in (VETH[0], *BRIDGES):
        run("ip", "link", "delete", link, check=False)


def render(src: Path, dst: Path, values: dict[str, str]) -> None:
    text = src.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    dst.write_text(text)


def prepare(root: Path) -> Path:
    """Write the daemon config, the primary network and the cluster objects under `root`."""
    for sub in ("net.d", "cluster", "run", "sock", "cnidir", "bin", "ipam", "logs", "multus-net.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    values = {"ROOT": str(root), "MACVLAN_MASTER": VETH[0]}
    for src in (EXAMPLE / "net.d").iterdir():
        render(src, root / "net.d" / src.name, values)
    for src in (EXAMPLE / "cluster").iterdir():
        render(src, root / "cluster" / src.name, values)
    config = {
        "cniVersion": "1.0.0",
        "cniConfigDir": str(root / "net.d"),
        "multusAutoconfigDir": str(root / "net.d"),
        "multusConfigFile": "auto",
        "socketDir": str(root / "sock"),
        "daemonSocketDir": str(root / "sock"),
        "runDir": str(root / "run"),
        "cniDir": str(root / "cnidir"),
        "confDir": str(root / "multus-net.d"),
        "deviceInfoDir": str(root / "devinfo"),  # not the host's /run/k8s.cni.cncf.io
        "binDir": "/usr/lib/cni",
        "clusterDir": str(root / "cluster"),
        "logLevel": "info",
    }
    path = root / "daemon-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@contextmanager
def supervisor(config_path: Path, log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "compose.supervisor", "--config", str(config_path), "--log-dir", str(log_dir)],
        cwd=REPO,
        stderr=(log_dir / "supervisor.log").open("wb"),
        env={**os.environ, "MULTUS_NODE_NAME": "demo-node"},
    )
    try:
        yield proc
    finally:
        step("stopping the services (SIGTERM to the supervisor)")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"supervisor exited with {proc.returncode}")


def wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.1)


def call_shim(shim: Path, command: str, conf: bytes, container_id: str) -> subprocess.CompletedProcess[bytes]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": f"/var/run/netns/{NETNS}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(shim.parent),
        "CNI_ARGS": (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={POD_NAME};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={POD_UID}"
        ),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    return subprocess.run([str(shim)], input=conf, env=env, capture_output=True, timeout=120)


async def network_status(cache_socket: str) -> str:
    async with grpc.aio.insecure_channel(f"unix://{cache_socket}") as channel:
        pod = await cache_pb2_grpc.CacheStub(channel).GetPod(
            cache_pb2.GetPodRequest(namespace=POD_NAMESPACE, name=POD_NAME), timeout=5
        )
    return str(pod.annotations.get(NETWORK_STATUS, ""))


def show_result(title: str, proc: subprocess.CompletedProcess[bytes]) -> None:
    print(f"{title}: exit {proc.returncode}")
    out = proc.stdout.decode() or "(empty)"
    try:
        print(json.dumps(json.loads(out), indent=2))
    except ValueError:
        print(out)
    if proc.returncode != 0:
        print(proc.stderr.decode()[-2000:])


def demo(root: Path, keep: bool) -> int:
    with ExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, root, True)
        stack.callback(remove_leftovers)
        remove_leftovers()
        step(f"preparing a file-backed cluster, a primary network and a daemon config under {root}")
        config_path = prepare(root)
        run("ip", "link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1])
        for end in VETH:
            run("ip", "link", "set", end, "up")
        print(f"host veth pair {VETH[0]}/{VETH[1]} is the macvlan parent")

        step("installing the shim into the CNI bin dir, as the DaemonSet's init container does")
        shim_dir = root / "bin"
        run(sys.executable, "-m", "shim.install", "--cni-bin-dir", str(shim_dir))
        shim = shim_dir / "multus-shim"
        print(shim.read_text().splitlines()[0], "->", shim)

        step("starting certs, cache, executor and gateway under the local supervisor")
        stack.enter_context(supervisor(config_path, root / "logs"))
        run_dir = root / "run" / "grpc"
        ready = asyncio.run(wait_serving(str(run_dir / "gateway.sock"), 60))
        print("gateway", "SERVING" if ready else "not ready (see logs)")
        conf_file = root / "net.d" / "00-multus.conf"
        wait_for_file(conf_file, 30)
        conf = conf_file.read_bytes()
        print(f"config manager wrote {conf_file}:")
        print(conf.decode())

        step(f"creating the pod's network namespace {NETNS}")
        run("ip", "netns", "add", NETNS)
        stack.callback(run, "ip", "netns", "delete", NETNS, check=False)
        container_id = uuid.uuid4().hex

        step("CNI ADD through the shim, exactly as kubelet/containerd would call it")
        added = call_shim(shim, "ADD", conf, container_id)
        show_result("ADD result returned to the runtime (the cluster network's result)", added)
        if added.returncode != 0:
            return 1

        step(f"interfaces inside {NETNS}")
        print(run("ip", "-n", NETNS, "-br", "addr").stdout)

        step("k8s.v1.cni.cncf.io/network-status as written back through the cache")
        status = asyncio.run(network_status(str(run_dir / "cache.sock")))
        print(json.dumps(json.loads(status), indent=2) if status else "(none)")

        step("CHECK through the shim")
        show_result("CHECK", call_shim(shim, "CHECK", conf, container_id))

        step("CNI DEL through the shim")
        deleted = call_shim(shim, "DEL", conf, container_id)
        show_result("DEL", deleted)
        print(run("ip", "-n", NETNS, "-br", "addr").stdout)
        leftovers = [p.name for p in (root / "ipam").rglob("*") if p.is_file() and p.name[0].isdigit()]
        print("host-local allocations left:", leftovers or "none")
        return 0 if deleted.returncode == 0 and not leftovers else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/tmp/multus-demo"), help="scratch directory")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs) afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 2
    if shutil.which("ip") is None or not Path("/usr/lib/cni/bridge").exists():
        print("missing iproute2 or containernetworking-plugins: run ./scripts/setup.sh", file=sys.stderr)
        return 2
    code = demo(args.root, args.keep)
    step("done: namespaces, links and files removed" if code == 0 else "demo FAILED (rerun with --keep for logs)")
    return code


if __name__ == "__main__":
    sys.exit(main())
