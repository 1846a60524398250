"""Migration from upstream Multus in place: a pod attached by upstream (real
plugins run as upstream's daemon runs them, its scratch cache written from the
fixtures in fixtures/upstream-v4.3.0/) is listed by `multusctl attachments` as
upstream's and deleted cleanly by our gateway: links gone, IPAM freed, the
scratch cache removed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from string import Template
from typing import Any

from tests.ctl.support import multusctl
from tests.gateway.conftest import http_call, new_container_id
from tests.support.netns import Netns, netns, unique_name, veth_pair
from tests.support.services import CNI_BIN, make_instance, running_services

FIXTURES = Path(__file__).parent / "fixtures" / "upstream-v4.3.0"
NAMESPACE, POD, POD_UID = "default", "migrated", "6b1f0c1e-2a44-4c55-9d2e-0f6a1c0de001"


def _b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def _run_plugin(conf: dict[str, Any], command: str, ns: Netns, cid: str, ifname: str) -> dict[str, Any]:
    """One plugin call as libcni makes it for upstream's daemon."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": ns.path,
        "CNI_IFNAME": ifname,
        "CNI_PATH": CNI_BIN,
        "CNI_ARGS": f"IgnoreUnknown=true;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={POD};"
        f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={POD_UID}",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    done = subprocess.run(
        [os.path.join(CNI_BIN, str(conf["type"]))], input=json.dumps(conf).encode(), env=env, capture_output=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout)) if done.stdout.strip() else {}


def _fill(name: str, **values: Any) -> str:
    return Template((FIXTURES / name).read_text()).substitute(**values)


def _ip_files(ipam: Path) -> list[Path]:
    return [p for p in ipam.rglob("*") if p.is_file() and p.name[0].isdigit()] if ipam.exists() else []


def test_a_pod_attached_by_upstream_is_listed_and_deleted_cleanly(tmp_path: Path) -> None:
    ipam = tmp_path / "ipam"
    bridge = unique_name("mb")[:12]
    bridge_plugin: dict[str, Any] = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.51.0.0/24", "dataDir": str(ipam)},
    }
    cluster = {"cniVersion": "1.0.0", "name": "mig-cluster", "plugins": [bridge_plugin]}
    inst = make_instance(tmp_path, clusterNetwork="10-mig.conflist")
    (Path(inst.config["cniConfigDir"]) / "10-mig.conflist").write_text(json.dumps(cluster))
    cni_dir = Path(inst.config["cniDir"])
    cid = new_container_id()
    try:
        with veth_pair("mg") as (master, _peer), netns("mig") as ns:
            secondary = {
                "cniVersion": "1.0.0",
                "name": "mig-macvlan",
                "type": "macvlan",
                "master": master,
                "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "10.52.0.0/24", "dataDir": str(ipam)},
            }
            # What upstream's daemon did at ADD: the plugins, then its scratch cache.
            bridge_conf = {**bridge_plugin, "name": "mig-cluster", "cniVersion": "1.0.0"}
            cluster_result = _run_plugin(bridge_conf, "ADD", ns, cid, "eth0")
            secondary_result = _run_plugin(secondary, "ADD", ns, cid, "net1")
            assert {"eth0", "net1"} <= set(ns.links()) and len(_ip_files(ipam)) == 2
            (cni_dir / cid).write_text(
                _fill(
                    "scratch.json",
                    cluster_version="1.0.0",
                    cluster_name="mig-cluster",
                    cluster_plugins=json.dumps([bridge_plugin]),
                    cluster_bytes=_b64(cluster),
                    secondary_version="1.0.0",
                    secondary_name="mig-macvlan",
                    secondary_type="macvlan",
                    secondary_ifname="net1",
                    secondary_bytes=_b64(secondary),
                    namespace=NAMESPACE,
                )
            )
            (cni_dir / "results").mkdir()
            for network, ifname, config, result in (
                ("mig-cluster", "eth0", cluster, cluster_result),
                ("mig-macvlan", "net1", secondary, secondary_result),
            ):
                (cni_dir / "results" / f"{network}-{cid}-{ifname}").write_text(
                    _fill(
                        "result-cache.json",
                        container_id=cid,
                        config_bytes=_b64(config),
                        ifname=ifname,
                        network_name=network,
                        netns=ns.path,
                        namespace=NAMESPACE,
                        pod=POD,
                        pod_uid=POD_UID,
                        result=json.dumps(result),
                    )
                )

            with running_services(inst, "cache", "executor", "gateway"):
                listed = multusctl(inst.config_path, "-o", "json", "attachments", "--pod", f"{NAMESPACE}/{POD}")
                assert listed.code == 0, listed.stderr
                assert [
                    (a["ifname"], a["network"], a["origin"], a["default"], a["containerID"], a["podUID"])
                    for a in listed.json()["attachments"]
                ] == [
                    ("eth0", "mig-cluster", "upstream", True, cid, POD_UID),
                    ("net1", f"{NAMESPACE}/mig-macvlan", "upstream", False, cid, POD_UID),
                ]
                assert listed.json()["attachments"][1]["ips"] == [secondary_result["ips"][0]["address"]]

                # The runtime's DEL after the swap, as the shim posts it.
                env = {
                    "CNI_COMMAND": "DEL",
                    "CNI_CONTAINERID": cid,
                    "CNI_NETNS": ns.path,
                    "CNI_IFNAME": "eth0",
                    "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={POD};"
                    f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={POD_UID}",
                }
                conf = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim"}
                body = json.dumps({"env": env, "config": _b64(conf)}).encode()
                status, answer = http_call(os.path.join(inst.config["socketDir"], "multus.sock"), "POST", "/cni", body)
                assert status == 200, answer

                assert not {"eth0", "net1"} & set(ns.links())
                assert _ip_files(ipam) == []
                assert not (cni_dir / cid).exists() and not list((cni_dir / "results").iterdir())
                after = multusctl(inst.config_path, "-o", "json", "attachments")
                assert after.json() == {"attachments": []}
    finally:
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
