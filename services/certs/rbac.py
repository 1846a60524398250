"""The RBAC permissions a node's multus identity needs, and the ClusterRole
rules that grant them. Pure: the preflight (SelfSubjectAccessReview) and the
deployment manifests' tests both derive what they check from this table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ALWAYS = "always"
PER_NODE_CERTIFICATE = "per-node-certificate"
DELEGATE_TOKEN = "delegate-token"


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""  # "" = cluster-wide
    name: str = ""  # a single resourceName, "" = any

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        named = f" named {self.name}" if self.name else ""
        group = self.group or "core"
        return f"{self.verb} {self.full_resource} ({group}){named}{where}"


@dataclass(frozen=True)
class Requirement:
    permission: Permission
    when: str  # ALWAYS, PER_NODE_CERTIFICATE or DELEGATE_TOKEN
    why: str


def _each(verbs: Sequence[str], group: str, resource: str, subresource: str, when: str, why: str) -> list[Requirement]:
    return [Requirement(Permission(v, group, resource, subresource), when, why) for v in verbs]


# Every verb the node's services use. serviceaccounts/token is named and
# namespaced at run time (the configured delegate ServiceAccount).
REQUIRED_PERMISSIONS: tuple[Requirement, ...] = (
    *_each(("get", "list", "watch"), "", "pods", "", ALWAYS, "cache: pod informer and live GET"),
    *_each(
        ("patch", "update"),
        "",
        "pods",
        "status",
        ALWAYS,
        "cache: network-status write-back (merge patch; replace for a mirror pod)",
    ),
    *_each(("create", "patch"), "", "events", "", ALWAYS, "gateway: AddedInterface/NoNetworkFound pod events"),
    *_each(
        ("get", "list", "watch"), "k8s.cni.cncf.io", "network-attachment-definitions", "", ALWAYS, "cache: NAD informer"
    ),
    *_each(
        ("create", "get", "watch"),
        "certificates.k8s.io",
        "certificatesigningrequests",
        "",
        PER_NODE_CERTIFICATE,
        "certs: per-node client certificate renewal",
    ),
    Requirement(
        Permission("create", "", "serviceaccounts", "token"), DELEGATE_TOKEN, "certs: delegate ServiceAccount token"
    ),
)


def required_permissions(
    *, per_node_certificate: bool, delegate_namespace: str = "", delegate_service_account: str = ""
) -> tuple[Permission, ...]:
    """The permissions this node needs with this configuration."""
    wanted = {ALWAYS, PER_NODE_CERTIFICATE} if per_node_certificate else {ALWAYS}
    if delegate_service_account:
        wanted.add(DELEGATE_TOKEN)
    out: list[Permission] = []
    for req in REQUIRED_PERMISSIONS:
        if req.when not in wanted:
            continue
        perm = req.permission
        if req.when == DELEGATE_TOKEN:
            perm = Permission(
                perm.verb, perm.group, perm.resource, perm.subresource, delegate_namespace, delegate_service_account
            )
        out.append(perm)
    return tuple(out)


def _flow(items: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def fix_rule(permission: Permission) -> str:
    """The exact ClusterRole rule (YAML list item) that grants `permission`."""
    lines = [
        f"- apiGroups: {_flow([permission.group])}",
        f"  resources: {_flow([permission.full_resource])}",
    ]
    if permission.name:
        lines.append(f"  resourceNames: {_flow([permission.name])}")
    lines.append(f"  verbs: {_flow([permission.verb])}")
    return "\n".join(lines) + "\n"


def cluster_role_rules(permissions: Iterable[Permission]) -> list[dict[str, Any]]:
    """The minimal ClusterRole `rules` granting every permission, merged per resource."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for perm in permissions:
        verbs = merged.setdefault((perm.group, perm.full_resource, perm.name), [])
        if perm.verb not in verbs:
            verbs.append(perm.verb)
    rules: list[dict[str, Any]] = []
    for (group, resource, name), verbs in merged.items():
        rule: dict[str, Any] = {"apiGroups": [group], "resources": [resource], "verbs": verbs}
        if name:
            rule["resourceNames"] = [name]
        rules.append(rule)
    return rules


def _resource_matches(patterns: Sequence[str], perm: Permission) -> bool:
    for pattern in patterns:
        if pattern in ("*", perm.full_resource):
            return True
        if perm.subresource and pattern == f"*/{perm.subresource}":
            return True
    return False


def rule_allows(rule: Mapping[str, Any], perm: Permission) -> bool:
    """Whether one RBAC PolicyRule grants `perm` (Kubernetes' RBAC matching)."""
    groups = rule.get("apiGroups") or []
    verbs = rule.get("verbs") or []
    names = rule.get("resourceNames") or []
    return (
        ("*" in groups or perm.group in groups)
        and ("*" in verbs or perm.verb in verbs)
        and _resource_matches(rule.get("resources") or [], perm)
        and (not names or (perm.name != "" and perm.name in names))
    )


def missing_from_rules(rules: Iterable[Mapping[str, Any]], permissions: Iterable[Permission]) -> list[Permission]:
    """The permissions no rule grants (e.g. to check a manifest's ClusterRole)."""
    rule_list = list(rules)
    return [p for p in permissions if not any(rule_allows(r, p) for r in rule_list)]


def missing_permissions(permissions: Iterable[Permission], allowed: Mapping[Permission, bool]) -> list[Permission]:
    """Preflight evaluation: the permissions an access review did not allow
    (a permission that was not reviewed at all counts as missing)."""
    return [p for p in permissions if not allowed.get(p, False)]
