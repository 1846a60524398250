"""Cache scale benchmark against the real kube-apiserver (not a timed test).

Loads 10,000 NADs and 20,000 pods (1,000 of them on this node) into fresh
namespaces, starts the real cache service on them and prints: object creation
time (separately), initial sync time, RSS, GetPod p50/p99 over the gRPC socket,
and watch-event lag while pods are updated at 100 updates/s. The namespaces are
deleted afterwards, also on failure or Ctrl-C.

    .venv/bin/python -m bench.cache.scale
    .venv/bin/python -m bench.cache.scale --nads 1000 --pods 2000 --node-pods 100   # quick
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from services.api import cache_pb2, cache_pb2_grpc
from tests.support.services import make_instance, start_service, wait_serving

ADMIN_KUBECONFIG = Path.home() / ".cache" / "test-kube" / "admin.kubeconfig"
PER_NAMESPACE = 1000
NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions"


def api_client(kubeconfig: Path) -> Any:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg, persist_config=False)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = 64
    return k8s.ApiClient(cfg)


def post(api: Any, path: str, body: dict[str, Any]) -> None:
    request = api.param_serialize(
        method="POST",
        resource_path=path,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    for attempt in range(20):
        response = api.call_api(*request, _request_timeout=(5, 60))
        response.read()
        if response.status in (200, 201, 409):
            return
        if response.status in (429, 500, 503, 504) or (response.status == 403 and attempt < 19):
            time.sleep(0.2 * (attempt + 1))  # throttled, or the namespace's ServiceAccount is not there yet
            continue
        raise RuntimeError(f"POST {path}: {response.status} {response.data[:300]!r}")


def nad_body(i: int) -> dict[str, Any]:
    config = {
        "cniVersion": "1.0.0",
        "name": f"net-{i}",
        "type": "macvlan",
        "master": "eth0",
        "mode": "bridge",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{i // 256 % 256}.{i % 256}.0/24"}]]},
    }
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": f"net-{i}", "annotations": {"k8s.v1.cni.cncf.io/resourceName": "example.com/sriov"}},
        "spec": {"config": json.dumps(config)},
    }


def pod_body(i: int, node: str) -> dict[str, Any]:
    """A pod of realistic size: what the cache trims (env, command, volumes) is there to be trimmed."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i}",
            "labels": {"app": f"app-{i % 50}", "tier": "backend", "pod-template-hash": uuid.uuid4().hex[:10]},
            "annotations": {"k8s.v1.cni.cncf.io/networks": f"net-{i % 1000}, net-{(i + 1) % 1000}@storage0"},
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/app:1.2.3",
                    "command": ["/bin/app", "--serve", "--port=8080"],
                    "env": [{"name": f"VAR_{j}", "value": f"value-{j}-{i}"} for j in range(8)],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def create_objects(api: Any, prefix: str, nads: int, pods: int, node_pods: int, node: str) -> list[str]:
    core: Any = k8s.CoreV1Api(api)
    nad_namespaces = [f"{prefix}-nads-{k}" for k in range((nads + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    pod_namespaces = [f"{prefix}-pods-{k}" for k in range((pods + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    namespaces = nad_namespaces + pod_namespaces
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns, "labels": {"multus-bench": prefix}}})
    # Spread this node's pods evenly over all pods so the field selector has to filter.
    on_node = set(random.Random(7).sample(range(pods), node_pods))
    jobs: list[tuple[str, dict[str, Any]]] = []
    for i in range(nads):
        jobs.append((NAD_PATH.format(ns=nad_namespaces[i // PER_NAMESPACE]), nad_body(i)))
    for i in range(pods):
        target = node if i in on_node else f"{prefix}-other-{i % 40}"
        jobs.append((f"/api/v1/namespaces/{pod_namespaces[i // PER_NAMESPACE]}/pods", pod_body(i, target)))
    with ThreadPoolExecutor(32) as pool:
        for _ in pool.map(lambda job: post(api, *job), jobs):
            pass
    return namespaces


def delete_namespaces(api: Any, namespaces: list[str]) -> None:
    core: Any = k8s.CoreV1Api(api)
    for ns in namespaces:
        try:
            if "-pods-" in ns:
                # No kubelet confirms pod deletion: grace period 0, or the namespace never goes.
                core.delete_collection_namespaced_pod(ns, grace_period_seconds=0, _request_timeout=300)
            core.delete_namespace(ns)
        except k8s.ApiException as exc:
            if exc.status != 404:
                print(f"cleanup {ns}: {exc.status} {exc.reason}", file=sys.stderr)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def node_pod_names(api: Any, node: str) -> list[tuple[str, str, str]]:
    core: Any = k8s.CoreV1Api(api)
    resp = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}", _preload_content=False)
    items = json.loads(resp.data)["items"]
    return [(p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"]) for p in items]


def measure_get_pod(stub: Any, pods: list[tuple[str, str, str]], calls: int) -> list[float]:
    rng = random.Random(1)
    latencies = []
    for _ in range(calls):
        ns, name, uid = rng.choice(pods)
        started = time.perf_counter()
        stub.GetPod(cache_pb2.GetPodRequest(namespace=ns, name=name, uid=uid), timeout=5)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def measure_watch_lag(api: Any, stub: Any, pods: list[tuple[str, str, str]], rate: int, seconds: float) -> list[float]:
    """Patch pods at `rate`/s; for each, poll the cache until it serves the new value."""
    core: Any = k8s.CoreV1Api(api)
    lags: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def one(k: int) -> None:
        ns, name, _ = pods[k % len(pods)]
        marker = f"{k}-{time.time_ns()}"
        try:
            core.patch_namespaced_pod(
                name, ns, {"metadata": {"annotations": {"bench/marker": marker}}}, _preload_content=False
            )
            written = time.perf_counter()
            deadline = written + 10
            while time.perf_counter() < deadline:
                pod = stub.GetPod(cache_pb2.GetPodRequest(namespace=ns, name=name), timeout=5)
                if pod.annotations.get("bench/marker") == marker:
                    with lock:
                        lags.append((time.perf_counter() - written) * 1000)
                    return
                time.sleep(0.005)
            errors.append(f"{ns}/{name}: update not seen in 10 s")
        except Exception as exc:
            errors.append(str(exc))

    total = int(rate * seconds)
    started = time.perf_counter()
    with ThreadPoolExecutor(48) as pool:
        for k in range(total):
            delay = started + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, k)
    achieved = total / (time.perf_counter() - started)
    print(f"  updates sent: {total} at {achieved:.0f}/s; errors: {len(errors)} {errors[:2]}")
    return lags


def listed_seconds(log: str) -> dict[str, float]:
    found = {}
    for line in log.splitlines():
        if '"listed"' in line:
            entry = json.loads(line)
            found[entry["kind"]] = entry["seconds"]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", type=Path, default=ADMIN_KUBECONFIG)
    parser.add_argument("--nads", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--node-pods", type=int, default=1_000)
    parser.add_argument("--get-calls", type=int, default=5_000)
    parser.add_argument("--update-rate", type=int, default=100)
    parser.add_argument("--update-seconds", type=float, default=20.0)
    parser.add_argument("--list-page-size", type=int, default=0, help="cacheListPageSize (0 = one watch-cache list)")
    args = parser.parse_args(argv)

    prefix = f"bench-cache-{uuid.uuid4().hex[:6]}"
    node = f"{prefix}-node"
    api = api_client(args.kubeconfig)
    namespaces: list[str] = []
    try:
        print(f"creating {args.nads} NADs and {args.pods} pods ({args.node_pods} on {node}) ...")
        started = time.monotonic()
        try:
            namespaces = create_objects(api, prefix, args.nads, args.pods, args.node_pods, node)
        finally:
            # Whatever was created before a failure is deleted too.
            core: Any = k8s.CoreV1Api(api)
            listed = core.list_namespace(label_selector=f"multus-bench={prefix}", _preload_content=False)
            namespaces = namespaces or [ns["metadata"]["name"] for ns in json.loads(listed.data)["items"]]
        created = time.monotonic() - started
        print(f"object creation: {created:.1f} s ({(args.nads + args.pods) / created:.0f} objects/s)")

        with tempfile.TemporaryDirectory(prefix="cache-bench-") as tmp:
            inst = make_instance(
                Path(tmp),
                clusterDir="",
                kubeconfig=str(args.kubeconfig),
                logLevel="info",
                cacheListPageSize=args.list_page_size,
            )
            started = time.monotonic()
            proc = start_service(inst, "cache", env={"MULTUS_NODE_NAME": node, "KUBECONFIG": ""})
            try:
                wait_serving(inst.grpc_socket("cache"), timeout=120)
                serving = time.monotonic() - started
                listed = listed_seconds(proc.log())
                print(
                    f"initial sync: {serving:.2f} s from process start to SERVING "
                    f"(list+decode: pods {listed.get('Pod', 0):.2f} s, NADs "
                    f"{listed.get('NetworkAttachmentDefinition', 0):.2f} s)"
                )
                print(f"RSS after sync: {rss_mib(proc.proc.pid):.1f} MiB")
                with grpc.insecure_channel(f"unix://{inst.grpc_socket('cache')}") as channel:
                    stub = cache_pb2_grpc.CacheStub(channel)
                    counts = {k.kind: k.count for k in stub.Stats(cache_pb2.StatsRequest(), timeout=5).kinds}
                    print(f"cached: {counts}")
                    pods = node_pod_names(api, node)
                    measure_get_pod(stub, pods, 200)  # warm-up
                    lat = measure_get_pod(stub, pods, args.get_calls)
                    print(
                        f"GetPod over gRPC ({args.get_calls} sequential calls): p50 {percentile(lat, 50):.3f} ms, "
                        f"p99 {percentile(lat, 99):.3f} ms, max {max(lat):.3f} ms"
                    )
                    lags = measure_watch_lag(api, stub, pods, args.update_rate, args.update_seconds)
                    if lags:
                        print(
                            f"watch lag at {args.update_rate} updates/s ({len(lags)} seen): "
                            f"p50 {percentile(lags, 50):.1f} ms, p99 {percentile(lags, 99):.1f} ms, "
                            f"max {max(lags):.1f} ms (PATCH response -> served by GetPod; 5 ms polling)"
                        )
                    print(f"RSS after load: {rss_mib(proc.proc.pid):.1f} MiB")
                    errors = re.findall(r'"level": "error".*', proc.log())
                    print(f"cache errors logged: {len(errors)}")
            finally:
                proc.stop()
    finally:
        if namespaces:
            print(f"deleting {len(namespaces)} namespaces ...")
            delete_namespaces(api, namespaces)
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
