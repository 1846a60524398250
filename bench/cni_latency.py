"""ADD/DEL latency through the whole product vs. calling the same delegates directly.

Side by side in one run (these machines are noisy): each round runs, in
alternating order, (a) the bridge cluster network + one macvlan network by
executing the two reference plugins directly, and (b) the same two networks
through the installed shim -> gateway -> cache/executor. Prints medians, p90
and the ratio ours/direct for ADD and DEL.

    .venv/bin/python -m bench.cni_latency --rounds 40
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.e2e.conftest import write_cluster
from tests.support.netns import netns, unique_name, veth_pair
from tests.support.services import REPO, Instance, make_instance, wait_serving

CNI_BIN = "/usr/lib/cni"


def run_plugin(plugin: str, command: str, conf: dict[str, object], ns_path: str, ifname: str, cid: str) -> None:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": ns_path,
        "CNI_IFNAME": ifname,
        "CNI_PATH": CNI_BIN,
        "PATH": "/usr/sbin:/usr/bin",
    }
    proc = subprocess.run([f"{CNI_BIN}/{plugin}"], input=json.dumps(conf).encode(), env=env, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{plugin} {command}: {proc.stdout!r}")


def direct_confs(inst: Instance) -> tuple[dict[str, object], dict[str, object]]:
    conflist = json.loads(Path(inst.config["cniConfigDir"], "10-e2e.conflist").read_text())
    bridge = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **conflist["plugins"][0]}
    nads = (inst.cluster_dir / "nads.yaml").read_text().split("\n---\n")
    macvlan = json.loads(json.loads(nads[0])["spec"]["config"])
    return bridge, macvlan


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="multus-bench-") as tmp:
        root = Path(tmp)
        inst = make_instance(root, multusConfigFile="auto", logLevel="info", daemonSocketDir=str(root / "sock"))
        bridge_name = unique_name("bb")[:14]
        with veth_pair("bv") as (master, _), netns("bench") as ns:
            write_cluster(inst, master, bridge_name)
            subprocess.run(
                [sys.executable, "-m", "shim.install", "--cni-bin-dir", str(root / "bin")], cwd=REPO, check=True
            )
            shim = root / "bin" / "multus-shim"
            sup = subprocess.Popen(
                [sys.executable, "-m", "compose.supervisor", "--config", str(inst.config_path), "--log-dir", tmp],
                cwd=REPO,
                env={**os.environ, "MULTUS_NODE_NAME": "node-a"},
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_serving(inst.grpc_socket("gateway"), 60)
                conf_path = Path(inst.config["cniConfigDir"]) / "00-multus.conf"
                while not conf_path.exists():
                    time.sleep(0.1)
                multus_conf = conf_path.read_bytes()
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": "bench",
                        "namespace": "default",
                        "uid": "0b1c2d3e-0000-4000-8000-000000000001",
                        "annotations": {"k8s.v1.cni.cncf.io/networks": "macvlan-net"},
                    },
                    "spec": {"nodeName": "node-a"},
                }
                (inst.cluster_dir / "pod-bench.json").write_text(json.dumps(pod))
                bridge_conf, macvlan_conf = direct_confs(inst)

                def shim_call(command: str, cid: str) -> None:
                    env = {
                        "CNI_COMMAND": command,
                        "CNI_CONTAINERID": cid,
                        "CNI_NETNS": ns.path,
                        "CNI_IFNAME": "eth0",
                        "CNI_PATH": str(shim.parent),
                        "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench;K8S_POD_INFRA_CONTAINER_ID={cid}",
                    }
                    proc = subprocess.run([str(shim)], input=multus_conf, env=env, capture_output=True)
                    if proc.returncode != 0:
                        raise RuntimeError(f"shim {command}: {proc.stdout!r} {proc.stderr!r}")

                def direct(command: str, cid: str) -> None:
                    order = [("bridge", bridge_conf, "eth0"), ("macvlan", macvlan_conf, "net1")]
                    if command == "DEL":
                        order.reverse()
                    for plugin, conf, ifname in order:
                        run_plugin(plugin, command, conf, ns.path, ifname, cid)

                samples: dict[str, list[float]] = {k: [] for k in ("direct ADD", "ours ADD", "direct DEL", "ours DEL")}
                # one warm-up round each, not counted
                for fn in (direct, shim_call):
                    cid = uuid.uuid4().hex
                    fn("ADD", cid)
                    fn("DEL", cid)
                for i in range(args.rounds):
                    runners = [("direct", direct), ("ours", shim_call)]
                    if i % 2:
                        runners.reverse()
                    for label, fn in runners:
                        cid = uuid.uuid4().hex
                        for verb in ("ADD", "DEL"):
                            start = time.perf_counter()
                            fn(verb, cid)
                            samples[f"{label} {verb}"].append(time.perf_counter() - start)
            finally:
                sup.send_signal(signal.SIGTERM)
                sup.wait(60)
                for link in (bridge_name, bridge_name + "s"):
                    subprocess.run(["ip", "link", "delete", link], capture_output=True)

    print(f"bridge cluster network + 1 macvlan network, {args.rounds} rounds, alternating order")
    print(f"{'':12} {'median ms':>10} {'p90 ms':>8}")
    for label, values in samples.items():
        print(f"{label:12} {statistics.median(values) * 1000:10.1f} {percentile(values, 0.9) * 1000:8.1f}")
    for verb in ("ADD", "DEL"):
        ratio = statistics.median(samples[f"ours {verb}"]) / statistics.median(samples[f"direct {verb}"])
        print(f"ratio ours/direct {verb} (median): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
