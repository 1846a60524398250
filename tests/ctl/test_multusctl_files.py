"""Every multusctl command against the real services of a node with a
file-backed cluster: status, attachments, plan (and that a plan fails exactly
as ADD does, executing nothing), check (including an interface deleted out of
band), exec (refused unless allowed), logs, the -o json|yaml shapes, and the
one-line error naming the socket when a service is down."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from services.common.service_info import package_version
from tests.ctl.support import multusctl, one_line_error
from tests.gateway.conftest import GatewayNode, new_container_id
from tests.support.metrics import exported_metrics
from tests.support.netns import Netns, ip, netns, unique_name
from tests.support.plugins import recorded_calls
from tests.support.services import make_instance, start_service, wait_serving

SERVICES = ["gateway", "cache", "executor", "certs"]


def _config(node: GatewayNode) -> Path:
    return node.instance.config_path


@contextmanager
def attached(node: GatewayNode, pod: str, networks: str) -> Iterator[tuple[Netns, str]]:
    """A pod attached through the gateway's upstream HTTP socket (as the shim does), always torn down."""
    node.write_pod(pod, networks)
    cid = new_container_id()
    with netns("ctl") as ns:
        code, body = node.cni("ADD", ns, cid, pod)
        assert code == 200, body
        try:
            yield ns, cid
        finally:
            node.cni("DEL", ns, cid, pod)


def test_status_reports_every_service(ctl_node: GatewayNode) -> None:
    run = multusctl(_config(ctl_node), "status")
    assert run.code == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "HEALTH", "LIVE"]
    for service in SERVICES:
        assert any(line.split()[:3] == [service, "SERVING", "SERVING"] for line in lines), run.stdout
    for section in ("GATEWAY", "CACHE (files:", "EXECUTOR", "CREDENTIALS"):
        assert section in run.stdout

    doc = multusctl(_config(ctl_node), "-o", "json", "status").json()
    assert set(doc) == {"node", "services", "gateway", "cache", "executors", "certs", "spool", "problems"}
    assert [s["name"] for s in doc["services"]] == SERVICES
    logs = Path(ctl_node.instance.config["logDir"])
    for svc in doc["services"]:
        assert svc["reachable"] and svc["health"] == "SERVING" and svc["liveness"] == "SERVING"
        assert svc["version"] == package_version() and svc["pid"] > 0 and svc["uptimeSeconds"] >= 0
        assert svc["socket"] == ctl_node.instance.grpc_socket(svc["name"])
        assert svc["logFile"] == str(logs / f"{svc['name']}.log")
        assert svc["configPath"] == str(_config(ctl_node))
    assert doc["gateway"]["ready"] and doc["gateway"]["multusConfig"]["ready"]
    assert doc["gateway"]["multusConfig"]["path"].endswith("00-multus.conf")
    assert doc["gateway"]["executorsConnected"] == doc["gateway"]["executors"] == 1
    assert {k["kind"]: k["synced"] for k in doc["cache"]["kinds"]} == {
        "Pod": True,
        "NetworkAttachmentDefinition": True,
    }
    assert all(k["syncAgeSeconds"] >= 0 for k in doc["cache"]["kinds"])
    (executor,) = doc["executors"]
    assert executor["maxConcurrency"] == 16 and executor["queued"] == 0 and not executor["operatorExecAllowed"]
    assert doc["certs"]["missingPermissions"] == [] and doc["certs"]["credentials"]
    assert doc["spool"] == {"dir": str(ctl_node.instance.socket_dir / "del-spool"), "waiting": 0}
    assert doc["problems"] == []
    assert yaml.safe_load(multusctl(_config(ctl_node), "-o", "yaml", "status").stdout)["services"][0]["name"] == (
        "gateway"
    )


def test_status_counts_spooled_dels(ctl_node: GatewayNode) -> None:
    spool = ctl_node.instance.socket_dir / "del-spool"
    spool.mkdir(exist_ok=True)
    waiting = spool / "1-abc.json"
    waiting.write_text("{}")
    try:
        run = multusctl(_config(ctl_node), "-o", "json", "status")
        assert run.code == 1
        assert run.json()["spool"]["waiting"] == 1
        assert {"service": "gateway", "message": f"1 spooled DEL(s) waiting in {spool}"} in run.json()["problems"]
    finally:
        waiting.unlink()


