"""The networks the workload attaches, as pure data: a bridge cluster network
(the runtime's eth0) plus up to three NADs (macvlan, bridge, macvlan), all with
host-local IPAM, and the same delegates as kubelet would call them without a
meta-plugin. Sizes 1, 2 and 4 are "cluster only", "+ macvlan" and "+ all three"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SIZES = (1, 2, 4)
CLUSTER_NETWORK = "bench-cluster"
PRIMARY_FILE = "10-bench.conflist"
NADS = ("bench-macvlan", "bench-bridge", "bench-macvlan2")
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
CNI_VERSION = "1.0.0"


@dataclass(frozen=True)
class HostLinks:
    """Host-side names the configs refer to (unique per run: other sessions share the host)."""

    cluster_bridge: str
    nad_bridge: str
    macvlan_master: str
    ipam_dir: str


def _ipam(subnet: str, links: HostLinks) -> dict[str, Any]:
    return {"type": "host-local", "subnet": subnet, "dataDir": links.ipam_dir}


def cluster_conflist(links: HostLinks) -> dict[str, Any]:
    plugin = {
        "type": "bridge",
        "bridge": links.cluster_bridge,
        "isGateway": True,
        "ipam": _ipam("10.201.0.0/16", links),
    }
    return {"cniVersion": CNI_VERSION, "name": CLUSTER_NETWORK, "plugins": [plugin]}


def nad_configs(links: HostLinks) -> dict[str, dict[str, Any]]:
    """spec.config of each NAD, by NAD name."""
    macvlan = {"type": "macvlan", "master": links.macvlan_master, "mode": "bridge"}
    return {
        NADS[0]: {"cniVersion": CNI_VERSION, "name": NADS[0], **macvlan, "ipam": _ipam("10.202.0.0/16", links)},
        NADS[1]: {
            "cniVersion": CNI_VERSION,
            "name": NADS[1],
            "type": "bridge",
            "bridge": links.nad_bridge,
            "ipam": _ipam("10.203.0.0/16", links),
        },
        NADS[2]: {"cniVersion": CNI_VERSION, "name": NADS[2], **macvlan, "ipam": _ipam("10.204.0.0/16", links)},
    }


def selection(size: int) -> str:
    """The pod's networks annotation for `size` networks in all (the cluster network is implicit)."""
    return ",".join(NADS[: size - 1])


@dataclass(frozen=True)
class DirectCall:
    plugin: str
    config: dict[str, Any]
    ifname: str


def direct_calls(size: int, links: HostLinks) -> list[DirectCall]:
    """The delegates a meta-plugin runs for `size` networks, in ADD order (DEL reverses it)."""
    conflist = cluster_conflist(links)
    primary = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **conflist["plugins"][0]}
    calls = [DirectCall("bridge", primary, "eth0")]
    nads = nad_configs(links)
    for index, name in enumerate(NADS[: size - 1], start=1):
        calls.append(DirectCall(str(nads[name]["type"]), nads[name], f"net{index}"))
    return calls


def nad_object(name: str, namespace: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": json.dumps(config)},
    }


def pod_object(name: str, namespace: str, node: str, size: int, uid: str = "") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if size > 1:
        metadata["annotations"] = {NETWORKS_ANNOTATION: selection(size)}
    if uid:
        metadata["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/bench:1"}]},
    }
