"""Explaining a dry-run plan: why each delegate is in a pod's plan (cluster
network, `delegates`, the default-network annotation, `defaultNetworks`, an
element of the networks annotation, and which namespace rule let it in), the
stdin each plugin would get, and secrets removed from all of it. Pure.

The origins follow the order NetworkResolver.resolve builds delegates in, so
the n-th origin explains the n-th delegate."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.logs import redact
from services.common.selection import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION, NetworkSelectionElement
from services.gateway.invoke import plugin_confs, plugin_stdin
from services.gateway.netconf import MultusNetConf

CLUSTER_NETWORK = "clusterNetwork"
DELEGATES = "delegates"
DEFAULT_NETWORK_OVERRIDE = "default-network-annotation"
DEFAULT_NETWORKS = "defaultNetworks"
NETWORKS = "networks-annotation"

REDACTED = "[REDACTED]"
# Config keys whose values are credentials, whatever the plugin (tokens, passwords,
# inline kubeconfig key material); paths to such files are not secrets and stay.
_SECRET_KEY = re.compile(r"(?i)(token|password|passwd|secret|private[_-]?key|-data$|^key$|apikey|api[_-]key)")


@dataclass(frozen=True)
class Origin:
    """Why one delegate is in the plan."""

    source: str
    reason: str
    selection: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PluginStdin:
    type: str
    stdin: Mapping[str, Any]
    gets_prev_result: bool


def redact_config(value: Any) -> Any:
    """A copy of a JSON value with credentials replaced: values under secret-looking
    keys, and tokens, keys and certificates inside any string."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact_config(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_config(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def selection_json(element: NetworkSelectionElement) -> dict[str, Any]:
    """The element with upstream's JSON key names, empty fields left out."""
    obj: dict[str, Any] = {"name": element.name, "namespace": element.namespace}
    fields: tuple[tuple[str, Any], ...] = (
        ("interface", element.interface),
        ("ips", list(element.ips)),
        ("mac", element.mac),
        ("infiniband-guid", element.infiniband_guid),
        ("portMappings", [dict(p) for p in element.port_mappings]),
        ("bandwidth", dict(element.bandwidth) if element.bandwidth is not None else None),
        ("deviceID", element.device_id),
        ("cni-args", dict(element.cni_args) if element.cni_args is not None else None),
        ("default-route", list(element.default_route) if element.default_route is not None else None),
    )
    for key, value in fields:
        if value or (key == "default-route" and value is not None):
            obj[key] = value
    return obj


def _namespace_rule(element: NetworkSelectionElement, pod_namespace: str, netconf: MultusNetConf) -> str:
    if element.namespace == pod_namespace:
        return "the pod's own namespace"
    if netconf.namespace_isolation:
        return f"global namespace {element.namespace!r} (namespaceIsolation allows globalNamespaces)"
    return f"namespace {element.namespace!r} (namespaceIsolation is off)"


def delegate_origins(
    netconf: MultusNetConf,
    pod_namespace: str,
    default_network_override: str,
    elements: Sequence[NetworkSelectionElement],
) -> list[Origin]:
    """The origins of a pod's delegates, in attach order (as the resolver builds them)."""
    origins: list[Origin] = []
    if netconf.cluster_network:
        origins.append(Origin(CLUSTER_NETWORK, f"the cluster network: clusterNetwork {netconf.cluster_network!r}"))
    else:
        for index in range(len(netconf.raw_delegates)):
            role = "the cluster network" if index == 0 else "a default network"
            origins.append(Origin(DELEGATES, f"{role}: delegates[{index}] of the Multus config"))
    if pod_namespace not in netconf.system_namespaces:
        for index, reference in enumerate(netconf.default_networks):
            origins.append(
                Origin(
                    DEFAULT_NETWORKS,
                    f"defaultNetworks[{index}] {reference!r}: every pod outside systemNamespaces gets it",
                )
            )
    if default_network_override:
        override = Origin(
            DEFAULT_NETWORK_OVERRIDE,
            f"the cluster network, replaced by the pod's {DEFAULT_NETWORK_ANNOTATION} annotation "
            f"({default_network_override!r})",
        )
        if origins:
            origins[0] = override
        else:
            origins.append(override)
    for index, element in enumerate(elements):
        origins.append(
            Origin(
                NETWORKS,
                f"{NETWORKS_ANNOTATION} element #{index + 1}: NAD {element.namespace}/{element.name} "
                f"in {_namespace_rule(element, pod_namespace, netconf)}",
                selection_json(element),
            )
        )
    return origins


def plugin_stdins(config: Mapping[str, Any], capability_args: Mapping[str, Any]) -> list[PluginStdin]:
    """What each plugin of a network gets on stdin for ADD (as NetworkInvoker.add
    builds it), redacted. A plugin after the first also gets the previous one's
    result as prevResult, which only the real ADD knows."""
    return [
        PluginStdin(str(conf.get("type", "")), redact_config(plugin_stdin(conf, capability_args)), index > 0)
        for index, conf in enumerate(plugin_confs(config))
    ]


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