def test_plan_explains_without_executing(ctl_node: GatewayNode) -> None:
    pod = unique_name("plan")
    ctl_node.write_pod(pod, "macvlan-net@data0, rec-net")
    calls, events = len(recorded_calls(ctl_node.record_dir)), len(ctl_node.events())
    run = multusctl(_config(ctl_node), "plan", f"default/{pod}")
    assert run.code == 0, run.stdout + run.stderr
    assert "STDIN PER PLUGIN (secrets redacted)" in run.stdout and "RULES" in run.stdout
    doc = multusctl(_config(ctl_node), "-o", "json", "plan", f"default/{pod}").json()
    assert doc["error"] is None and doc["writesNetworkStatus"]
    assert doc["pod"]["name"] == pod and doc["pod"]["uid"]
    assert doc["annotations"]["networks"] == {"value": "macvlan-net@data0, rec-net", "overridden": False}
    assert doc["multusConfig"].endswith("00-multus.conf")
    assert [(d["index"], d["ifname"], d["network"], d["default"], d["source"]) for d in doc["delegates"]] == [
        (0, "eth0", "gw-cluster", True, "clusterNetwork"),
        (1, "data0", "default/macvlan-net", False, "networks-annotation"),
        (2, "net2", "default/rec-net", False, "networks-annotation"),
    ]
    cluster, macvlan, rec = doc["delegates"]
    assert [p["type"] for p in cluster["plugins"]] == ["bridge", "recorder"]
    assert [p["getsPrevResult"] for p in cluster["plugins"]] == [False, True]
    assert cluster["plugins"][0]["stdin"]["bridge"] == ctl_node.bridge
    assert macvlan["plugins"][0]["stdin"]["master"] == ctl_node.master
    assert macvlan["selection"] == {"name": "macvlan-net", "namespace": "default", "interface": "data0"}
    assert f"K8S_POD_NAME={pod}" in macvlan["cniArgs"] and "K8S_POD_INFRA_CONTAINER_ID=dry-run" in rec["cniArgs"]
    assert doc["rules"]["clusterNetwork"] == "10-gw.conflist" and not doc["rules"]["podInSystemNamespace"]
    # Nothing ran, nothing was recorded or emitted.
    assert len(recorded_calls(ctl_node.record_dir)) == calls and len(ctl_node.events()) == events
    assert not any((ctl_node.instance.root / "cnidir" / "attachments").glob("dry-run*"))

    edited = multusctl(_config(ctl_node), "-o", "json", "plan", f"default/{pod}", "--annotation", "rec-net@extra")
    assert edited.code == 0
    doc = edited.json()
    assert doc["annotations"]["networks"] == {"value": "rec-net@extra", "overridden": True}
    assert [d["ifname"] for d in doc["delegates"]] == ["eth0", "extra"]


ISOLATED = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim", "namespaceIsolation": True}


def test_a_plan_fails_exactly_as_add_does(ctl_node: GatewayNode, tmp_path: Path) -> None:
    multus_conf = tmp_path / "isolated.conf"
    multus_conf.write_text(json.dumps(ISOLATED))
    cases: list[tuple[str, str, dict[str, Any] | None, list[str]]] = [
        ("missing NAD", "no-such-net", None, []),
        ("duplicate interface", "rec-net@eth0", None, []),
        ("namespace isolation", "elsewhere/rec-net", ISOLATED, ["--multus-config", str(multus_conf)]),
    ]
    for case, networks, config, flags in cases:
        pod = unique_name("fail")
        ctl_node.write_pod(pod, networks)
        calls = len(recorded_calls(ctl_node.record_dir))
        run = multusctl(_config(ctl_node), "-o", "json", "plan", f"default/{pod}", *flags)
        assert run.code == 1, (case, run.stderr)
        planned = run.json()["error"]
        assert run.json()["delegates"] == []
        assert len(recorded_calls(ctl_node.record_dir)) == calls, case
        with netns("fail") as ns:
            code, body = ctl_node.cni("ADD", ns, new_container_id(), pod, config=config)
        assert code == 400, case
        assert (planned["code"], planned["msg"]) == (body["code"], body["msg"]), case
        table = multusctl(_config(ctl_node), "plan", f"default/{pod}", *flags)
        assert f"ADD WOULD FAIL with CNI error {body['code']}: {body['msg']}" in table.stdout, case


