"""`multusctl plan ns/name`: the gateway's dry run of ADD for a pod (Gateway/Plan):
delegates in order, interface names, the stdin each plugin would get (secrets
redacted) and why each network is there. `--annotation` tries an edit of the
networks annotation before it is applied. Nothing is executed."""

from __future__ import annotations

import json
from typing import Any

from services.api import gateway_pb2, gateway_pb2_grpc
from services.ctl.errors import FAILED, OK
from services.ctl.output import indent, table, yes
from services.ctl.result import Result
from services.ctl.rpc import Node, endpoint

# Dry runs wait for the pod like ADD does (podWaitMs) and resolve every NAD.
PLAN_TIMEOUT_MARGIN = 10.0


def _json(text: str) -> Any:
    return json.loads(text) if text else None


def plan_document(namespace: str, name: str, reply: gateway_pb2.PlanResponse) -> dict[str, Any]:
    rules = reply.rules if reply.HasField("rules") else None
    return {
        "pod": {"namespace": namespace, "name": name, "uid": reply.pod_uid or None},
        "annotations": {
            "networks": {"value": reply.networks_annotation, "overridden": reply.networks_annotation_overridden},
            "defaultNetwork": {
                "value": reply.default_network_annotation,
                "overridden": reply.default_network_annotation_overridden,
            },
        },
        "multusConfig": reply.multus_config_path or None,
        "writesNetworkStatus": reply.writes_network_status,
        "rules": None
        if rules is None
        else {
            "clusterNetwork": rules.cluster_network,
            "defaultNetworks": list(rules.default_networks),
            "namespaceIsolation": rules.namespace_isolation,
            "globalNamespaces": list(rules.global_namespaces),
            "systemNamespaces": list(rules.system_namespaces),
            "podInSystemNamespace": rules.pod_in_system_namespace,
            "multusNamespace": rules.multus_namespace,
        },
        "delegates": [
            {
                "index": d.index,
                "ifname": d.ifname,
                "network": d.network_name,
                "default": d.default,
                "source": d.source,
                "reason": d.reason,
                "selection": _json(d.selection_json),
                "config": _json(d.config_json),
                "plugins": [
                    {"type": p.type, "stdin": _json(p.stdin_json), "getsPrevResult": p.gets_prev_result}
                    for p in d.plugins
                ],
                "cniArgs": d.cni_args,
                "capabilityArgs": _json(d.capability_args_json),
                "defaultRoute": {
                    "gateways": list(d.default_gateways),
                    "dropIPv4": d.drop_default_v4,
                    "dropIPv6": d.drop_default_v6,
                },
                "resourceName": d.resource_name or None,
                "deviceID": d.device_id or None,
            }
            for d in reply.delegates
        ],
        "notes": list(reply.notes),
        "error": {"code": reply.error.code, "msg": reply.error.msg, "details": reply.error.details}
        if reply.error.code
        else None,
    }


def render(doc: dict[str, Any]) -> str:
    pod = doc["pod"]
    networks = doc["annotations"]["networks"]
    header = [f"POD {pod['namespace']}/{pod['name']}" + (f" (uid {pod['uid']})" if pod["uid"] else "")]
    header.append(
        f"networks annotation: {networks['value']!r}" + (" (from --annotation)" if networks["overridden"] else "")
    )
    default_network = doc["annotations"]["defaultNetwork"]
    if default_network["value"]:
        header.append(
            f"default-network annotation: {default_network['value']!r}"
            + (" (from --default-network)" if default_network["overridden"] else "")
        )
    if doc["multusConfig"]:
        header.append(f"Multus CNI config: {doc['multusConfig']}")
    parts = ["\n".join(header)]
    if doc["error"]:
        err = doc["error"]
        details = f": {err['details']}" if err["details"] else ""
        parts.append(f"ADD WOULD FAIL with CNI error {err['code']}: {err['msg']}{details}")
    if doc["delegates"]:
        parts.append(
            table(
                ["#", "ifname", "network", "plugins", "default", "source", "reason"],
                [
                    [
                        d["index"],
                        d["ifname"],
                        d["network"],
                        ",".join(p["type"] for p in d["plugins"]),
                        yes(d["default"]),
                        d["source"],
                        d["reason"],
                    ]
                    for d in doc["delegates"]
                ],
            )
        )
        configs = []
        for d in doc["delegates"]:
            for p in d["plugins"]:
                prev = " (+ prevResult of the plugin before it)" if p["getsPrevResult"] else ""
                configs.append(
                    f"--- #{d['index']} {d['ifname']} {d['network']}: {p['type']}{prev}\n"
                    f"CNI_IFNAME={d['ifname']} CNI_ARGS={d['cniArgs']}\n" + json.dumps(p["stdin"], indent=2)
                )
        parts.append("STDIN PER PLUGIN (secrets redacted)\n" + "\n".join(configs))
    rules = doc["rules"]
    if rules:
        parts.append(
            "RULES\n"
            + indent(
                "\n".join(
                    [
                        f"clusterNetwork: {rules['clusterNetwork'] or '(delegates)'}",
                        f"defaultNetworks: {', '.join(rules['defaultNetworks']) or '-'}"
                        + (" (skipped: system namespace)" if rules["podInSystemNamespace"] else ""),
                        f"namespaceIsolation: {yes(rules['namespaceIsolation'])}; "
                        f"globalNamespaces: {', '.join(rules['globalNamespaces']) or '-'}",
                        f"systemNamespaces: {', '.join(rules['systemNamespaces']) or '-'}",
                        f"network-status written: {yes(doc['writesNetworkStatus'])}",
                    ]
                )
            )
        )
    if doc["notes"]:
        parts.append("NOTES\n" + "\n".join(f"- {n}" for n in doc["notes"]))
    return "\n\n".join(parts)


def run(
    node: Node,
    namespace: str,
    name: str,
    *,
    annotation: str | None,
    default_network: str | None,
    ifname: str,
    config: bytes,
) -> Result:
    request = gateway_pb2.PlanRequest(pod_namespace=namespace, pod_name=name, ifname=ifname, config=config)
    if annotation is not None:
        request.networks_annotation = annotation
    if default_network is not None:
        request.default_network_annotation = default_network
    timeout = node.timeout + node.config.pod_wait_ms / 1000.0 + PLAN_TIMEOUT_MARGIN
    reply = node.call(endpoint(node.config, "gateway"), gateway_pb2_grpc.GatewayStub, "Plan", request, timeout)
    doc = plan_document(namespace, name, reply)
    return Result(doc, render(doc), FAILED if doc["error"] else OK)
