"""What an API request needs from RBAC, and whether the shipped rules grant it.

`request_permission` turns a recorded request into the (verb, group, resource,
subresource, namespace, name) the API server's RBAC authorizer checks, as its
RequestInfoFactory does. `ungranted` holds a list of recorded requests
against the node's permission table (services/certs/rbac.py), which is what
the manifests grant and what the certs preflight checks: a request the table
lacks is exactly the defect that let every network-status write fail with
403 while the preflight said "every permission granted".
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qs

from services.certs import rbac
from tests.support.api_recorder import RecordedRequest

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
# What Kubernetes' default ClusterRole system:basic-user grants every
# authenticated user (the certs preflight asks its own access this way).
DEFAULT_GRANTED = frozenset(
    {
        ("create", "authorization.k8s.io", "selfsubjectaccessreviews"),
        ("create", "authorization.k8s.io", "selfsubjectrulesreviews"),
    }
)


def request_permission(method: str, path: str, query: str = "") -> rbac.Permission | None:
    """The RBAC permission a resource request needs; None for non-resource URLs
    (/api, /apis, /version, /healthz: discovery, open to every authenticated user)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    params = parse_qs(query)
    watching = watch_path or params.get("watch", [""])[0] in ("true", "1")
    if method == "GET":
        verb = "watch" if watching else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    if resource == "namespaces" and not namespace and name:
        namespace = name
    return rbac.Permission(verb, group, resource, subresource, namespace, name)


def granted_by_table(
    permission: rbac.Permission, table: Iterable[rbac.Requirement] = rbac.REQUIRED_PERMISSIONS
) -> bool:
    """The table names this verb on this (sub)resource; a table entry without a
    namespace or name grants any (the token entry gets both at run time)."""
    for requirement in table:
        wanted = requirement.permission
        if (wanted.verb, wanted.group, wanted.resource, wanted.subresource) != (
            permission.verb,
            permission.group,
            permission.resource,
            permission.subresource,
        ):
            continue
        if wanted.namespace and wanted.namespace != permission.namespace:
            continue
        if wanted.name and wanted.name != permission.name:
            continue
        return True
    return False


def node_requests(requests: Iterable[RecordedRequest]) -> list[RecordedRequest]:
    """Requests made with a node's multus identity (per-node certificate CN
    system:multus:<node>, or a test certificate in group system:multus)."""
    return [r for r in requests if r.user.startswith("system:multus:") or "system:multus" in r.groups]


def ungranted(requests: Iterable[RecordedRequest]) -> list[str]:
    """One line per node request whose permission the table does not list."""
    problems = []
    for request in node_requests(requests):
        permission = request_permission(request.method, request.path, request.query)
        if permission is None or (permission.verb, permission.group, permission.resource) in DEFAULT_GRANTED:
            continue
        if not granted_by_table(permission):
            problems.append(
                f"{request.user}: {request.method} {request.path} needs {permission.describe()}"
                f" (answered {request.status}), which services/certs/rbac.py and rbac.yaml do not grant"
            )
    return problems


def forbidden(requests: Iterable[RecordedRequest]) -> list[RecordedRequest]:
    return [r for r in node_requests(requests) if r.status == 403]
