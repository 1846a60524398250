"""multus.gateway.v1.Gateway: protobuf <-> domain translation only."""

from __future__ import annotations

import json
from typing import Any

import grpc

from services.api import cni_pb2, gateway_pb2, gateway_pb2_grpc
from services.common import cni
from services.gateway.cni_service import CniService
from services.gateway.dispatch import Dispatcher
from services.gateway.request import CniRequest, InterfaceAttributes


def _response(result: dict[str, Any] | None) -> gateway_pb2.CniResponse:
    return gateway_pb2.CniResponse(result_json=json.dumps(result) if result is not None else "")


def _error(err: cni.CniError) -> gateway_pb2.CniResponse:
    return gateway_pb2.CniResponse(error=cni_pb2.CniError(code=err.code, msg=err.msg, details=err.details))


def _request(message: Any, command: str) -> CniRequest:
    env = dict(message.env)
    env["CNI_COMMAND"] = command  # the RPC names the verb
    return CniRequest(env=env, config=bytes(message.config))


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    def __init__(self, dispatcher: Dispatcher, service: CniService) -> None:
        self._dispatcher = dispatcher
        self._service = service

    async def _verb(self, request: gateway_pb2.CniRequest, command: str) -> gateway_pb2.CniResponse:
        try:
            return _response(await self._dispatcher.cni(_request(request, command)))
        except cni.CniError as err:
            return _error(err)

    async def Add(self, request: gateway_pb2.CniRequest, context: Any) -> gateway_pb2.CniResponse:
        return await self._verb(request, "ADD")

    async def Del(self, request: gateway_pb2.CniRequest, context: Any) -> gateway_pb2.CniResponse:
        return await self._verb(request, "DEL")

    async def Check(self, request: gateway_pb2.CniRequest, context: Any) -> gateway_pb2.CniResponse:
        return await self._verb(request, "CHECK")

    async def Status(self, request: gateway_pb2.CniRequest, context: Any) -> gateway_pb2.CniResponse:
        return await self._verb(request, "STATUS")

    async def GC(self, request: gateway_pb2.CniRequest, context: Any) -> gateway_pb2.CniResponse:
        return await self._verb(request, "GC")

    async def Delegate(self, request: gateway_pb2.DelegateRequest, context: Any) -> gateway_pb2.CniResponse:
        attrs = None
        if request.HasField("interface_attributes"):
            pb = request.interface_attributes
            try:
                cni_args = json.loads(pb.cni_args_json) if pb.cni_args_json else None
            except ValueError:
                return _error(cni.CniError(cni.DECODE_FAILURE, "interface_attributes.cni_args_json is not JSON"))
            if cni_args is not None and not isinstance(cni_args, dict):
                return _error(cni.CniError(cni.DECODE_FAILURE, "interface_attributes.cni_args_json must be an object"))
            attrs = InterfaceAttributes(tuple(pb.ips), pb.mac, cni_args)
        env = dict(request.env)
        try:
            result = await self._dispatcher.delegate(CniRequest(env, bytes(request.config), attrs))
        except cni.CniError as err:
            return _error(err)
        return _response(result)

    async def ListAttachments(
        self, request: gateway_pb2.ListAttachmentsRequest, context: Any
    ) -> gateway_pb2.ListAttachmentsResponse:
        try:
            records = await self._service.attachments(request.container_id, request.pod_namespace, request.pod_name)
        except cni.CniError as err:  # a malformed container ID
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return gateway_pb2.ListAttachmentsResponse(
            attachments=[
                gateway_pb2.Attachment(
                    container_id=r.container_id,
                    ifname=r.ifname,
                    netns=r.netns,
                    pod_namespace=r.pod_namespace,
                    pod_name=r.pod_name,
                    pod_uid=r.pod_uid,
                    network_name=r.network_name,
                    plugin_type=r.plugin_type,
                    result_json=json.dumps(r.result) if r.result is not None else "",
                    created_unix=int(r.created),
                    state=r.state,
                    default=r.master,
                    hotplug=r.hotplug,
                )
                for r in records
            ]
        )
