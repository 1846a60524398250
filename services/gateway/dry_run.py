"""The dry-run planner behind Gateway/Plan: what ADD would do for a pod, built
by the same code a real ADD runs (netconf merge, readiness indicator, the pod
from the cache, NetworkResolver, plan_attachments, device-info paths), and
stopped before anything is executed, written or emitted. An annotation given
in the query replaces the pod's, so an edit can be tried before it is
applied. Errors are the CniErrors ADD would raise, with the same codes."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from services.common import cni
from services.common.config import DaemonConfig
from services.common.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    parse_networks_annotation,
)
from services.common.validation import container_id_problem, ifname_problem
from services.gateway.device_info import DeviceInfoFiles, with_device_info_file
from services.gateway.explain import Origin, PluginStdin, delegate_origins, plugin_stdins
from services.gateway.invoke import plugin_confs
from services.gateway.netconf import MultusNetConf, load_netconf
from services.gateway.plan import PlannedAttachment, plan_attachments
from services.gateway.ports import Cluster, PodView
from services.gateway.request import PodRef
from services.gateway.resolver import NetworkResolver

DEFAULT_CONTAINER_ID = "dry-run"
CLUSTER_TIMEOUT = 5.0


@dataclass(frozen=True)
class PlanQuery:
    namespace: str
    name: str
    networks_annotation: str | None = None  # None: the pod's own
    default_network_annotation: str | None = None  # None: the pod's own
    ifname: str = ""
    container_id: str = ""
    config: bytes = b""  # the runtime's CNI config; empty: the Multus CNI config file


@dataclass(frozen=True)
class PlannedStep:
    attachment: PlannedAttachment
    origin: Origin
    plugins: list[PluginStdin]


@dataclass
class PlanReport:
    steps: list[PlannedStep] = field(default_factory=list)
    error: cni.CniError | None = None
    pod_uid: str = ""
    networks_annotation: str = ""
    networks_annotation_overridden: bool = False
    default_network_annotation: str = ""
    default_network_annotation_overridden: bool = False
    netconf: MultusNetConf | None = None
    pod_namespace: str = ""
    multus_config_path: str = ""
    writes_network_status: bool = False
    notes: list[str] = field(default_factory=list)


def _runtime_config(content: bytes, path: str) -> bytes:
    """What the runtime passes the Multus plugin: the conf itself, or a conflist's
    first plugin with the list's name and cniVersion (as libcni)."""
    try:
        obj = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise cni.CniError(cni.DECODE_FAILURE, f"cannot parse the Multus CNI config {path}", str(exc)) from exc
    if isinstance(obj, dict) and not obj.get("type") and obj.get("plugins"):
        return json.dumps(plugin_confs(obj)[0]).encode()
    return content


