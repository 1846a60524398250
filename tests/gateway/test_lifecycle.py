"""CNI 1.1 verbs, readiness, DEL spool replay, migration from upstream Multus and
SIGTERM draining, each against its own real gateway, cache and executor."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tests.gateway.conftest import http_call, new_container_id
from tests.support.netns import netns
from tests.support.plugins import make_bin_dir, recorded_calls
from tests.support.services import make_instance, running_services, start_service, wait_serving


def _setup(tmp_path: Path, cluster: dict[str, Any], **overrides: Any) -> Any:
    bin_dir = make_bin_dir(tmp_path / "bin")
    rec = tmp_path / "rec"
    rec.mkdir()
    inst = make_instance(tmp_path, binDir=str(bin_dir), clusterNetwork="10-rec.conf", **overrides)
    cluster = {**cluster, "recordDir": str(rec)}
    (Path(inst.config["cniConfigDir"]) / "10-rec.conf").write_text(json.dumps(cluster))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u-1", "annotations": {}},
        "spec": {"nodeName": "node-a"},
    }
    (inst.cluster_dir / "pod.json").write_text(json.dumps(pod))
    return inst, rec


def _body(command: str, cid: str, netns_path: str = "/var/run/netns/none", conf: dict[str, Any] | None = None) -> bytes:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u-1",
    }
    config = conf or {"cniVersion": "1.1.0", "name": "multus-cni-network", "type": "multus-shim"}
    return json.dumps({"env": env, "config": base64.b64encode(json.dumps(config).encode()).decode()}).encode()


def _sock(inst: Any) -> str:
    return str(Path(inst.config["socketDir"]) / "multus.sock")


def test_status_and_gc_reach_only_plugins_that_speak_cni_1_1(tmp_path: Path) -> None:
    inst, rec = _setup(tmp_path, {"cniVersion": "1.1.0", "name": "rec", "type": "recorder"})
    with running_services(inst, "cache", "executor", "gateway"), netns("gc") as ns:
        keep, drop = new_container_id(), new_container_id()
        for cid in (keep, drop):
            assert http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))[0] == 200
        assert http_call(_sock(inst), "POST", "/cni", _body("STATUS", ""))[0] == 200
        gc_conf = {
            "cniVersion": "1.1.0",
            "name": "multus-cni-network",
            "type": "multus-shim",
            "cni.dev/valid-attachments": [{"containerID": keep, "ifname": "eth0"}],
        }
        status, body = http_call(_sock(inst), "POST", "/cni", _body("GC", "", conf=gc_conf))
        assert status == 200, body
        calls = recorded_calls(rec)
        commands = [(c["command"], c["env"].get("CNI_CONTAINERID", "")) for c in calls]
        assert ("STATUS", "") in commands
        assert ("DEL", drop) in commands and ("DEL", keep) not in commands
        gc_call = next(c for c in calls if c["command"] == "GC")
        assert gc_call["stdin"]["cni.dev/valid-attachments"] == [{"containerID": keep, "ifname": "eth0"}]
        assert not (Path(inst.config["cniDir"]) / "attachments" / drop).exists()


def test_verbs_skipped_for_plugins_that_do_not_support_them(tmp_path: Path) -> None:
    inst, rec = _setup(
        tmp_path, {"cniVersion": "1.1.0", "name": "rec", "type": "recorder", "supportedVersions": ["0.4.0", "1.0.0"]}
    )
    with running_services(inst, "cache", "executor", "gateway"):
        status, body = http_call(_sock(inst), "POST", "/cni", _body("STATUS", ""))
        assert status == 200, body
        assert [c["command"] for c in recorded_calls(rec)] == ["VERSION"]


def test_readiness_indicator_file(tmp_path: Path) -> None:
    indicator = tmp_path / "ready"
    inst, _ = _setup(
        tmp_path, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder"}, readinessindicatorfile=str(indicator)
    )
    with running_services(inst, "cache", "executor"), netns("rd") as ns:
        gateway = start_service(inst, "gateway")
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the HTTP socket answers before the gateway is ready
                try:
                    if http_call(_sock(inst), "GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            cid = new_container_id()
            status, body = http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))
            # not ready (no readiness indicator file yet): refused with 503, code 11 (our shim then waits)
            assert status == 503 and json.loads(body)["code"] == 11, body
            assert http_call(_sock(inst), "GET", "/readyz")[0] == 503
            assert http_call(_sock(inst), "GET", "/healthz")[0] == 200
            indicator.write_text("")
            wait_serving(inst.grpc_socket("gateway"))
            assert http_call(_sock(inst), "GET", "/readyz")[0] == 200
            assert http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))[0] == 200
            assert http_call(_sock(inst), "POST", "/cni", _body("DEL", cid, ns.path))[0] == 200
        finally:
            gateway.stop()


def test_spooled_dels_are_replayed_before_ready(tmp_path: Path) -> None:
    inst, rec = _setup(tmp_path, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder"})
    cid = new_container_id()
    with running_services(inst, "cache", "executor", "gateway"), netns("sp") as ns:
        assert http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))[0] == 200
    spool = Path(inst.config["socketDir"]) / "del-spool"
    spool.mkdir()
    (spool / f"{time.time_ns()}-{cid}.json").write_bytes(_body("DEL", cid))
    (spool / f"{time.time_ns()}-bad.json").write_bytes(b"{not json")
    (spool / ".partial.json").write_bytes(b"{}")
    with running_services(inst, "cache", "executor", "gateway"):
        status, _ = http_call(_sock(inst), "GET", "/readyz")
        assert status == 200
        assert ("DEL", cid) in [(c["command"], c["env"]["CNI_CONTAINERID"]) for c in recorded_calls(rec)]
        left = sorted(p.name for p in spool.iterdir())
        assert len(left) == 2 and ".partial.json" in left and any(n.endswith("-bad.json") for n in left)
        assert not (Path(inst.config["cniDir"]) / "attachments" / cid).exists()


def test_del_of_a_pod_attached_by_upstream_multus(tmp_path: Path) -> None:
    inst, rec = _setup(tmp_path, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder"})
    cid = new_container_id()
    cni_dir = Path(inst.config["cniDir"])
    conf = {"cniVersion": "1.0.0", "name": "up-net", "type": "recorder", "recordDir": str(rec)}
    scratch = [
        {
            "Conf": conf,
            "ConfList": {"cniVersion": "", "name": "", "plugins": None},
            "Name": "up-net",
            "Bytes": base64.b64encode(json.dumps(conf).encode()).decode(),
        },
        {
            "Conf": {**conf, "name": "sec"},
            "ConfList": {"cniVersion": "", "name": "", "plugins": None},
            "Name": "default/sec",
            "ifnameRequest": "data0",
            "Bytes": base64.b64encode(json.dumps({**conf, "name": "sec"}).encode()).decode(),
        },
    ]
    (cni_dir / cid).write_text(json.dumps(scratch))
    (cni_dir / "results").mkdir()
    cached = {
        "kind": "cniCacheV1",
        "containerId": cid,
        "ifName": "data0",
        "networkName": "sec",
        "cniArgs": [["IgnoreUnknown", "true"], ["K8S_POD_NAME", "p"]],
        "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24"}]},
    }
    (cni_dir / "results" / f"sec-{cid}-data0").write_text(json.dumps(cached))
    with running_services(inst, "cache", "executor", "gateway"):
        check = http_call(_sock(inst), "POST", "/cni", _body("CHECK", cid))
        assert check[0] == 400  # the cluster network has no cached result: CHECK cannot pass blindly
        assert http_call(_sock(inst), "POST", "/cni", _body("DEL", cid))[0] == 200
    dels = [
        (c["env"]["CNI_IFNAME"], c["stdin"].get("prevResult")) for c in recorded_calls(rec) if c["command"] == "DEL"
    ]
    assert [d[0] for d in dels] == ["data0", "eth0"]
    assert dels[0][1]["ips"] == [{"address": "10.9.0.2/24"}]
    assert not (cni_dir / cid).exists() and not (cni_dir / "results" / f"sec-{cid}-data0").exists()


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    inst, _ = _setup(tmp_path, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "sleep": {"ADD": 1.5}})
    with running_services(inst, "cache", "executor"), netns("dr") as ns:
        gateway = start_service(inst, "gateway")
        try:
            wait_serving(inst.grpc_socket("gateway"))
            answer: dict[str, Any] = {}
            cid = new_container_id()

            def add() -> None:
                answer["status"], answer["body"] = http_call(_sock(inst), "POST", "/cni", _body("ADD", cid, ns.path))

            thread = threading.Thread(target=add)
            thread.start()
            time.sleep(0.5)
            gateway.proc.send_signal(signal.SIGTERM)
            thread.join(30)
            assert answer.get("status") == 200, answer
            assert gateway.proc.wait(30) == 0
        finally:
            gateway.stop()