def test_attachments_check_and_logs_of_an_attached_pod(ctl_node: GatewayNode) -> None:
    pod = unique_name("att")
    with attached(ctl_node, pod, "macvlan-net@data0") as (ns, cid):
        run = multusctl(_config(ctl_node), "attachments", "--pod", f"default/{pod}")
        assert run.code == 0
        rows = [line.split() for line in run.stdout.splitlines()[1:]]
        assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
            (pod, cid[:12], "eth0", "gw-cluster"),
            (pod, cid[:12], "data0", "default/macvlan-net"),
        ]
        doc = multusctl(_config(ctl_node), "-o", "json", "attachments", "--container", cid).json()
        eth0, data0 = doc["attachments"]
        assert set(eth0) == {
            "namespace", "pod", "podUID", "containerID", "ifname", "network", "plugin", "ips", "netns",
            "state", "default", "hotplug", "createdAt", "ageSeconds", "origin",
        }  # fmt: skip
        assert (eth0["default"], data0["default"]) == (True, False)
        assert eth0["plugin"] == "bridge,recorder" and data0["plugin"] == "macvlan"
        assert data0["ips"][0].startswith("10.31.0.") and data0["netns"] == ns.path
        assert {a["state"] for a in doc["attachments"]} == {"added"} and {a["origin"] for a in doc["attachments"]} == {
            "gateway"
        }

        check = multusctl(_config(ctl_node), "check", f"default/{pod}")
        assert check.code == 0, check.stdout + check.stderr
        assert [line.split()[4] for line in check.stdout.splitlines()[1:]] == ["ok", "ok"]

        ip("link", "delete", "data0", netns=ns.name)  # out of band
        broken = multusctl(_config(ctl_node), "-o", "json", "check", f"default/{pod}")
        assert broken.code == 1
        doc = broken.json()
        assert not doc["passed"]
        results = {r["ifname"]: r for r in doc["results"]}
        assert results["eth0"]["result"] == "ok"
        assert results["data0"]["result"] == "failed" and results["data0"]["code"] > 0 and results["data0"]["message"]

        lines = multusctl(_config(ctl_node), "-o", "json", "logs", "--pod", f"default/{pod}").json()["lines"]
        assert {"gateway", "executor"} <= {line["service"] for line in lines}
        assert [line["timestamp"] for line in lines] == sorted(line["timestamp"] for line in lines)
        assert any(line["event"] == "cni ADD done" for line in lines)
        assert all(line.get("pod") == f"default/{pod}" or line.get("container_id") == cid for line in lines)
        table = multusctl(_config(ctl_node), "logs", "--container", cid[:12], "--service", "executor")
        assert table.code == 0 and table.stdout.splitlines()[0].split() == [
            "TIME",
            "SERVICE",
            "LEVEL",
            "EVENT",
            "DETAILS",
        ]
        assert {line.split()[1] for line in table.stdout.splitlines()[1:]} == {"executor"}

    assert multusctl(_config(ctl_node), "-o", "json", "attachments", "--pod", f"default/{pod}").json() == {
        "attachments": []
    }
    gone = multusctl(_config(ctl_node), "check", f"default/{pod}")
    assert gone.code == 5 and "no attachments recorded" in one_line_error(gone)


def test_exec_is_refused_unless_operator_exec_is_allowed(ctl_node: GatewayNode, tmp_path: Path) -> None:
    conf = tmp_path / "rec.json"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "dbg", "type": "recorder", "ip": "10.77.0.5/24"}))
    with netns("exec") as ns:
        args = ["exec", "recorder", "ADD", "--netns", ns.path, "--ifname", "dbg0", "--container-id", "dbg-1"]
        refused = multusctl(_config(ctl_node), *args, "--config", str(conf))
        assert refused.code == 4
        assert "executorAllowOperatorExec" in one_line_error(refused)
        version = multusctl(_config(ctl_node), "-o", "json", "exec", "recorder", "VERSION", "--config", str(conf))
        assert version.code == 0, version.stderr
        assert "1.0.0" in version.json()["result"]["supportedVersions"]

        # A second executor whose daemon config allows operators.
        allowed = make_instance(
            tmp_path / "allowed", executorAllowOperatorExec=True, binDir=ctl_node.instance.config["binDir"]
        )
        sock = str(tmp_path / "allowed" / "exec.sock")
        proc = start_service(allowed, "executor", "--socket", sock)
        try:
            wait_serving(sock)
            ok = multusctl(
                _config(ctl_node), "-o", "json", *args, "--config", "-", "--socket", sock, stdin=conf.read_text()
            )
            assert ok.code == 0, ok.stderr
            doc = ok.json()
            assert set(doc) == {
                "plugin",
                "command",
                "executor",
                "exitCode",
                "durationSeconds",
                "result",
                "stdout",
                "error",
            }
            assert doc["result"]["ips"][0]["address"] == "10.77.0.5/24" and doc["error"] is None
            failing = {
                "cniVersion": "1.0.0",
                "name": "dbg",
                "type": "recorder",
                "failOn": {"ADD": {"code": 7, "msg": "no"}},
            }
            failed = multusctl(_config(ctl_node), *args, "--config", "-", "--socket", sock, stdin=json.dumps(failing))
            assert failed.code == 1 and "CNI error 7: no" in failed.stdout
        finally:
            proc.stop()


