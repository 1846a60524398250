"""The whole product as kubelet meets it: supervisor, four services, installed shim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.netns import Netns, netns, unique_name, veth_pair
from tests.support.services import REPO, Instance, make_instance, wait_serving

POD_UID = "7b0a0c1e-2f4b-4c55-9a1d-0e6f3b2a1c99"


@dataclass
class Node:
    """One node's worth of product: its daemon config, cluster files and installed shim."""

    instance: Instance
    shim: Path
    macvlan_master: str

    @property
    def conf_path(self) -> Path:
        return Path(self.instance.config["cniConfigDir"]) / "00-multus.conf"

    def write_pod(self, name: str, networks: str, namespace: str = "default", uid: str = POD_UID) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "annotations": {"k8s.v1.cni.cncf.io/networks": networks} if networks else {},
            },
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i"}]},
        }
        (self.instance.cluster_dir / f"pod-{namespace}-{name}.json").write_text(json.dumps(pod))

    def shim_call(
        self,
        command: str,
        ns: Netns,
        container_id: str,
        pod: str,
        conf: bytes | None = None,
        namespace: str = "default",
        uid: str = POD_UID,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": ns.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.shim.parent),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}",
        }
        env.update(extra_env or {})
        stdin = conf if conf is not None else self.conf_path.read_bytes()
        return subprocess.run([str(self.shim)], input=stdin, env=env, capture_output=True, timeout=120)


def _nad(name: str, config: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": json.dumps(config)},
    }


def write_cluster(inst: Instance, master: str, bridge: str) -> None:
    ipam_dir = str(inst.root / "ipam")
    primary = {
        "cniVersion": "1.0.0",
        "name": "e2e-cluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipam": {"type": "host-local", "subnet": "10.246.3.0/24", "dataDir": ipam_dir},
            }
        ],
    }
    Path(inst.config["cniConfigDir"], "10-e2e.conflist").write_text(json.dumps(primary))
    nads = [
        _nad(
            "macvlan-net",
            {
                "cniVersion": "1.0.0",
                "name": "macvlan-net",
                "type": "macvlan",
                "master": master,
                "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "10.11.3.0/24", "dataDir": ipam_dir},
            },
        ),
        _nad(
            "static-net",
            {
                "cniVersion": "1.0.0",
                "name": "static-net",
                "type": "bridge",
                "bridge": bridge + "s",
                "ipam": {"type": "static", "addresses": [{"address": "10.12.3.7/24"}]},
            },
        ),
    ]
    (inst.cluster_dir / "nads.yaml").write_text("\n---\n".join(json.dumps(n) for n in nads))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    # daemonSocketDir: what the generated 00-multus.conf tells the host shim (as upstream,
    # only when set; in a DaemonSet socketDir is the container's view of the same dir).
    inst = make_instance(tmp_path, multusConfigFile="auto", daemonSocketDir=str(tmp_path / "sock"))
    bridge = unique_name("eb")[:14]
    with veth_pair("ev") as (master, _peer):
        write_cluster(inst, master, bridge)
        bin_dir = tmp_path / "bin"
        subprocess.run([sys.executable, "-m", "shim.install", "--cni-bin-dir", str(bin_dir)], cwd=REPO, check=True)
        log = (tmp_path / "supervisor.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "compose.supervisor", "--config", str(inst.config_path), "--log-dir", str(tmp_path)],
            cwd=REPO,
            stderr=log,
            env={**os.environ, "MULTUS_NODE_NAME": "node-a"},
            start_new_session=True,
        )
        try:
            wait_serving(inst.grpc_socket("gateway"), timeout=60)
            deadline = time.monotonic() + 30
            conf = Path(inst.config["cniConfigDir"]) / "00-multus.conf"
            while not conf.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            yield Node(inst, bin_dir / "multus-shim", master)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            for link in (bridge, bridge + "s"):
                subprocess.run(["ip", "link", "delete", link], capture_output=True)


@pytest.fixture
def pod_netns() -> Iterator[Netns]:
    with netns("e2e") as ns:
        yield ns


def new_container_id() -> str:
    return uuid.uuid4().hex
