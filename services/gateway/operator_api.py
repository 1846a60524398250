"""The gateway's operator RPCs (Plan, GetGatewayStatus): protobuf <-> domain
translation only, on top of the CNI verbs' servicer."""

from __future__ import annotations

from typing import Any

from services.api import cni_pb2, gateway_pb2
from services.common.config import DaemonConfig
from services.common.metrics import register_collector
from services.gateway.cni_service import CniService
from services.gateway.config_manager import ConfigManager
from services.gateway.device_info import DeviceInfoFiles
from services.gateway.dispatch import Dispatcher
from services.gateway.dry_run import DryRunPlanner, PlannedStep, PlanQuery, PlanReport
from services.gateway.executor_client import ExecutorClient
from services.gateway.explain import redact_config, to_json
from services.gateway.gateway_status import GatewayFacts, GatewayProbes, GatewayStatusSource, SpoolCollector
from services.gateway.http_api import Readiness
from services.gateway.ports import Cluster
from services.gateway.records import RecordStore
from services.gateway.resolver import NetworkResolver
from services.gateway.servicer import GatewayServicer
from services.gateway.spool import spool_dir


def _step_message(step: PlannedStep) -> gateway_pb2.PlannedDelegate:
    att = step.attachment
    return gateway_pb2.PlannedDelegate(
        index=att.index,
        ifname=att.ifname,
        network_name=att.network_name,
        default=att.delegate.master,
        source=step.origin.source,
        reason=step.origin.reason,
        selection_json=to_json(step.origin.selection) if step.origin.selection is not None else "",
        config_json=to_json(redact_config(att.delegate.config)),
        plugins=[
            gateway_pb2.PlannedPlugin(type=p.type, stdin_json=to_json(p.stdin), gets_prev_result=p.gets_prev_result)
            for p in step.plugins
        ],
        cni_args=att.add_args,
        capability_args_json=to_json(redact_config(att.capability_args)),
        default_gateways=list(att.default_gateways),
        drop_default_v4=att.drop_default_v4,
        drop_default_v6=att.drop_default_v6,
        resource_name=att.delegate.resource_name,
        device_id=att.delegate.device_id,
    )


def plan_message(report: PlanReport) -> gateway_pb2.PlanResponse:
    response = gateway_pb2.PlanResponse(
        delegates=[_step_message(s) for s in report.steps],
        pod_uid=report.pod_uid,
        networks_annotation=report.networks_annotation,
        networks_annotation_overridden=report.networks_annotation_overridden,
        default_network_annotation=report.default_network_annotation,
        default_network_annotation_overridden=report.default_network_annotation_overridden,
        multus_config_path=report.multus_config_path,
        writes_network_status=report.writes_network_status,
        notes=report.notes,
    )
    if report.error is not None:
        response.error.CopyFrom(
            cni_pb2.CniError(code=report.error.code, msg=report.error.msg, details=report.error.details)
        )
    netconf = report.netconf
    if netconf is not None:
        response.rules.CopyFrom(
            gateway_pb2.PlanNamespaceRules(
                namespace_isolation=netconf.namespace_isolation,
                global_namespaces=list(netconf.global_namespaces),
                system_namespaces=list(netconf.system_namespaces),
                pod_in_system_namespace=report.pod_namespace in netconf.system_namespaces,
                default_networks=list(netconf.default_networks),
                cluster_network=netconf.cluster_network,
                multus_namespace=netconf.multus_namespace,
            )
        )
    return response


def status_message(facts: GatewayFacts) -> gateway_pb2.GatewayStatus:
    conf = facts.multus_config
    return gateway_pb2.GatewayStatus(
        ready=facts.ready,
        draining=facts.draining,
        in_flight=facts.in_flight,
        spooled_dels=facts.spooled_dels,
        spool_dir=facts.spool_dir,
        multus_config=gateway_pb2.MultusConfigState(
            ready=conf.ready, reason=conf.reason, mode=conf.mode, path=conf.path, primary=conf.primary
        ),
        attachments=facts.attachments,
        containers=facts.containers,
        executors=facts.executors,
        executors_ready=facts.executors_ready,
        http_socket=facts.http_socket,
    )


class OperatorGatewayServicer(GatewayServicer):
    def __init__(
        self, dispatcher: Dispatcher, service: CniService, planner: DryRunPlanner, status: GatewayStatusSource
    ) -> None:
        super().__init__(dispatcher, service)
        self._planner = planner
        self._status = status

    async def Plan(self, request: gateway_pb2.PlanRequest, context: Any) -> gateway_pb2.PlanResponse:
        query = PlanQuery(
            namespace=request.pod_namespace,
            name=request.pod_name,
            networks_annotation=request.networks_annotation if request.HasField("networks_annotation") else None,
            default_network_annotation=(
                request.default_network_annotation if request.HasField("default_network_annotation") else None
            ),
            ifname=request.ifname,
            container_id=request.container_id,
            config=bytes(request.config),
        )
        return plan_message(await self._planner.plan(query))

    async def GetGatewayStatus(
        self, request: gateway_pb2.GetGatewayStatusRequest, context: Any
    ) -> gateway_pb2.GatewayStatus:
        return status_message(await self._status.facts())


def build_operator_servicer(
    config: DaemonConfig,
    dispatcher: Dispatcher,
    service: CniService,
    *,
    cluster: Cluster,
    resolver: NetworkResolver,
    readiness: Readiness,
    executor: ExecutorClient,
    config_manager: ConfigManager,
) -> OperatorGatewayServicer:
    """The gateway's gRPC servicer with the operator RPCs wired to the running objects
    (the planner shares the real ADD's resolver and cache client)."""
    planner = DryRunPlanner(
        config,
        cluster=cluster,
        resolver=resolver,
        device_files=DeviceInfoFiles(config.device_info_dir),
        multus_config_path=lambda: config_manager.state.path,
    )
    probes = GatewayProbes(
        ready=lambda: readiness.ready,
        draining=lambda: readiness.draining,
        in_flight=lambda: dispatcher.in_flight,
        multus_config=lambda: config_manager.state,
        executors=lambda: (len(executor.sockets), executor.ready_executors()),
    )
    spool = spool_dir(config.socket_dir)
    register_collector("del-spool", SpoolCollector(spool))
    status = GatewayStatusSource(probes, RecordStore(config.records_dir), spool, config.daemon_socket_path)
    return OperatorGatewayServicer(dispatcher, service, planner, status)
