"""multus.executor.v1.Executor: protobuf <-> runner/netlink translation only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from services.api import cni_pb2, executor_pb2, executor_pb2_grpc
from services.common.logs import get_logger, redact
from services.common.peercred import PeerCred
from services.executor import metrics, netlink
from services.executor.guard import CallerPolicy, caller_from_metadata
from services.executor.netlink import NetlinkFailure as NetlinkError  # an OSError; pyroute2 loads on first use
from services.executor.rejection import Reason, Rejected
from services.executor.runner import DelegateRunner, ExecOutcome, ExecRequest
from services.executor.validation import validate_gateways, validate_ifname, validate_netns

log = get_logger(__name__)

_STATUS = {
    Reason.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
    Reason.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}
# Answer a little before the caller's deadline, so it learns the plugin was
# killed instead of just timing out itself.
_DEADLINE_MARGIN = 0.02


def time_left(context: Any) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return max(float(remaining) - _DEADLINE_MARGIN, 0.001)


async def _abort(context: Any, exc: Rejected) -> NoReturn:
    await context.abort(_STATUS[exc.reason], exc.message)
    raise AssertionError("context.abort returned")  # pragma: no cover


def _guarded(check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except Rejected as exc:
        metrics.REJECTED.labels(reason=exc.reason.value).inc()
        raise


def _no_peer(context: Any) -> PeerCred | None:
    return None


def _response(outcome: ExecOutcome) -> executor_pb2.ExecPluginResponse:
    response = executor_pb2.ExecPluginResponse(
        exit_code=outcome.exit_code, stdout=outcome.stdout, duration_seconds=outcome.duration
    )
    if outcome.error is not None:
        response.error.CopyFrom(
            cni_pb2.CniError(code=outcome.error.code, msg=outcome.error.msg, details=outcome.error.details)
        )
    return response


class ExecutorServicer(executor_pb2_grpc.ExecutorServicer):  # type: ignore[misc]
    def __init__(
        self,
        runner: DelegateRunner,
        policy: CallerPolicy,
        peers: Callable[[Any], PeerCred | None] = _no_peer,
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.allow_operator_exec = policy.allow_operator_exec
        self._peers = peers

    def _caller(self, context: Any) -> tuple[PeerCred | None, str]:
        """The call's SO_PEERCRED (through the front) and the caller's marker."""
        return self._peers(context), caller_from_metadata(context.invocation_metadata())

    async def ExecPlugin(
        self, request: executor_pb2.ExecPluginRequest, context: Any
    ) -> executor_pb2.ExecPluginResponse:
        peer, marker = self._caller(context)
        try:
            outcome = await self._exec(peer, marker, request, context)
        except Rejected as exc:
            await _abort(context, exc)
        return _response(outcome)

    async def ExecPlugins(
        self, request: executor_pb2.ExecPluginsRequest, context: Any
    ) -> executor_pb2.ExecPluginsResponse:
        """ExecPlugin for each call in order, in one round trip (see the proto)."""
        peer, marker = self._caller(context)
        results = []
        for call in request.calls:
            try:
                outcome = await self._exec(peer, marker, call, context)
            except Rejected as exc:
                refused = _STATUS[exc.reason].value[0]
                results.append(executor_pb2.ExecPluginResult(refused_code=refused, refused_message=exc.message))
                if request.stop_at_failure:
                    break
                continue
            results.append(executor_pb2.ExecPluginResult(response=_response(outcome)))
            if request.stop_at_failure and (outcome.error is not None or outcome.exit_code != 0):
                break
        return executor_pb2.ExecPluginsResponse(results=results)

    async def _exec(
        self, peer: PeerCred | None, marker: str, request: executor_pb2.ExecPluginRequest, context: Any
    ) -> ExecOutcome:
        """One delegate call, guarded and bounded by the RPC's deadline; raises Rejected."""
        try:
            _guarded(self.policy.check_exec, peer, marker, request.command)
            return await self.runner.run(
                ExecRequest(
                    plugin=request.plugin,
                    command=request.command,
                    container_id=request.container_id,
                    netns=request.netns,
                    ifname=request.ifname,
                    args=request.args,
                    config=request.config,
                    extra_env=dict(request.extra_env),
                ),
                time_left(context),
            )
        except Rejected as exc:
            log.info("exec refused", plugin=request.plugin[:64], cni_command=request.command[:16], reason=exc.message)
            raise

    async def ListInterfaces(
        self, request: executor_pb2.ListInterfacesRequest, context: Any
    ) -> executor_pb2.ListInterfacesResponse:
        try:
            netns = validate_netns(request.netns, "", self.runner.settings.netns_prefixes)
            view = await netlink.list_interfaces(netns)
        except Rejected as exc:
            await _abort(context, exc)
        except (OSError, NetlinkError) as exc:  # NetlinkError is not an OSError
            await context.abort(grpc.StatusCode.INTERNAL, redact(f"netlink: {exc}"))
        return executor_pb2.ListInterfacesResponse(
            interfaces=[
                executor_pb2.NetInterface(
                    name=i.name, index=i.index, mac=i.mac, mtu=i.mtu, up=i.up, kind=i.kind, addresses=list(i.addresses)
                )
                for i in view.interfaces
            ],
            routes=[
                executor_pb2.Route(destination=r.destination, gateway=r.gateway, ifname=r.ifname) for r in view.routes
            ],
        )

    async def DeleteInterface(
        self, request: executor_pb2.DeleteInterfaceRequest, context: Any
    ) -> executor_pb2.DeleteInterfaceResponse:
        peer, marker = self._caller(context)
        try:
            _guarded(self.policy.check_delete, peer, marker)
            netns = validate_netns(request.netns, "", self.runner.settings.netns_prefixes)
            ifname = validate_ifname(request.ifname)
            if ifname == "lo":
                raise Rejected(Reason.INVALID, "the loopback interface is never deleted")
            deleted = await netlink.delete_interface(netns, ifname)
        except Rejected as exc:
            await _abort(context, exc)
        except (OSError, NetlinkError) as exc:  # NetlinkError is not an OSError
            await context.abort(grpc.StatusCode.INTERNAL, redact(f"netlink: {exc}"))
        log.info("interface deleted" if deleted else "interface already absent", netns=netns, ifname=ifname)
        return executor_pb2.DeleteInterfaceResponse(deleted=deleted)

    async def SetDefaultRoutes(
        self, request: executor_pb2.SetDefaultRoutesRequest, context: Any
    ) -> executor_pb2.SetDefaultRoutesResponse:
        peer, marker = self._caller(context)
        try:
            _guarded(self.policy.check_route_change, peer, marker)
            netns = validate_netns(request.netns, "", self.runner.settings.netns_prefixes)
            ifname = validate_ifname(request.ifname)
            gateways = validate_gateways(request.gateways)
            change = await netlink.set_default_routes(
                netns, ifname, drop_ipv4=request.drop_ipv4, drop_ipv6=request.drop_ipv6, gateways=gateways
            )
        except Rejected as exc:
            log.info("default routes refused", netns=request.netns, ifname=request.ifname, reason=exc.message)
            await _abort(context, exc)
        except (OSError, NetlinkError) as exc:
            await context.abort(grpc.StatusCode.INTERNAL, redact(f"netlink: {exc}"))
        log.info(
            "default routes set",
            netns=netns,
            ifname=ifname,
            removed=[f"{r.destination} via {r.gateway or '-'}" for r in change.removed],
            added=[f"{r.destination} via {r.gateway}" for r in change.added],
        )
        return executor_pb2.SetDefaultRoutesResponse(
            removed=[_route(r) for r in change.removed], added=[_route(r) for r in change.added]
        )

    async def GetStats(self, request: executor_pb2.GetStatsRequest, context: Any) -> executor_pb2.ExecutorStats:
        """Read-only, so not guarded: any peer that can open the socket may ask."""
        settings = self.runner.settings
        return executor_pb2.ExecutorStats(
            in_flight=self.runner.in_flight,
            queued=self.runner.queued,
            max_concurrency=settings.max_concurrency,
            timeout_seconds=settings.timeout_ceiling,
            bin_dirs=list(settings.bin_dirs),
            chroot_dir=settings.chroot_dir,
            operator_exec_allowed=self.allow_operator_exec,
            problems=settings.problems(),
        )


def _route(route: netlink.Route) -> executor_pb2.Route:
    return executor_pb2.Route(destination=route.destination, gateway=route.gateway, ifname=route.ifname)
