"""`multusctl check ns/name`: CNI CHECK for each of a pod's attachments, one
delegate at a time (the gateway's Delegate call with CHECK, which runs the
recorded network's plugins against the recorded result), so the output says
which delegate is broken instead of the first failure only."""

from __future__ import annotations

from typing import Any

from services.api import gateway_pb2, gateway_pb2_grpc
from services.ctl.attachments import GATEWAY, Filter, list_attachments
from services.ctl.errors import FAILED, NOT_FOUND, OK, CtlError
from services.ctl.output import short_id, table
from services.ctl.pods import pod_cni_args
from services.ctl.result import Result
from services.ctl.rpc import Node, endpoint

PASSED = "ok"
FAILED_RESULT = "failed"
INCOMPLETE = "incomplete"
NOT_CHECKED = "not-checked"
# A CHECK runs the network's plugins through the executor: allow it time.
CHECK_TIMEOUT = 60.0


def check_request(attachment: dict[str, Any]) -> gateway_pb2.DelegateRequest:
    env = {
        "CNI_COMMAND": "CHECK",
        "CNI_CONTAINERID": attachment["containerID"],
        "CNI_NETNS": attachment["netns"],
        "CNI_IFNAME": attachment["ifname"],
        "CNI_ARGS": pod_cni_args(
            attachment["namespace"], attachment["pod"], attachment["containerID"], attachment["podUID"]
        ),
    }
    return gateway_pb2.DelegateRequest(env=env)


def check_one(node: Node, attachment: dict[str, Any]) -> dict[str, Any]:
    row = {k: attachment[k] for k in ("containerID", "ifname", "network", "plugin")}
    if attachment["origin"] != GATEWAY:
        return {**row, "result": NOT_CHECKED, "code": 0, "message": "attached by upstream Multus: no netns recorded"}
    if attachment["state"] != "added":
        return {**row, "result": INCOMPLETE, "code": 3, "message": "ADD never completed for this attachment"}
    target = endpoint(node.config, "gateway")
    reply = node.call(
        target, gateway_pb2_grpc.GatewayStub, "Delegate", check_request(attachment), max(node.timeout, CHECK_TIMEOUT)
    )
    if reply.error.code:
        details = f": {reply.error.details}" if reply.error.details else ""
        return {**row, "result": FAILED_RESULT, "code": reply.error.code, "message": reply.error.msg + details}
    return {**row, "result": PASSED, "code": 0, "message": ""}


def render(doc: dict[str, Any]) -> str:
    return table(
        ["container", "ifname", "network", "plugin", "result", "message"],
        [
            [short_id(r["containerID"]), r["ifname"], r["network"], r["plugin"], r["result"], r["message"] or "-"]
            for r in doc["results"]
        ],
    )


def run(node: Node, namespace: str, name: str, container_id: str = "") -> Result:
    attachments = list_attachments(node, Filter(namespace, name, container_id))
    if not attachments:
        raise CtlError(NOT_FOUND, f"no attachments recorded for pod {namespace}/{name}")
    results = [check_one(node, a) for a in attachments]
    doc = {
        "pod": {"namespace": namespace, "name": name},
        "results": results,
        "passed": all(r["result"] in (PASSED, NOT_CHECKED) for r in results),
    }
    return Result(doc, render(doc), OK if doc["passed"] else FAILED)
