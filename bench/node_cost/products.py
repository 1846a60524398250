"""The things measured, each behind one call: `call(verb, pod, netns, container_id)`.

- direct: the delegates themselves, executed as a meta-plugin would execute them;
- ours: the four services under the local supervisor, called through the installed shim;
- upstream: a multus-daemon binary, called through its multus-shim binary
  (paths given by the operator of the benchmark; nothing of upstream lives here).

Shim calls are made exactly as kubelet's runtime makes them: the generated
00-multus.conf on stdin, the CNI_* environment, the K8S_* CNI_ARGS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.node_cost.clusters import FileCluster, KubeCluster, PodRef
from bench.node_cost.memory import Footprint, footprint, service_children
from bench.node_cost.networks import PRIMARY_FILE, HostLinks, cluster_conflist, direct_calls
from tests.support.services import CNI_BIN, REPO, make_instance, wait_serving

SERVICES = ("certs", "cache", "executor", "gateway")
CALL_TIMEOUT = 120.0
LOCAL_SUPERVISOR = "(supervisor)"


class CallFailed(RuntimeError):
    pass


class Runner(Protocol):
    label: str

    def call(self, verb: str, pod: PodRef, netns_path: str, container_id: str) -> None: ...


class DirectRunner:
    """The delegates alone: what any meta-plugin has to pay in any case."""

    label = "direct"

    def __init__(self, links: HostLinks) -> None:
        self.links = links

    def call(self, verb: str, pod: PodRef, netns_path: str, container_id: str) -> None:
        calls = direct_calls(pod.size, self.links)
        if verb == "DEL":
            calls.reverse()
        for c in calls:
            env = {
                "CNI_COMMAND": verb,
                "CNI_CONTAINERID": container_id,
                "CNI_NETNS": netns_path,
                "CNI_IFNAME": c.ifname,
                "CNI_PATH": CNI_BIN,
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            }
            proc = subprocess.run(
                [f"{CNI_BIN}/{c.plugin}"], input=json.dumps(c.config).encode(), env=env, capture_output=True
            )
            if proc.returncode != 0:
                raise CallFailed(f"{c.plugin} {verb}: {proc.stdout[-500:]!r}")


class ShimRunner:
    """A meta-plugin's shim binary, called as the runtime calls a CNI plugin."""

    def __init__(self, label: str, shim: Path, conf_path: Path) -> None:
        self.label = label
        self.shim = shim
        self.conf = conf_path.read_bytes()

    def call(self, verb: str, pod: PodRef, netns_path: str, container_id: str) -> None:
        env = {
            "CNI_COMMAND": verb,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns_path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": f"{self.shim.parent}:{CNI_BIN}",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={pod.uid}",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        try:
            proc = subprocess.run([str(self.shim)], input=self.conf, env=env, capture_output=True, timeout=CALL_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise CallFailed(f"{self.label} {verb}: no answer in {CALL_TIMEOUT:.0f}s") from exc
        if proc.returncode != 0:
            raise CallFailed(
                f"{self.label} {verb} exit {proc.returncode}: {proc.stdout[-500:]!r} {proc.stderr[-500:]!r}"
            )


@dataclass
class ProductNode:
    """One running meta-plugin on this node."""

    runner: ShimRunner
    pids: Callable[[], dict[str, int]]  # long-running processes, by name
    logs: Path  # where its logs are

    def footprints(self) -> dict[str, Footprint]:
        return {name: footprint(pid) for name, pid in self.pids().items()}


def _complete_json(path: Path) -> bool:
    """The file exists and holds a whole JSON document (upstream writes its
    00-multus.conf in place, so a reader can catch it half written)."""
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def _wait_file(
    path: Path, timeout: float, what: str, alive: Callable[[], bool], ready: Callable[[Path], bool] = Path.exists
) -> None:
    deadline = time.monotonic() + timeout
    while not ready(path):
        if not alive():
            raise RuntimeError(f"{what} exited while waiting for {path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {path} did not appear in {timeout:.0f}s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_primary(conf_dir: Path, links: HostLinks) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / PRIMARY_FILE).write_text(json.dumps(cluster_conflist(links)))


@contextmanager
def our_node(
    root: Path, cluster: KubeCluster | FileCluster, links: HostLinks, supervisor: str = "compose.supervisor"
) -> Iterator[ProductNode]:
    """The four services under the local supervisor (`supervisor`: the module that runs
    it, bench.node_cost.trace for profiling), configured as the shipped ConfigMap
    configures them (log level, per-service health and metrics ports)."""
    ports = {s: {"healthPort": free_port(), "metricsPort": free_port()} for s in SERVICES}
    inst = make_instance(
        root,
        multusConfigFile="auto",
        logLevel="verbose",
        daemonSocketDir=str(root / "sock"),
        servicePorts=ports,
        multusNamespace=cluster.namespace,
    )
    write_primary(Path(inst.config["cniConfigDir"]), links)
    if isinstance(cluster, KubeCluster):
        inst.config.update(clusterDir="", **cluster.daemon_config(root / "certs"))
    else:
        cluster.write(inst.cluster_dir)
    inst.write_config()
    subprocess.run(
        [sys.executable, "-m", "shim.install", "--cni-bin-dir", str(root / "bin")],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    # The image's pip install byte-compiles the project; a source tree under
    # PYTHONDONTWRITEBYTECODE would recompile every module at each start (and keep the
    # compiler's leftovers in the heap), so the services run from bytecode here too.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "services", "shim"], cwd=REPO, check=True)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    log = (root / "supervisor.log").open("wb")
    sup = subprocess.Popen(
        [sys.executable, "-m", *supervisor.split(), "--config", str(inst.config_path), "--log-dir", str(root)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stderr=log,
        env={**env, "MULTUS_NODE_NAME": cluster.node},
        start_new_session=True,
    )

    def pids() -> dict[str, int]:
        found = service_children(sup.pid)
        # Local runs only: a DaemonSet has no supervisor (the kubelet restarts containers).
        return {**{name: found[name] for name in SERVICES if name in found}, LOCAL_SUPERVISOR: sup.pid}

    try:
        for service in SERVICES:
            try:
                wait_serving(inst.grpc_socket(service), 90)
            except TimeoutError as exc:
                tail = (root / f"{service}.log").read_text(errors="replace")[-3000:]
                raise TimeoutError(f"{exc}\n--- {service}.log ---\n{tail}") from exc
        conf = Path(inst.config["cniConfigDir"]) / "00-multus.conf"
        _wait_file(conf, 30, "ours", lambda: sup.poll() is None, _complete_json)
        yield ProductNode(ShimRunner("ours", root / "bin" / "multus-shim", conf), pids, root)
    finally:
        _stop(sup, 60)
        log.close()


def _healthz(socket_path: Path) -> bool:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(2)
            self.sock.connect(str(socket_path))

    conn = UnixConnection("localhost")
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def upstream_node(
    root: Path, cluster: KubeCluster, links: HostLinks, daemon_bin: Path, shim_bin: Path
) -> Iterator[ProductNode]:
    """Upstream's multus-daemon with the same node identity (perNodeCertificate with an
    issued certificate in certDir), the same networks, and a socket dir of its own
    (it wipes it at start). WatchListClient is off: the 1.20 API server lacks it."""
    netd, sock = root / "netd", root / "sock"
    for sub in ("netd", "multus-netd", "cnidir"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_primary(netd, links)
    config: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "cniConfigDir": str(netd),
        "multusAutoconfigDir": str(netd),
        "multusConfigFile": "auto",
        "confDir": str(root / "multus-netd"),
        "cniDir": str(root / "cnidir"),
        "binDir": CNI_BIN,
        "socketDir": str(sock),
        "daemonSocketDir": str(sock),
        "logLevel": "verbose",
        "logToStderr": True,
        **cluster.daemon_config(root / "certs"),
    }
    config_path = root / "daemon-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (root / "multus-daemon.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    daemon = subprocess.Popen(
        [str(daemon_bin), "-config", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**env, "MULTUS_NODE_NAME": cluster.node, "KUBE_FEATURE_WatchListClient": "false"},
        start_new_session=True,
    )
    try:

        def alive() -> bool:
            return daemon.poll() is None

        _wait_file(sock / "multus.sock", 90, "multus-daemon", alive)
        deadline = time.monotonic() + 60
        while not _healthz(sock / "multus.sock"):
            if time.monotonic() > deadline or not alive():
                raise TimeoutError(f"multus-daemon not healthy; see {root / 'multus-daemon.log'}")
            time.sleep(0.1)
        conf = netd / "00-multus.conf"
        _wait_file(conf, 30, "multus-daemon", alive, _complete_json)
        yield ProductNode(ShimRunner("upstream", shim_bin, conf), lambda: {"multus-daemon": daemon.pid}, root)
    finally:
        _stop(daemon, 30)
        log.close()