class DryRunPlanner:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        cluster: Cluster,
        resolver: NetworkResolver,
        device_files: DeviceInfoFiles,
        multus_config_path: Callable[[], str],
    ) -> None:
        self._config = config
        self._cluster = cluster
        self._resolver = resolver
        self._device_files = device_files
        self._multus_config_path = multus_config_path

    async def plan(self, query: PlanQuery) -> PlanReport:
        report = PlanReport(pod_namespace=query.namespace)
        try:
            await self._plan(query, report)
        except cni.CniError as err:
            report.error = err
            report.steps = []
        return report

    async def _request_config(self, query: PlanQuery, report: PlanReport) -> bytes:
        if query.config:
            return query.config
        path = self._multus_config_path()
        report.multus_config_path = path
        try:
            content = await asyncio.to_thread(_read, path)
        except FileNotFoundError as exc:
            raise cni.CniError(
                cni.TRY_AGAIN_LATER,
                "no Multus CNI config yet: the runtime would not call Multus",
                f"{path} does not exist (see the config manager's state in multusctl status)",
            ) from exc
        return _runtime_config(content, path)

    async def _plan(self, query: PlanQuery, report: PlanReport) -> None:
        if not query.namespace or not query.name:
            raise cni.CniError(cni.INVALID_ENV, "required CNI variable missing", "a pod namespace and name are needed")
        container_id = query.container_id or DEFAULT_CONTAINER_ID
        ifname = query.ifname or "eth0"
        for problem, value in ((container_id_problem(container_id), container_id), (ifname_problem(ifname), ifname)):
            if problem:
                raise cni.CniError(cni.INVALID_ENV, problem, repr(value[:64]))
        netconf = load_netconf(await self._request_config(query, report), self._config.raw)
        report.netconf = netconf
        indicator = netconf.readiness_indicator_file
        if indicator and not os.path.exists(indicator):
            waiting = f"still waiting for readinessindicatorfile @ {indicator}"
            raise cni.CniError(cni.TRY_AGAIN_LATER, "default network not ready", waiting)
        pod = await self._pod(query)
        report.pod_uid = pod.uid
        report.networks_annotation = pod.annotations.get(NETWORKS_ANNOTATION, "")
        report.networks_annotation_overridden = query.networks_annotation is not None
        report.default_network_annotation = pod.annotations.get(DEFAULT_NETWORK_ANNOTATION, "")
        report.default_network_annotation_overridden = query.default_network_annotation is not None
        in_system_namespace = pod.namespace in netconf.system_namespaces
        report.writes_network_status = not in_system_namespace
        resolution = await self._resolver.resolve(netconf, pod)
        pod_ref = PodRef(pod.namespace, pod.name, pod.uid, container_id)
        planned = plan_attachments(
            resolution.delegates, runtime_ifname=ifname, pod=pod_ref, runtime_config=netconf.runtime_config
        )
        planned = [self._with_device_info_file(att, container_id) for att in planned]
        elements = parse_networks_annotation(report.networks_annotation, pod.namespace)
        origins = delegate_origins(netconf, pod.namespace, report.default_network_annotation.strip(), elements)
        report.steps = [
            PlannedStep(att, origin, plugin_stdins(att.delegate.config, att.capability_args))
            for att, origin in zip(planned, _padded(origins, len(planned)), strict=True)
        ]
        report.notes = _notes(netconf, pod, in_system_namespace)

    async def _pod(self, query: PlanQuery) -> PodView:
        found = await self._cluster.get_pod(
            query.namespace,
            query.name,
            "",
            wait_ms=self._config.pod_wait_ms,
            timeout=CLUSTER_TIMEOUT + self._config.pod_wait_ms / 1000.0,
        )
        annotations = dict(found.annotations)
        for key, override in (
            (NETWORKS_ANNOTATION, query.networks_annotation),
            (DEFAULT_NETWORK_ANNOTATION, query.default_network_annotation),
        ):
            if override is not None:
                annotations[key] = override
        # the cache's pod, with the query's annotations over it
        return PodView(found.namespace, found.name, found.uid, annotations)

    def _with_device_info_file(self, att: PlannedAttachment, container_id: str) -> PlannedAttachment:
        path = self._device_files.path_for(att.network_name, container_id, att.ifname)
        return replace(att, capability_args=with_device_info_file(att.capability_args, att.delegate.device_id, path))


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _padded(origins: Sequence[Origin], count: int) -> list[Origin]:
    """One origin per delegate; the resolver and delegate_origins agree on the
    order, so padding only guards the report against a future divergence."""
    unknown = Origin("unknown", "not explained")
    return [*origins[:count], *([unknown] * max(count - len(origins), 0))]


def _notes(netconf: MultusNetConf, pod: PodView, in_system_namespace: bool) -> list[str]:
    notes = [
        "the cluster network also gets the runtime's runtimeConfig (port mappings, bandwidth, ...) "
        "at ADD time, which a dry run cannot know"
    ]
    if in_system_namespace:
        notes.append(
            f"namespace {pod.namespace!r} is in systemNamespaces: no defaultNetworks and no network-status write"
        )
    if netconf.namespace_isolation:
        notes.append(
            "namespaceIsolation is on: NADs only from the pod's namespace or globalNamespaces "
            f"({', '.join(netconf.global_namespaces)})"
        )
    return notes
