"""A node for multusctl tests: the four real services (file-backed cluster,
certs standalone) with per-service log files, real plugins, a host veth pair
as macvlan parent, and the cluster network on a host bridge."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayNode, base_nads, cluster_conflist
from tests.support.netns import unique_name, veth_pair
from tests.support.plugins import make_bin_dir
from tests.support.services import make_instance, running_services

SERVICES = ("gateway", "cache", "executor", "certs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ctl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    root = tmp_path_factory.mktemp("ctl")
    bin_dir = make_bin_dir(root / "bin")
    bridge = unique_name("cb")[:12]
    with veth_pair("cv") as (master, _peer):
        inst = make_instance(
            root,
            binDir=str(bin_dir),
            clusterNetwork="10-gw.conflist",
            podWaitMs=1500,
            logDir=str(root / "logs"),
            servicePorts={service: {"metricsPort": free_port()} for service in SERVICES},
        )
        node = GatewayNode(inst, master, bridge, root / "ipam", root / "rec")
        node.record_dir.mkdir()
        (Path(inst.config["cniConfigDir"]) / "10-gw.conflist").write_text(json.dumps(cluster_conflist(node)))
        (inst.cluster_dir / "nads.json").write_text(json.dumps({"kind": "List", "items": base_nads(node)}))
        try:
            with running_services(inst, "certs", "cache", "executor", "gateway"):
                yield node
        finally:
            for link in (bridge, bridge + "s"):
                subprocess.run(["ip", "link", "delete", link], capture_output=True)
