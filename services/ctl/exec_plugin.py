"""`multusctl exec PLUGIN COMMAND`: one delegate call through the executor, for
debugging. The executor refuses it (exit 4) unless the daemon config has
`executorAllowOperatorExec: true`; VERSION is always allowed."""

from __future__ import annotations

import json
from typing import Any

from services.api import executor_pb2, executor_pb2_grpc
from services.ctl.errors import FAILED, OK
from services.ctl.result import Result
from services.ctl.rpc import Endpoint, Node, endpoint


def exec_document(plugin: str, command: str, socket: str, reply: executor_pb2.ExecPluginResponse) -> dict[str, Any]:
    stdout = bytes(reply.stdout).decode(errors="replace")
    try:
        result = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        result = None
    return {
        "plugin": plugin,
        "command": command,
        "executor": socket,
        "exitCode": reply.exit_code,
        "durationSeconds": round(reply.duration_seconds, 6),
        "result": result,
        "stdout": stdout,
        "error": {"code": reply.error.code, "msg": reply.error.msg, "details": reply.error.details}
        if reply.error.code
        else None,
    }


def render(doc: dict[str, Any]) -> str:
    head = (
        f"{doc['plugin']} {doc['command']}: exit {doc['exitCode']} in {doc['durationSeconds'] * 1000:.1f} ms "
        f"({doc['executor']})"
    )
    parts = [head]
    if doc["error"]:
        err = doc["error"]
        parts.append(f"CNI error {err['code']}: {err['msg']}" + (f": {err['details']}" if err["details"] else ""))
    if doc["result"] is not None:
        parts.append(json.dumps(doc["result"], indent=2))
    elif doc["stdout"].strip():
        parts.append(doc["stdout"].rstrip())
    return "\n".join(parts)


def run(
    node: Node,
    *,
    plugin: str,
    command: str,
    netns: str,
    ifname: str,
    container_id: str,
    args: str,
    config: bytes,
    socket: str = "",
) -> Result:
    target = Endpoint("executor", socket) if socket else endpoint(node.config, "executor")
    request = executor_pb2.ExecPluginRequest(
        plugin=plugin,
        command=command.upper(),
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=args,
        config=config,
    )
    reply = node.call(target, executor_pb2_grpc.ExecutorStub, "ExecPlugin", request)
    doc = exec_document(plugin, command.upper(), target.socket, reply)
    failed = bool(doc["error"]) or doc["exitCode"] != 0
    return Result(doc, render(doc), FAILED if failed else OK)
