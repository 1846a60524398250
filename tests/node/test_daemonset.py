"""The add-on on a real node, from zero: the documented install (image, manifests,
RBAC, probes, mounts, perNodeCertificate with the project's approver), a pod
with NADs, its deletion, kill -9 of each service, a rolling restart under pod
churn, and the documented uninstall, after which every host path the
manifests mount is as it was before the install. The tests run in file order
and share one install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.node import addon
from tests.node.addon import NAMESPACE, k
from tests.node.conftest import NodeKit
from tests.node.support import (
    BIN_DIR,
    CONF_DIR,
    NODE_KIT,
    NODE_NAME,
    NODE_ROOT,
    PRIMARY_NAME,
    HostCniDirs,
    eventually,
    leases,
    netns_links,
    processes_matching,
)
from tests.support.netns import unique_name, veth_pair

sys.path.insert(0, str(NODE_KIT))
os.environ.setdefault("CRI_STUBS_PATH", str(NODE_ROOT))
from cri_client import CRI  # type: ignore[import-not-found]

# image build and node start-up happen in the first test's fixture
pytestmark = [pytest.mark.node, pytest.mark.kube, pytest.mark.timeout(1800)]

STATUS = "k8s.v1.cni.cncf.io/network-status"
RECORDS = Path("/var/lib/cni/multus/attachments")
SERVICES = ("gateway", "cache", "executor", "certs")


@dataclass
class Install:
    overlay: Path
    before: dict[str, dict[str, str]]
    mounted: list[str]
    namespace: str
    bridge_net: str
    macvlan_net: str
    uninstalled: bool = False
    pods: list[str] = field(default_factory=list)

    def pod(self, name: str, networks: str) -> None:
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
            },
            "spec": {
                "nodeName": NODE_NAME,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "pause", "image": "localhost/pause:local", "imagePullPolicy": "Never"}],
            },
        }
        addon.apply_object(manifest)
        self.pods.append(name)

    def get(self, name: str) -> dict[str, Any]:
        return dict(json.loads(k("-n", self.namespace, "get", "pod", name, "-o", "json")))

    def running(self, name: str, timeout: float = 90) -> dict[str, Any]:
        try:
            return eventually(
                lambda: (p := self.get(name))["status"].get("phase") == "Running" and p, timeout, f"pod {name} Running"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nnode pod logs:\n{addon.node_pod_logs()}") from None

    def delete(self, *names: str) -> None:
        k("-n", self.namespace, "delete", "pod", *names, "--wait=true", "--timeout=120s", timeout=180)
        for name in names:
            self.pods.remove(name)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = k("-n", self.namespace, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return list(json.loads(out)["items"])

    def all_leases(self) -> list[str]:
        return leases(PRIMARY_NAME) + leases(self.bridge_net) + leases(self.macvlan_net)


@pytest.fixture(scope="module")
def install(node_kit: NodeKit, host_cni: HostCniDirs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    if NAMESPACE in k("get", "namespaces", "-o", "name"):
        pytest.fail("namespace multus-system exists: an earlier install was not removed from this cluster")
    node_kit.start_kubelet()
    node_kit.import_image()
    overlay = addon.write_kit_overlay(tmp_path_factory.mktemp("site") / "multus")
    mounted = addon.mounted_host_paths(overlay)
    before = addon.snapshot(mounted)
    namespace = unique_name("pods-").lower()
    with veth_pair("dm") as (master, _peer):
        bridge_net, macvlan_net = unique_name("db-"), unique_name("dm-")
        first = k("apply", "-k", str(overlay))  # the documented install, once, on a cluster without it
        state = Install(overlay, before, mounted, namespace, bridge_net, macvlan_net)
        try:
            assert "namespace/multus-system created" in first, first
            k("create", "namespace", namespace)
            for name, plugin in (
                (
                    bridge_net,
                    {
                        "type": "bridge",
                        "bridge": bridge_net[:15],
                        "ipam": {"type": "host-local", "subnet": "10.96.201.0/24"},
                    },
                ),
                (
                    macvlan_net,
                    {
                        "type": "macvlan",
                        "master": master,
                        "mode": "bridge",
                        "ipam": {"type": "host-local", "subnet": "10.96.202.0/24"},
                    },
                ),
            ):
                nad = {
                    "apiVersion": "k8s.cni.cncf.io/v1",
                    "kind": "NetworkAttachmentDefinition",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"config": json.dumps({"cniVersion": "0.4.0", "name": name, **plugin})},
                }
                addon.apply_object(nad)
            yield state
        finally:
            if state.pods:
                k("-n", namespace, "delete", "pod", "--all", "--wait=true", "--timeout=120s", check=False, timeout=180)
            k("delete", "namespace", namespace, "--wait=false", check=False)
            if not state.uninstalled:
                try:
                    addon.uninstall(overlay)
                except AssertionError as exc:
                    print(f"uninstall after a failure: {exc}", file=sys.stderr)
                    addon.force_uninstall(overlay)
            subprocess.run(["ip", "link", "delete", bridge_net[:15]], capture_output=True)


def test_install_brings_the_node_ready(install: Install) -> None:
    pod = addon.wait_node_pod_ready()
    assert set(restarts(pod)) == {f"multus-{s}" for s in SERVICES}
    assert (BIN_DIR / "multus-shim").read_bytes().startswith(b"#!/usr/bin/python3 -IS")
    conf = json.loads((CONF_DIR / "00-multus.conf").read_text())
    assert conf["type"] == "multus-shim" and conf["clusterNetwork"].endswith("10-node-net.conflist")
    # perNodeCertificate: the approver approved the node's CSR; delegates got their token
    eventually(lambda: Path("/var/lib/multus/certs/multus-client-current.pem").exists(), 60, "the node certificate")
    eventually(lambda: (CONF_DIR / "multus.d" / "multus.kubeconfig").exists(), 60, "the delegate kubeconfig")


def restarts(pod: dict[str, Any]) -> dict[str, int]:
    return addon.restarts(pod)


def pod_netns(install: Install, name: str) -> str:
    with CRI(socket=str(NODE_ROOT / "run" / "containerd.sock")) as cri:
        netns = cri.pod_netns(install.namespace, name)
    assert netns, f"no sandbox for {name}"
    return str(netns)


def attach_and_release(install: Install, name: str, networks: str, expect: list[str]) -> None:
    install.pod(name, networks)
    install.running(name)
    links = netns_links(pod_netns(install, name))
    assert set(expect) <= set(links), links
    install.delete(name)
    eventually(lambda: not install.all_leases(), 60, "every lease freed")


def test_a_pod_with_nads_runs_and_its_deletion_frees_everything(install: Install) -> None:
    install.pod("web", f"{install.bridge_net}, {install.macvlan_net}")
    pod = install.running("web")
    links = netns_links(pod_netns(install, "web"))
    assert links["eth0"] == [f"{pod['status']['podIP']}/24"]  # the cluster network's address is the pod IP
    assert links["net1"][0].startswith("10.96.201.") and links["net2"][0].startswith("10.96.202.")
    status = eventually(lambda: install.get("web")["metadata"].get("annotations", {}).get(STATUS), 30, "status")
    assert [e["interface"] for e in json.loads(status)] == ["eth0", "net1", "net2"]
    reasons = [(e["reason"], e["message"]) for e in install.events("web")]
    assert sum(1 for r, _ in reasons if r == "AddedInterface") == 3, reasons
    install.delete("web")
    eventually(lambda: not install.all_leases(), 60, f"leases freed: {install.all_leases()}")
    eventually(lambda: not [p for p in RECORDS.glob("*")], 60, "attachment records removed")


def test_the_executor_leads_its_session_and_keeps_a_guardian(install: Install) -> None:
    """In the runtime's container the executor leads its session, so plugins start
    without the setpriv wrapper and its guardian sweeps them if the executor dies."""
    (pid,) = processes_matching("multus-executor", "/etc/multus/daemon-config.json")
    assert os.getsid(pid) == pid
    # Its own child, in a session of its own (outside the one it sweeps).
    guardians = [g for g in processes_matching("multus-executor-guardian") if parent_of(g) == pid]
    assert len(guardians) == 1, guardians
    assert os.getsid(guardians[0]) != pid


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("service", SERVICES)
def test_a_killed_service_is_restarted_and_the_next_pod_works(install: Install, service: str) -> None:
    before = restarts(addon.wait_node_pod_ready())
    (pid,) = processes_matching(f"multus-{service}", "/etc/multus/daemon-config.json")
    os.kill(pid, signal.SIGKILL)
    eventually(
        lambda: restarts(p := addon.wait_node_pod_ready())[f"multus-{service}"] > before[f"multus-{service}"] and p,
        120,
        f"multus-{service} restarted by the kubelet",
        interval=1.0,
    )
    attach_and_release(install, f"after-{service}", install.bridge_net, ["eth0", "net1"])


def test_a_rolling_restart_under_pod_churn(install: Install) -> None:
    gaps: list[float] = []
    stop = threading.Event()

    def watch_conf() -> None:
        while not stop.is_set():
            if not (CONF_DIR / "00-multus.conf").exists():
                gaps.append(time.monotonic())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_conf, daemon=True)
    watcher.start()
    try:
        k("-n", NAMESPACE, "rollout", "restart", "daemonset/multus")
        names = [f"churn-{i}" for i in range(4)]
        for name in names:
            install.pod(name, install.macvlan_net)
        for name in names:
            install.running(name, timeout=180)
        k("-n", NAMESPACE, "rollout", "status", "daemonset/multus", "--timeout=240s", timeout=300)
        install.delete(*names)
    finally:
        stop.set()
        watcher.join()
    assert not gaps, "00-multus.conf disappeared during the rolling restart"
    for name in names:
        failures = [e for e in install.events(name) if e["reason"] == "FailedCreatePodSandBox"]
        assert sum(e.get("count", 1) for e in failures) <= 1, failures
    eventually(lambda: not install.all_leases(), 60, f"leases freed: {install.all_leases()}")
    addon.wait_node_pod_ready()


def test_uninstall_restores_the_node(install: Install) -> None:
    addon.uninstall(install.overlay)
    install.uninstalled = True
    after = addon.snapshot(install.mounted)
    changed = {path: (install.before[path], after[path]) for path in after if after[path] != install.before[path]}
    assert not changed, json.dumps(changed, indent=1)[:4000]
