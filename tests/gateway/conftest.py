"""Fixtures for gateway tests: real cache (file mode), executor and gateway
processes on temporary sockets, a real netns and host veth pair, and a client
that speaks upstream's HTTP protocol on the gateway's Unix socket."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.api import cache_pb2, cache_pb2_grpc
from tests.support.netns import Netns, netns, unique_name, veth_pair
from tests.support.plugins import make_bin_dir
from tests.support.services import Instance, make_instance, running_services

POD_UID = "3f1c9a52-8d0e-4b7e-9a55-1d2c3b4a5f60"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def http_call(socket_path: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(socket_path)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def nad(name: str, config: dict[str, Any] | None, namespace: str = "default", **annotations: str) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"config": json.dumps(config)} if config is not None else {},
    }
    return obj


@dataclass
class GatewayNode:
    """One node's services and the paths the tests inspect."""

    instance: Instance
    master: str  # host veth end used as macvlan parent
    bridge: str
    ipam_dir: Path
    record_dir: Path

    @property
    def socket(self) -> str:
        return str(Path(self.instance.config["socketDir"]) / "multus.sock")

    def write_pod(
        self,
        name: str,
        networks: str = "",
        namespace: str = "default",
        uid: str = POD_UID,
        annotations: dict[str, str] | None = None,
    ) -> None:
        annots = dict(annotations or {})
        if networks:
            annots["k8s.v1.cni.cncf.io/networks"] = networks
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": annots},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i"}]},
        }
        (self.instance.cluster_dir / f"pod-{namespace}-{name}.json").write_text(json.dumps(pod))

    def write_nads(self, *nads: dict[str, Any], filename: str = "nads-extra.json") -> None:
        (self.instance.cluster_dir / filename).write_text(json.dumps({"kind": "List", "items": list(nads)}))

    def request_body(
        self,
        command: str,
        ns: Netns | None,
        container_id: str,
        pod: str,
        namespace: str = "default",
        uid: str = POD_UID,
        config: dict[str, Any] | None = None,
        ifname: str = "eth0",
        **extra: Any,
    ) -> bytes:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": ns.path if ns else "",
            "CNI_IFNAME": ifname,
            "CNI_PATH": "/opt/cni/bin",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}",
        }
        conf = (
            config
            if config is not None
            else {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim"}
        )
        body: dict[str, Any] = {"env": env, "config": base64.b64encode(json.dumps(conf).encode()).decode()}
        body.update(extra)
        return json.dumps(body).encode()

    def cni(self, command: str, ns: Netns | None, container_id: str, pod: str, **kw: Any) -> tuple[int, Any]:
        status, body = http_call(self.socket, "POST", "/cni", self.request_body(command, ns, container_id, pod, **kw))
        return status, json.loads(body) if body else None

    def delegate(self, command: str, ns: Netns | None, container_id: str, pod: str, **kw: Any) -> tuple[int, Any]:
        status, body = http_call(
            self.socket, "POST", "/delegate", self.request_body(command, ns, container_id, pod, **kw)
        )
        return status, json.loads(body) if body else None

    def network_status(self, pod: str, namespace: str = "default") -> list[dict[str, Any]]:
        with grpc.insecure_channel(f"unix://{self.instance.grpc_socket('cache')}") as channel:
            got = cache_pb2_grpc.CacheStub(channel).GetPod(
                cache_pb2.GetPodRequest(namespace=namespace, name=pod), timeout=10
            )
        raw = got.annotations.get(NETWORK_STATUS, "")
        return list(json.loads(raw)) if raw else []

    def events(self) -> list[dict[str, Any]]:
        path = Path(self.instance.config["runDir"]) / "cache" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def allocations(self) -> list[Path]:
        if not self.ipam_dir.exists():
            return []
        return [p for p in self.ipam_dir.rglob("*") if p.is_file() and (p.name[0].isdigit() or ":" in p.name)]


def base_nads(node: GatewayNode) -> list[dict[str, Any]]:
    ipam = str(node.ipam_dir)
    return [
        nad(
            "macvlan-net",
            {
                "cniVersion": "1.0.0",
                "name": "macvlan-net",
                "type": "macvlan",
                "master": node.master,
                "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "dataDir": ipam},
            },
        ),
        nad(
            "static-net",
            {
                "cniVersion": "1.0.0",
                "name": "static-net",
                "type": "bridge",
                "bridge": node.bridge + "s",
                "ipam": {"type": "static", "addresses": [{"address": "10.32.0.7/24"}]},
            },
        ),
        nad(
            "ptp-net",
            {
                "cniVersion": "1.0.0",
                "name": "ptp-net",
                "type": "ptp",
                "ipam": {"type": "host-local", "subnet": "10.33.0.0/24", "dataDir": ipam},
            },
        ),
        nad(
            "v6-net",
            {
                "cniVersion": "1.0.0",
                "name": "v6-net",
                "type": "macvlan",
                "master": node.master,
                "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "fd00:31::/64", "dataDir": ipam},
            },
        ),
        nad(
            "dual-net",
            {
                "cniVersion": "1.0.0",
                "name": "dual-net",
                "type": "macvlan",
                "master": node.master,
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.34.0.0/24"}], [{"subnet": "fd00:34::/64"}]],
                    "dataDir": ipam,
                },
            },
        ),
        nad(
            "fail-net",
            {
                "cniVersion": "1.0.0",
                "name": "fail-net",
                "type": "recorder",
                "recordDir": str(node.record_dir),
                "failOn": {"ADD": {"code": 7, "msg": "recorder refuses", "details": "by request"}},
            },
        ),
        nad(
            "rec-net",
            {"cniVersion": "1.0.0", "name": "rec-net", "type": "recorder", "recordDir": str(node.record_dir)},
        ),
    ]


def cluster_conflist(node: GatewayNode) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "gw-cluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.30.0.0/24",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.ipam_dir),
                },
            },
            {"type": "recorder", "recordDir": str(node.record_dir)},
        ],
    }


@pytest.fixture(scope="module")
def gateway_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    root = tmp_path_factory.mktemp("gw")
    bin_dir = make_bin_dir(root / "bin")
    bridge = unique_name("gb")[:12]
    with veth_pair("gv") as (master, _peer):
        inst = make_instance(root, binDir=str(bin_dir), clusterNetwork="10-gw.conflist", podWaitMs=1500)
        node = GatewayNode(inst, master, bridge, root / "ipam", root / "rec")
        node.record_dir.mkdir()
        (Path(inst.config["cniConfigDir"]) / "10-gw.conflist").write_text(json.dumps(cluster_conflist(node)))
        (inst.cluster_dir / "nads.json").write_text(json.dumps({"kind": "List", "items": base_nads(node)}))
        try:
            with running_services(inst, "cache", "executor", "gateway") as procs:
                node.procs = procs  # type: ignore[attr-defined]
                yield node
        finally:
            for link in (bridge, bridge + "s"):
                subprocess.run(["ip", "link", "delete", link], capture_output=True)


@pytest.fixture
def pod_netns() -> Iterator[Netns]:
    with netns("gw") as ns:
        yield ns


def new_container_id() -> str:
    return uuid.uuid4().hex
