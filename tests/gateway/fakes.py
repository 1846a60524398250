"""In-process doubles for the gateway's CNI logic: a plugin runner that acts
like a CNI plugin (results, CNI error objects, VERSION) and remembers every
call, and a cluster holding pods and NADs in memory. With them the real
CniService and Dispatcher run in the test's own event loop, without root,
network namespaces or service processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from services.common import cni
from services.common.config import config_from_dict
from services.common.errors import DelegateFailed, NetworkNotFound, PodNotFound
from services.common.selection import NETWORKS_ANNOTATION, parse_networks_annotation
from services.gateway import invoke
from services.gateway.cni_service import CniService
from services.gateway.device_info import DeviceInfoFiles
from services.gateway.dispatch import Dispatcher
from services.gateway.invoke import NetworkInvoker, Target
from services.gateway.ports import NadView, PodEventView, PodView
from services.gateway.records import RecordStore
from services.gateway.request import CniRequest
from services.gateway.resolver import NetworkResolver

POD_UID = "uid-1"


@dataclass(frozen=True)
class PluginCall:
    plugin: str
    command: str
    ifname: str
    container_id: str
    stdin: Mapping[str, Any]

    @property
    def network(self) -> str:
        return str(self.stdin.get("name", ""))


@dataclass
class FakeRunner:
    """A PluginRunner whose plugins read two keys of their own config:
    `failOn: {"ADD": {"code": 7, "msg": ...}}` makes a verb fail with that CNI
    error, `speaks: [...]` is what VERSION answers (default up to 1.0.0).
    ADD answers one interface and one address per call."""

    calls: list[PluginCall] = field(default_factory=list)
    crash_with: BaseException | None = None
    # (command, network name) pairs that hang until released or cancelled, as a stuck plugin;
    # `entered` gets each such call when it starts hanging.
    hang: set[tuple[str, str]] = field(default_factory=set)
    entered: asyncio.Queue[PluginCall] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    batches: list[list[tuple[str, str]]] = field(default_factory=list)  # (command, ifname) of each run_all

    async def run_all(self, calls: Sequence[invoke.PluginCall], *, stop_at_failure: bool) -> list[invoke.Outcome]:
        """As the executor's ExecPlugins: one round trip (recorded), lost as a whole."""
        self.batches.append([(c.command, c.target.ifname) for c in calls])
        if self.crash_with is not None:
            self.calls.extend(
                PluginCall(c.plugin, c.command, c.target.ifname, c.target.container_id, {}) for c in calls[:1]
            )
            raise self.crash_with
        return await invoke.run_one_by_one(self, calls, stop_at_failure=stop_at_failure)

    async def run(self, plugin: str, command: str, target: Target, stdin: bytes) -> bytes:
        conf = json.loads(stdin)
        call = PluginCall(plugin, command, target.ifname, target.container_id, conf)
        self.calls.append(call)
        if (command, call.network) in self.hang:
            self.entered.put_nowait(call)
            await self.release.wait()
        if self.crash_with is not None:
            raise self.crash_with
        if command == "VERSION":
            return json.dumps({"supportedVersions": conf.get("speaks", ["0.4.0", "1.0.0"])}).encode()
        failure = (conf.get("failOn") or {}).get(command)
        if failure:
            raise DelegateFailed(failure["code"], failure.get("msg", f"{plugin} refuses"), plugin=plugin)
        if command != "ADD":
            return b""
        address = f"10.0.{len([c for c in self.calls if c.command == 'ADD'])}.2/24"
        result = {
            "cniVersion": conf.get("cniVersion", "1.0.0"),
            "interfaces": [{"name": target.ifname, "mac": "02:00:00:00:00:01", "sandbox": target.container_id}],
            "ips": [{"address": address, "interface": 0, "gateway": address.rsplit(".", 1)[0] + ".1"}],
        }
        return json.dumps(result).encode()

    def seen(self, *commands: str) -> list[tuple[str, str]]:
        """(command, ifname) of the calls with these commands, in call order."""
        return [(c.command, c.ifname) for c in self.calls if not commands or c.command in commands]


