"""`multusctl status`: every service's health, version and uptime, the cache's
object counts and sync age, credential expiry, RBAC gaps with the rule that
fixes them, the executor's queue, the gateway's Multus CNI config and spooled
DELs, and a list of problems that decides the exit code. Only read-only calls."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.api import (
    cache_pb2,
    cache_pb2_grpc,
    certs_pb2,
    certs_pb2_grpc,
    executor_pb2,
    executor_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    service_info_pb2,
    service_info_pb2_grpc,
)
from services.common.config import node_name
from services.ctl.errors import FAILED, OK, UNAVAILABLE, CtlError
from services.ctl.output import duration, indent, iso, relative, table, yes
from services.ctl.result import Result
from services.ctl.rpc import Endpoint, Node, endpoints
from services.gateway.spool import spool_dir, spooled_files

EXPIRING_STATES = ("EXPIRING", "EXPIRED", "MISSING")


@dataclass
class ServiceReport:
    """What one service answered (or why it did not)."""

    endpoint: Endpoint
    health: str = ""
    liveness: str = ""
    info: service_info_pb2.ServiceInfoResponse | None = None
    details: Any = None  # the service's own status reply
    error: str = ""
    unreachable: bool = False
    notes: list[str] = field(default_factory=list)


_DETAILS = {
    "gateway": (gateway_pb2_grpc.GatewayStub, "GetGatewayStatus", gateway_pb2.GetGatewayStatusRequest),
    "cache": (cache_pb2_grpc.CacheStub, "Stats", cache_pb2.StatsRequest),
    "executor": (executor_pb2_grpc.ExecutorStub, "GetStats", executor_pb2.GetStatsRequest),
    "certs": (certs_pb2_grpc.CertsStub, "GetCredentialStatus", certs_pb2.GetCredentialStatusRequest),
}


def gather(node: Node, target: Endpoint) -> ServiceReport:
    report = ServiceReport(target)
    try:
        report.health = node.health(target)
    except CtlError as err:
        report.error = err.message
        report.unreachable = err.code == UNAVAILABLE
        return report
    # The rest is best effort: an older service may lack a call.
    stub, method, request = _DETAILS[target.service]
    for what, fetch in (
        ("liveness", lambda: node.health(target, liveness=True)),
        (
            "info",
            lambda: node.call(
                target,
                service_info_pb2_grpc.ServiceInfoStub,
                "GetServiceInfo",
                service_info_pb2.GetServiceInfoRequest(),
            ),
        ),
        ("details", lambda: node.call(target, stub, method, request())),
    ):
        try:
            setattr(report, what, fetch())
        except CtlError as err:
            report.notes.append(err.message)
    return report


# --- the document (pure) ------------------------------------------------------------
def _service_doc(report: ServiceReport, now: float) -> dict[str, Any]:
    info = report.info
    return {
        "name": report.endpoint.service,
        "socket": report.endpoint.socket,
        "reachable": not report.unreachable and not report.error,
        "health": report.health or None,
        "liveness": report.liveness or None,
        "version": info.version if info else None,
        "pid": info.pid if info else None,
        "startedAt": iso(info.started_unix) if info else None,
        "uptimeSeconds": round(now - info.started_unix, 1) if info and info.started_unix else None,
        "configPath": (info.config_path or None) if info else None,
        "logFile": (info.log_file or None) if info else None,
        "error": report.error or None,
        "notes": report.notes,
    }


def _cache_doc(stats: cache_pb2.StatsResponse, now: float) -> dict[str, Any]:
    return {
        "source": stats.source,
        "kinds": [
            {
                "kind": k.kind,
                "objects": k.count,
                "synced": k.synced,
                "lastSyncAt": iso(k.last_sync_unix),
                "syncAgeSeconds": round(now - k.last_sync_unix, 1) if k.last_sync_unix else None,
                "watchRestarts": k.watch_restarts,
                "resourceVersion": k.resource_version,
            }
            for k in stats.kinds
        ],
    }


def _certs_doc(status: certs_pb2.CredentialStatus, now: float) -> dict[str, Any]:
    return {
        "healthy": status.healthy,
        "apiKubeconfig": status.api_kubeconfig,
        "credentials": [
            {
                "name": c.name,
                "state": c.state,
                "path": c.path,
                "issuedAt": iso(c.issued_unix),
                "expiresAt": iso(c.not_after_unix),
                "expiresInSeconds": round(c.not_after_unix - now, 1) if c.not_after_unix else None,
                "lastRotationAt": iso(c.last_rotation_unix),
                "lastError": c.last_error or None,
                "generation": c.generation,
            }
            for c in status.credentials
        ],
        "missingPermissions": [
            {
                "verb": p.verb,
                "group": p.group,
                "resource": p.resource,
                "subresource": p.subresource,
                "namespace": p.namespace,
                "fix": p.fix,
            }
            for p in status.missing_permissions
        ],
    }


def _executor_doc(socket: str, stats: executor_pb2.ExecutorStats) -> dict[str, Any]:
    return {
        "socket": socket,
        "inFlight": stats.in_flight,
        "queued": stats.queued,
        "maxConcurrency": stats.max_concurrency,
        "timeoutSeconds": stats.timeout_seconds,
        "operatorExecAllowed": stats.operator_exec_allowed,
        "binDirs": list(stats.bin_dirs),
        "chrootDir": stats.chroot_dir,
        "problems": list(stats.problems),
    }


def _gateway_doc(status: gateway_pb2.GatewayStatus) -> dict[str, Any]:
    conf = status.multus_config
    return {
        "ready": status.ready,
        "draining": status.draining,
        "inFlight": status.in_flight,
        "attachments": status.attachments,
        "containers": status.containers,
        "executors": status.executors,
        "executorsConnected": status.executors_ready,
        "httpSocket": status.http_socket,
        "multusConfig": {
            "ready": conf.ready,
            "reason": conf.reason,
            "mode": conf.mode,
            "path": conf.path,
            "primary": conf.primary or None,
        },
    }


def problems(doc: dict[str, Any]) -> list[dict[str, str]]:
    """What an operator should look at, from the status document (pure)."""
    found: list[dict[str, str]] = []

    def add(service: str, message: str) -> None:
        found.append({"service": service, "message": message})

    for svc in doc["services"]:
        if not svc["reachable"]:
            add(svc["name"], svc["error"] or "not reachable")
        elif svc["health"] != "SERVING":
            add(svc["name"], f"health is {svc['health']} (not ready)")
    gateway = doc.get("gateway")
    if gateway:
        if not gateway["multusConfig"]["ready"]:
            add("gateway", f"Multus CNI config not ready: {gateway['multusConfig']['reason']}")
        if gateway["executorsConnected"] < gateway["executors"]:
            add("gateway", f"{gateway['executorsConnected']}/{gateway['executors']} executors connected")
    if doc["spool"]["waiting"]:
        add("gateway", f"{doc['spool']['waiting']} spooled DEL(s) waiting in {doc['spool']['dir']}")
    cache = doc.get("cache")
    for kind in cache["kinds"] if cache else ():
        if not kind["synced"]:
            add("cache", f"{kind['kind']} not synced")
    certs = doc.get("certs")
    if certs:
        for cred in certs["credentials"]:
            if cred["state"] in EXPIRING_STATES:
                add("certs", f"credential {cred['name']} is {cred['state']}" + _error_suffix(cred["lastError"]))
        for perm in certs["missingPermissions"]:
            add("certs", f"RBAC: missing {_permission(perm)}")
    for ex in doc["executors"]:
        for problem in ex["problems"]:
            add("executor", problem)
        if ex["queued"] and ex["inFlight"] >= ex["maxConcurrency"]:
            add("executor", f"saturated: {ex['inFlight']}/{ex['maxConcurrency']} running, {ex['queued']} queued")
    return found


def _error_suffix(error: str | None) -> str:
    return f" (last error: {error})" if error else ""


def _permission(perm: dict[str, str]) -> str:
    resource = perm["resource"] + (f"/{perm['subresource']}" if perm["subresource"] else "")
    group = perm["group"] or "core"
    where = f" in namespace {perm['namespace']}" if perm["namespace"] else ""
    return f"{perm['verb']} {resource} ({group}){where}"


def status_document(reports: Sequence[ServiceReport], spool: tuple[str, int], now: float, node: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "node": node,
        "services": [_service_doc(r, now) for r in reports],
        "gateway": None,
        "cache": None,
        "executors": [],
        "certs": None,
        "spool": {"dir": spool[0], "waiting": spool[1]},
    }
    for report in reports:
        details = report.details
        if details is None:
            continue
        name = report.endpoint.service
        if name == "gateway":
            doc["gateway"] = _gateway_doc(details)
            doc["spool"] = {"dir": details.spool_dir or spool[0], "waiting": details.spooled_dels}
        elif name == "cache":
            doc["cache"] = _cache_doc(details, now)
        elif name == "executor":
            doc["executors"].append(_executor_doc(report.endpoint.socket, details))
        elif name == "certs":
            doc["certs"] = _certs_doc(details, now)
    doc["problems"] = problems(doc)
    return doc


def exit_code(doc: dict[str, Any]) -> int:
    if any(not s["reachable"] for s in doc["services"]):
        return UNAVAILABLE
    return FAILED if doc["problems"] else OK


# --- the table (pure) ---------------------------------------------------------------
def render(doc: dict[str, Any]) -> str:
    parts = [
        table(
            ["service", "health", "live", "version", "uptime", "pid", "socket"],
            [
                [
                    s["name"],
                    s["health"] or "UNREACHABLE",
                    s["liveness"] or "-",
                    s["version"] or "-",
                    duration(s["uptimeSeconds"]),
                    s["pid"] or "-",
                    s["socket"],
                ]
                for s in doc["services"]
            ],
        )
    ]
    gateway = doc["gateway"]
    if gateway:
        conf = gateway["multusConfig"]
        parts.append(
            "GATEWAY\n"
            + table(
                ["ready", "in-flight", "attachments", "containers", "spooled-dels", "executors", "multus-config"],
                [
                    [
                        yes(gateway["ready"]),
                        gateway["inFlight"],
                        gateway["attachments"],
                        gateway["containers"],
                        doc["spool"]["waiting"],
                        f"{gateway['executorsConnected']}/{gateway['executors']}",
                        f"{'ready' if conf['ready'] else 'NOT READY'} ({conf['mode']}): {conf['reason']}",
                    ]
                ],
            )
        )
    elif doc["spool"]["waiting"]:
        parts.append(f"GATEWAY\n{doc['spool']['waiting']} spooled DEL(s) waiting in {doc['spool']['dir']}")
    cache = doc["cache"]
    if cache:
        parts.append(
            f"CACHE ({cache['source']})\n"
            + table(
                ["kind", "objects", "synced", "last-sync", "watch-restarts", "resource-version"],
                [
                    [
                        k["kind"],
                        k["objects"],
                        yes(k["synced"]),
                        relative(-k["syncAgeSeconds"] if k["syncAgeSeconds"] is not None else None),
                        k["watchRestarts"],
                        k["resourceVersion"] or "-",
                    ]
                    for k in cache["kinds"]
                ],
            )
        )
    if doc["executors"]:
        parts.append(
            "EXECUTOR\n"
            + table(
                ["socket", "in-flight", "queued", "max", "operator-exec", "problems"],
                [
                    [
                        e["socket"],
                        e["inFlight"],
                        e["queued"],
                        e["maxConcurrency"],
                        "allowed" if e["operatorExecAllowed"] else "off",
                        "; ".join(e["problems"]) or "-",
                    ]
                    for e in doc["executors"]
                ],
            )
        )
    certs = doc["certs"]
    if certs:
        parts.append(
            "CREDENTIALS\n"
            + table(
                ["name", "state", "expires", "last-rotation", "path", "last-error"],
                [
                    [
                        c["name"],
                        c["state"],
                        relative(c["expiresInSeconds"]) if c["expiresInSeconds"] is not None else "never",
                        c["lastRotationAt"] or "-",
                        c["path"] or "-",
                        c["lastError"] or "-",
                    ]
                    for c in certs["credentials"]
                ],
            )
        )
        if certs["missingPermissions"]:
            gaps = [
                f"{_permission(p)}; add to the node's ClusterRole:\n{indent(p['fix'].rstrip())}"
                for p in certs["missingPermissions"]
            ]
            parts.append("RBAC GAPS\n" + "\n".join(gaps))
    if doc["problems"]:
        parts.append("PROBLEMS\n" + "\n".join(f"- {p['service']}: {p['message']}" for p in doc["problems"]))
    return "\n\n".join(parts)


def _spooled(node: Node) -> tuple[str, int]:
    """Counted here too: spooled DELs pile up exactly while the gateway is down."""
    directory = spool_dir(node.config.socket_dir)
    try:
        return str(directory), len(spooled_files(directory))
    except OSError:
        return str(directory), 0


def run(node: Node) -> Result:
    reports = [gather(node, target) for target in endpoints(node.config)]
    names = [r.info.node_name for r in reports if r.info is not None and r.info.node_name]
    doc = status_document(reports, _spooled(node), time.time(), names[0] if names else node_name())
    return Result(doc, render(doc), exit_code(doc))
