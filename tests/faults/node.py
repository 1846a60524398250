"""One node of product for the fault suite: the local supervisor running the
four services, the installed shim the runtime would exec, real reference
plugins (bridge + host-local for the cluster network, macvlan on a veth for
a secondary one) and a file-backed cluster; plus what the suite measures
(calls with their durations, kills with their recovery times) and the leak
check it runs after every fault (records, IPAM allocations, bridge ports,
plugin processes, namespaces)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.netns import Netns, ip, unique_name, veth_pair
from tests.support.plugins import make_bin_dir
from tests.support.procs import processes
from tests.support.services import REPO, Instance, make_instance, wait_serving

# Shorter than the defaults so a fault costs seconds, not minutes; the bounds
# every call is checked against follow from them.
SHIM_READY_TIMEOUT = 15.0
SHIM_DEL_TIMEOUT = 10.0
CALL_TIMEOUT = 20.0  # cniCallTimeoutSeconds
EXECUTOR_TIMEOUT = 8.0
# The longest a shim call may take: waiting for readiness, the gateway's
# whole-call deadline, its answer grace, and slack for a loaded machine.
CALL_BOUND = SHIM_READY_TIMEOUT + CALL_TIMEOUT + 10.0 + 5.0


@dataclass(frozen=True)
class Outcome:
    command: str
    container_id: str
    exit_code: int
    stdout: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def code(self) -> int:
        if self.ok or not self.stdout:
            return 0
        try:
            return int(json.loads(self.stdout).get("code", 0))
        except ValueError:
            return -1


@dataclass
class FaultNode:
    root: Path
    instance: Instance
    shim: Path
    bridge: str
    ipam_dir: Path
    record_dir: Path
    supervisor: subprocess.Popen[bytes]
    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def conf(self) -> bytes:
        return (Path(self.instance.config["cniConfigDir"]) / "00-multus.conf").read_bytes()

    @property
    def records_dir(self) -> Path:
        return Path(self.instance.config["cniDir"]) / "attachments"

    @property
    def spool_dir(self) -> Path:
        return Path(self.instance.config["socketDir"]) / "del-spool"

    def write_pod(self, name: str, networks: str = "macvlan-net") -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": f"uid-{name}",
                "annotations": {"k8s.v1.cni.cncf.io/networks": networks} if networks else {},
            },
            "spec": {"nodeName": "node-a"},
        }
        (self.instance.cluster_dir / f"pod-{name}.json").write_text(json.dumps(pod))

    def call(self, command: str, container_id: str, ns_path: str, pod: str, conf: bytes | None = None) -> Outcome:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": ns_path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.shim.parent),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID=uid-{pod}",
            "MULTUS_SHIM_READY_TIMEOUT": str(SHIM_READY_TIMEOUT),
            "MULTUS_SHIM_DEL_TIMEOUT": str(SHIM_DEL_TIMEOUT),
        }
        started = time.monotonic()
        done = subprocess.run(
            [str(self.shim)], input=conf if conf is not None else self.conf, env=env, capture_output=True, timeout=150
        )
        outcome = Outcome(command, container_id, done.returncode, done.stdout, time.monotonic() - started)
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    # --- the services ------------------------------------------------------------------
    def service_pid(self, service: str) -> int:
        for proc in processes():
            if proc.ppid == self.supervisor.pid and f"services.{service}".encode() in proc.cmdline:
                return proc.pid
        raise LookupError(f"{service} is not running")

    def kill(self, service: str) -> float:
        """kill -9 the service; returns seconds until the supervisor has it SERVING again."""
        pid = self.service_pid(service)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        socket = self.instance.grpc_socket(service)
        while time.monotonic() - killed < 60:
            try:
                if self.service_pid(service) != pid and serving(socket):
                    return time.monotonic() - killed
            except LookupError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{service} not back 60 s after kill -9")

    # --- leaks -------------------------------------------------------------------------
    def wait_spool_drained(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [p for p in self.spool_dir.glob("*.json") if not p.name.startswith(".")]:
                return
            time.sleep(0.2)
        raise AssertionError(f"spooled DELs not replayed: {sorted(p.name for p in self.spool_dir.glob('*.json'))}")

    def leaks(self, container_ids: set[str]) -> list[str]:
        found: list[str] = []
        for cid in sorted(container_ids):
            directory = self.records_dir / cid
            # Rolled-back marks (.add-abandoned.json) are not records: nothing is attached.
            records = [p.name for p in directory.glob("*.json") if not p.name.startswith(".")]
            if records:
                found.append(f"records of {cid}: {records}")
        for network in self.ipam_dir.glob("*"):
            held = [p.name for p in network.iterdir() if p.name not in ("lock",) and not p.name.startswith("last_")]
            if held:
                found.append(f"IPAM {network.name} still allocates {held}")
        ports = json.loads(ip("-j", "link", "show", "master", self.bridge, check=False).stdout or "[]")
        if ports:
            found.append(f"bridge {self.bridge} ports left: {[p['ifname'] for p in ports]}")
        for proc in processes():
            if proc.cmdline and any(str(self.root) in part.decode(errors="replace") for part in proc.cmdline[:2]):
                found.append(f"plugin process left: {proc.pid} {proc.cmdline[:2]}")
            try:
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            except OSError:
                continue
            ours = (f"CNI_CONTAINERID={c}".encode() for c in container_ids)
            if b"CNI_CONTAINERID=" in environ and any(marker in environ for marker in ours):
                found.append(f"plugin process left: {proc.pid} {proc.cmdline[:2]}")
        return found


def serving(socket: str, service: str = "") -> bool:
    try:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
            return bool(status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def write_cluster(inst: Instance, master: str, bridge: str, ipam_dir: Path, record_dir: Path) -> None:
    primary = {
        "cniVersion": "1.0.0",
        "name": "fault-cluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "ipam": {"type": "host-local", "subnet": "10.248.0.0/22", "dataDir": str(ipam_dir)},
            }
        ],
    }
    Path(inst.config["cniConfigDir"], "10-fault.conflist").write_text(json.dumps(primary))
    nads = {
        "macvlan-net": {
            "cniVersion": "1.0.0",
            "name": "macvlan-net",
            "type": "macvlan",
            "master": master,
            "mode": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.249.0.0/22", "dataDir": str(ipam_dir)},
        },
        # Misbehaving delegates (the recorder test plugin), chained after host-local IPAM so
        # a failure leaves something a rollback must free.
        **{
            name: {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge + "b",
                        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(ipam_dir)},
                    },
                    {"type": "recorder", "recordDir": str(record_dir), **behaviour},
                ],
            }
            for name, subnet, behaviour in (
                ("hangs", "10.250.1.0/24", {"sleep": {"ADD": 120}}),
                ("crashes", "10.250.2.0/24", {"exitOn": {"ADD": 2}}),
                ("garbage", "10.250.3.0/24", {"hugeOutput": 300}),
                ("megabytes", "10.250.4.0/24", {"hugeOutput": 8 * 1024 * 1024}),
            )
        },
    }
    docs = [
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"config": json.dumps(config)},
        }
        for name, config in nads.items()
    ]
    (inst.cluster_dir / "nads.yaml").write_text("\n---\n".join(json.dumps(d) for d in docs))


@contextmanager
def fault_node(root: Path, **overrides: object) -> Iterator[FaultNode]:
    """The node, up and ready; torn down (supervisor, links, namespaces) whatever happens."""
    log_dir = root / "logs"
    inst = make_instance(
        root,
        multusConfigFile="auto",
        daemonSocketDir=str(root / "sock"),
        logDir=str(log_dir),
        binDir=str(make_bin_dir(root / "bin")),
        cniCallTimeoutSeconds=CALL_TIMEOUT,
        executorTimeoutSeconds=EXECUTOR_TIMEOUT,
        spoolReadinessHoldSeconds=5,
        executorMaxOutputBytes=1024 * 1024,
        logLevel="info",
        **overrides,
    )
    bridge = unique_name("fb")[:13]
    ipam_dir, record_dir = root / "ipam", root / "rec"
    record_dir.mkdir()
    with veth_pair("fv") as (master, _peer):
        write_cluster(inst, master, bridge, ipam_dir, record_dir)
        shim_dir = root / "cni-bin"
        subprocess.run([sys.executable, "-m", "shim.install", "--cni-bin-dir", str(shim_dir)], cwd=REPO, check=True)
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "compose.supervisor", "--config", str(inst.config_path), "--log-dir", str(log_dir)],
            cwd=REPO,
            stderr=(root / "supervisor.stderr.log").open("wb"),
            env={**os.environ, "MULTUS_NODE_NAME": "node-a"},
            start_new_session=True,
        )
        node = FaultNode(root, inst, shim_dir / "multus-shim", bridge, ipam_dir, record_dir, supervisor)
        try:
            wait_serving(inst.grpc_socket("gateway"), timeout=60)
            deadline = time.monotonic() + 30
            while not (Path(inst.config["cniConfigDir"]) / "00-multus.conf").exists():
                assert time.monotonic() < deadline, "00-multus.conf not written"
                time.sleep(0.1)
            yield node
        finally:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
                supervisor.wait()
            for link in (bridge, bridge + "b"):
                ip("link", "delete", link, check=False)


@contextmanager
def pod_namespace() -> Iterator[Netns]:
    ns = Netns(unique_name("fp"))
    ip("netns", "add", ns.name)
    try:
        ip("link", "set", "lo", "up", netns=ns.name)
        yield ns
    finally:
        ip("netns", "delete", ns.name, check=False)