@dataclass
class FakeCluster:
    """The cache, in memory: pods, NADs, network-status writes and events."""

    pods: dict[tuple[str, str], PodView] = field(default_factory=dict)
    nads: dict[tuple[str, str], NadView] = field(default_factory=dict)
    statuses: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (pod, reason, message)
    status_error: cni.CniError | None = None
    # As the cache service does: answer for a pod with the NADs its annotation names that exist.
    prefetch: bool = False
    nad_lookups: list[tuple[str, str]] = field(default_factory=list)

    def add_pod(self, name: str, networks: str = "", namespace: str = "default", **annotations: str) -> PodView:
        if networks:
            annotations = {**annotations, "k8s.v1.cni.cncf.io/networks": networks}
        pod = PodView(namespace, name, POD_UID, annotations)
        self.pods[(namespace, name)] = pod
        return pod

    def add_nad(self, name: str, config: Mapping[str, Any] | str, namespace: str = "default") -> None:
        text = config if isinstance(config, str) else json.dumps(config)
        self.nads[(namespace, name)] = NadView(namespace, name, text)

    async def get_pod(self, namespace: str, name: str, uid: str = "", *, wait_ms: int = 0, timeout: float) -> PodView:
        if (namespace, name) not in self.pods:
            raise PodNotFound(f"pod {namespace}/{name} not found")
        pod = self.pods[(namespace, name)]
        if not self.prefetch:
            return pod
        elements = parse_networks_annotation(pod.annotations.get(NETWORKS_ANNOTATION, ""), namespace)
        keys = [(e.namespace, e.name) for e in elements]
        return replace(pod, networks={key: self.nads[key] for key in keys if key in self.nads})

    async def get_network_attachment_definition(
        self, namespace: str, name: str, *, wait_ms: int = 0, timeout: float
    ) -> NadView:
        self.nad_lookups.append((namespace, name))
        if (namespace, name) not in self.nads:
            raise NetworkNotFound(f"cannot find a network-attachment-definition ({name}) in namespace ({namespace})")
        return self.nads[(namespace, name)]

    async def update_network_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        network_status_json: str,
        *,
        wait_ms: int = 0,
        timeout: float,
        events: Sequence[PodEventView] = (),
    ) -> bool:
        if self.status_error is not None:
            raise self.status_error
        self.statuses.append((f"{namespace}/{name}", json.loads(network_status_json)))
        self.events.extend((f"{namespace}/{name}", e.reason, e.message) for e in events)
        return True

    async def emit_pod_event(
        self, namespace: str, name: str, uid: str, event_type: str, reason: str, message: str, *, timeout: float
    ) -> None:
        self.events.append((f"{namespace}/{name}", reason, message))


def plugin_conf(name: str, cni_version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": cni_version, "name": name, "type": "fake", **extra}


@dataclass
class Node:
    """One gateway's CNI logic over the fakes, and the request builder for it."""

    root: Path
    runner: FakeRunner
    cluster: FakeCluster
    service: CniService
    dispatcher: Dispatcher

    @property
    def records(self) -> RecordStore:
        return self.service.core.records

    def request(
        self,
        command: str,
        container_id: str = "c1",
        pod: str = "web",
        *,
        ifname: str = "eth0",
        config: Mapping[str, Any] | None = None,
        namespace: str = "default",
    ) -> CniRequest:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/var/run/netns/{container_id}",
            "CNI_IFNAME": ifname,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={POD_UID}",
        }
        conf = config if config is not None else {"cniVersion": "1.0.0", "name": "multus", "type": "multus-shim"}
        return CniRequest(env, json.dumps(conf).encode())

    async def cni(self, command: str, container_id: str = "c1", pod: str = "web", **kw: Any) -> dict[str, Any] | None:
        return await self.dispatcher.cni(self.request(command, container_id, pod, **kw))

    async def delegate(self, command: str, container_id: str, ifname: str, config: Mapping[str, Any]) -> Any:
        return await self.dispatcher.delegate(self.request(command, container_id, ifname=ifname, config=config))


def make_node(
    root: Path, cluster_network: Mapping[str, Any] | None = None, *, deadline: float | None = None, **daemon: Any
) -> Node:
    """A gateway whose cluster network is `cluster_network` (a file under `root`)."""
    conf_dir = root / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    cluster_file = conf_dir / "10-cluster.conf"
    cluster_file.write_text(json.dumps(cluster_network or plugin_conf("cluster")))
    raw = {
        "cniVersion": "1.0.0",
        "clusterNetwork": str(cluster_file),
        "cniConfigDir": str(conf_dir),
        "confDir": str(root / "multus.d"),
        "cniDir": str(root / "cnidir"),
        "runDir": str(root / "run"),
        "podWaitMs": 0,
        "statusWriteWaitMs": 0,
        **daemon,
    }
    config = config_from_dict(raw)
    runner, cluster = FakeRunner(), FakeCluster()
    service = CniService(
        config,
        cluster=cluster,
        invoker=NetworkInvoker(runner),
        records=RecordStore(str(root / "records")),
        resolver=NetworkResolver(cluster, cni_config_dir=str(conf_dir)),
        device_files=DeviceInfoFiles(str(root / "devinfo")),
    )
    return Node(root, runner, cluster, service, Dispatcher(service, deadline=deadline))
