"""multusctl against the real kube-apiserver: the cache and certs run as a node
identity holding the shipped RBAC rules (services/certs/rbac.py, which the
manifests are checked against) minus one, so `status` must name the gap and
the rule that fixes it; plan resolves NADs from the API; a pod is attached,
checked and its logs read; a stopped cache shows up as unreachable."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from services.certs import rbac
from services.ctl.pods import pod_cni_args
from tests.cache.kube_support import eventually, kube_instance
from tests.certs.support import (
    admin_client,
    cluster_role_bound,
    namespace_with_service_account,
    unique,
)
from tests.ctl.support import multusctl
from tests.gateway.conftest import http_call, new_container_id
from tests.support.kube_identity import write_client_kubeconfig
from tests.support.netns import netns, veth_pair
from tests.support.plugins import make_bin_dir
from tests.support.services import Instance, ServiceProcess, start_service, wait_serving

pytestmark = pytest.mark.kube
k8s: Any = kubernetes.client
NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
MULTUS_CONF = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim"}


def _without_patch_events(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "verbs": [v for v in r["verbs"] if v != "patch"]} if r["resources"] == ["events"] else r for r in rules
    ]


@contextmanager
def node_services(inst: Instance, node: str, kubeconfig: Path) -> Iterator[dict[str, ServiceProcess]]:
    env = {"MULTUS_NODE_NAME": node, "KUBECONFIG": str(kubeconfig)}
    with ExitStack() as stack:
        procs = {}
        for service in ("certs", "cache", "executor", "gateway"):
            proc = start_service(inst, service, env=env)
            stack.callback(proc.stop)
            procs[service] = proc
            if service != "certs":  # certs stays NOT_SERVING while a permission is missing
                try:
                    wait_serving(inst.grpc_socket(service), timeout=30)
                except TimeoutError as exc:
                    raise TimeoutError(f"{exc}\n{proc.log()[-3000:]}") from exc
        yield procs


def _cni_body(command: str, netns_path: str, cid: str, namespace: str, pod: str) -> bytes:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": pod_cni_args(namespace, pod, cid),
    }
    return json.dumps({"env": env, "config": base64.b64encode(json.dumps(MULTUS_CONF).encode()).decode()}).encode()


def test_multusctl_on_a_node_of_the_real_api_server(instance: Instance, kube_api: Path) -> None:
    api = admin_client(kube_api)
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    node = unique("ctl-node")
    user = unique("multus-ctl")
    root = instance.root
    bin_dir = make_bin_dir(root / "bin")
    record_dir = root / "rec"
    record_dir.mkdir()
    with ExitStack() as stack:
        namespace = stack.enter_context(namespace_with_service_account(api))
        perms = rbac.required_permissions(
            per_node_certificate=False, delegate_namespace=namespace, delegate_service_account="multus-delegate"
        )
        stack.enter_context(
            cluster_role_bound(api, _without_patch_events(rbac.cluster_role_rules(perms)), "User", user)
        )
        kubeconfig = write_client_kubeconfig(root / "node.kubeconfig", user, ())
        master, _peer = stack.enter_context(veth_pair("kv"))
        (root / "netd" / "10-rec.conf").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "recordDir": str(record_dir)})
        )
        macvlan = {
            "cniVersion": "1.0.0",
            "name": "macvlan-net",
            "type": "macvlan",
            "master": master,
            "mode": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.41.0.0/24", "dataDir": str(root / "ipam")},
        }
        custom.create_namespaced_custom_object(
            NAD_GROUP,
            NAD_VERSION,
            namespace,
            NAD_PLURAL,
            {
                "apiVersion": f"{NAD_GROUP}/{NAD_VERSION}",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "macvlan-net"},
                "spec": {"config": json.dumps(macvlan)},
            },
        )
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "annotations": {"k8s.v1.cni.cncf.io/networks": "macvlan-net@data0"}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/app:1"}]},
            },
        )
        # No kubelet confirms the deletion: grace period 0, before the namespace goes.
        stack.callback(lambda: core.delete_namespaced_pod("web", namespace, grace_period_seconds=0))
        kube_instance(
            instance,
            kubeconfig,
            binDir=str(bin_dir),
            clusterNetwork="10-rec.conf",
            multusNamespace=namespace,
            delegateServiceAccount="multus-delegate",
            rbacPreflightIntervalSeconds=1,
            logDir=str(root / "logs"),
            podWaitMs=1500,
        )
        procs = stack.enter_context(node_services(instance, node, kubeconfig))
        config = instance.config_path

        # status: the cache reads the API, certs names the removed rule and its fix.
        def gap() -> Any:
            doc = multusctl(config, "-o", "json", "status").json()
            return doc if doc["certs"] and doc["certs"]["missingPermissions"] else None

        doc = eventually(gap, timeout=30, what="the RBAC gap in multusctl status")
        (missing,) = doc["certs"]["missingPermissions"]
        assert (missing["verb"], missing["resource"]) == ("patch", "events")
        assert missing["fix"] == '- apiGroups: [""]\n  resources: ["events"]\n  verbs: ["patch"]\n'
        assert "https://" in doc["cache"]["source"] or "kube" in doc["cache"]["source"].lower()
        assert all(k["synced"] for k in doc["cache"]["kinds"])
        assert {"service": "certs", "message": "RBAC: missing patch events (core)"} in doc["problems"]
        table = multusctl(config, "status")
        assert table.code == 1
        assert "RBAC GAPS" in table.stdout and 'resources: ["events"]' in table.stdout

        # plan: the NAD comes from the API.
        planned = multusctl(config, "-o", "json", "plan", f"{namespace}/web")
        assert planned.code == 0, planned.stderr
        assert [(d["ifname"], d["network"]) for d in planned.json()["delegates"]] == [
            ("eth0", "rec"),
            ("data0", f"{namespace}/macvlan-net"),
        ]
        assert planned.json()["delegates"][1]["config"]["master"] == master
        missing_nad = multusctl(config, "-o", "json", "plan", f"{namespace}/web", "--annotation", "nope")
        assert missing_nad.code == 1 and missing_nad.json()["error"]["code"] == 7

        # A real ADD, then attachments, check, logs; then DEL.
        cid = new_container_id()
        sock = os.path.join(instance.config["socketDir"], "multus.sock")
        with netns("kctl") as ns:
            status_code, body = http_call(sock, "POST", "/cni", _cni_body("ADD", ns.path, cid, namespace, "web"))
            assert status_code == 200, body
            try:
                listing = multusctl(config, "-o", "json", "attachments", "--pod", f"{namespace}/web").json()
                assert [(a["ifname"], a["network"]) for a in listing["attachments"]] == [
                    ("eth0", "rec"),
                    ("data0", f"{namespace}/macvlan-net"),
                ]
                check = multusctl(config, "-o", "json", "check", f"{namespace}/web")
                assert check.code == 0, check.stdout + check.stderr
                assert [r["result"] for r in check.json()["results"]] == ["ok", "ok"]
                lines = multusctl(config, "-o", "json", "logs", "--pod", f"{namespace}/web").json()["lines"]
                assert {"gateway", "executor"} <= {line["service"] for line in lines}
                version = multusctl(
                    config, "exec", "macvlan", "VERSION", "--config", "-", stdin='{"cniVersion":"1.0.0"}'
                )
                assert version.code == 0, version.stderr
            finally:
                http_call(sock, "POST", "/cni", _cni_body("DEL", ns.path, cid, namespace, "web"))
        assert multusctl(config, "-o", "json", "attachments").json() == {"attachments": []}

        # The cache goes away: status names it; the gateway still answers a plan, with ADD's code 11.
        procs["cache"].stop()
        down = multusctl(config, "-o", "json", "status")
        assert down.code == 3
        cache = next(s for s in down.json()["services"] if s["name"] == "cache")
        assert not cache["reachable"] and instance.grpc_socket("cache") in cache["error"]
        stalled = multusctl(config, "-o", "json", "plan", f"{namespace}/web")
        assert stalled.code == 1 and stalled.json()["error"]["code"] == 11