def _stale_socket(path: Path) -> None:
    """A socket file nobody listens on any more (a crashed service)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def test_a_service_that_is_down_is_named_with_its_socket(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, logDir=str(tmp_path / "logs"))
    (inst.run_dir / "grpc").mkdir(parents=True)
    _stale_socket(inst.run_dir / "grpc" / "gateway.sock")
    gateway_sock = inst.grpc_socket("gateway")
    for args, reason in [
        (["attachments"], "connection refused"),
        (["plan", "default/p"], "connection refused"),
        (["check", "default/p"], "connection refused"),
        (["-o", "json", "attachments"], "connection refused"),
    ]:
        run = multusctl(inst.config_path, *args, timeout=60)
        assert run.code == 3, (args, run.stderr)
        assert (
            one_line_error(run)
            == f"multusctl: gateway is not reachable on {gateway_sock}: {reason} (is the service running?)"
        )
    exec_run = multusctl(inst.config_path, "exec", "bridge", "VERSION")
    assert exec_run.code == 3
    executor_sock = inst.grpc_socket("executor")
    assert one_line_error(exec_run) == (
        f"multusctl: executor is not reachable on {executor_sock}: no such socket (is the service running?)"
    )
    status = multusctl(inst.config_path, "-o", "json", "status")
    assert status.code == 3
    doc = status.json()
    assert [(s["name"], s["reachable"], s["health"]) for s in doc["services"]] == [(s, False, None) for s in SERVICES]
    assert doc["gateway"] is None and doc["cache"] is None and doc["certs"] is None and doc["executors"] == []
    assert {p["service"] for p in doc["problems"]} == set(SERVICES)
    table = multusctl(inst.config_path, "status")
    assert table.code == 3 and "UNREACHABLE" in table.stdout and gateway_sock in table.stdout


def test_usage_errors(tmp_path: Path) -> None:
    inst = make_instance(tmp_path)
    for args, needle in [
        (["plan", "not-a-pod"], "expected a pod as namespace/name"),
        (["logs", "--pod", "default/p"], "set logDir"),
        (["logs"], "needs --pod"),
        (["logs", "--pod", "default/p", "--since", "soon", "--log-dir", str(tmp_path)], "--since"),
    ]:
        run = multusctl(inst.config_path, *args)
        assert run.code == 2, (args, run.stderr)
        assert needle in one_line_error(run)
    (tmp_path / "bad.json").write_text("{")
    bad = multusctl(tmp_path / "bad.json", "status")
    assert bad.code == 2 and "cannot read daemon config" in one_line_error(bad)
    missing = multusctl(inst.config_path, "logs", "--pod", "default/p", "--log-dir", str(tmp_path / "nothing"))
    assert missing.code == 5 and "none of the log files exist" in one_line_error(missing)


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "multusctl"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert "exit codes:" in done.stdout and "3  a service is not reachable on its socket" in done.stdout


def test_every_catalogued_metric_is_served(ctl_node: GatewayNode) -> None:
    """What docs/metrics.md, the alerts and the dashboard name is what the running services serve."""
    scraped = ""
    for service, ports in ctl_node.instance.config["servicePorts"].items():
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metricsPort']}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        scraped += text
        if service == "cache":
            assert 'multus_cache_synced{kind="Pod"} 1.0' in text
            assert 'multus_cache_last_sync_timestamp_seconds{kind="Pod"}' in text
        if service == "gateway":
            assert "multus_gateway_del_spool_pending 0.0" in text
        if service == "executor":
            assert "multus_executor_max_concurrency 16.0" in text
    families = set(re.findall(r"^# TYPE (\S+) ", scraped, re.M))
    for name, metric in exported_metrics().items():
        assert name in families or name.removesuffix("_total") in families, (name, metric.type)
