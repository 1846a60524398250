"""The host side of a run: the links the networks name (removed afterwards,
bridges included, which the bridge plugin creates on first use), the cluster
that holds the workload's objects, and our product run under the tracer."""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

from bench.node_cost.clusters import FileCluster, KubeCluster
from bench.node_cost.networks import HostLinks
from bench.node_cost.products import ProductNode, our_node
from tests.support.netns import unique_name, veth_pair

TRACED_SUPERVISOR = "bench.node_cost.trace supervisor"


def links_and_cluster(
    stack: ExitStack, source: str, root: Path, pods: list[tuple[str, int]], prefix: str
) -> tuple[HostLinks, KubeCluster | FileCluster]:
    master, _ = stack.enter_context(veth_pair(prefix))
    links = HostLinks(unique_name(prefix + "b"), unique_name(prefix + "n"), master, str(root / "ipam"))
    for bridge in (links.cluster_bridge, links.nad_bridge):
        stack.callback(subprocess.run, ["ip", "link", "delete", bridge], capture_output=True)
    cluster: KubeCluster | FileCluster = KubeCluster(links, pods) if source == "kube" else FileCluster(links, pods)
    stack.enter_context(cluster.created())
    return links, cluster


def traced_node(
    stack: ExitStack, root: Path, cluster: KubeCluster | FileCluster, links: HostLinks
) -> tuple[ProductNode, Path]:
    """Our four services under the local supervisor, each wrapped by bench.node_cost.trace."""
    trace_dir = root / "trace"
    trace_dir.mkdir()
    os.environ["MULTUS_TRACE_DIR"] = str(trace_dir)  # inherited by the supervisor and its services
    return stack.enter_context(our_node(root / "ours", cluster, links, supervisor=TRACED_SUPERVISOR)), trace_dir
