"""The Multus network configuration of one request (upstream's types.NetConf).

The runtime's stdin config (normally `00-multus.conf`) is merged with the
daemon config key by key, the daemon config winning (upstream's
overrideCNIConfigWithServerConfig), then read with upstream's key names and
defaults. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common import cni

DEFAULT_CONF_DIR = "/etc/cni/multus/net.d"
DEFAULT_CNI_DIR = "/var/lib/cni/multus"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_MULTUS_NAMESPACE = "kube-system"
DEFAULT_SYSTEM_NAMESPACES = ("kube-system",)
DEFAULT_GLOBAL_NAMESPACES = ("default",)


@dataclass(frozen=True)
class MultusNetConf:
    cni_version: str = cni.LATEST_CNI_VERSION
    name: str = ""
    cluster_network: str = ""
    default_networks: tuple[str, ...] = ()
    raw_delegates: tuple[Mapping[str, Any], ...] = ()
    conf_dir: str = DEFAULT_CONF_DIR
    cni_dir: str = DEFAULT_CNI_DIR
    bin_dir: str = DEFAULT_BIN_DIR
    cni_config_dir: str = ""
    readiness_indicator_file: str = ""
    namespace_isolation: bool = False
    global_namespaces: tuple[str, ...] = DEFAULT_GLOBAL_NAMESPACES
    system_namespaces: tuple[str, ...] = DEFAULT_SYSTEM_NAMESPACES
    multus_namespace: str = DEFAULT_MULTUS_NAMESPACE
    # The runtime's runtimeConfig for the Multus network itself: it belongs to
    # the cluster network only (upstream leaks it into every delegate).
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def merge_daemon_config(request_config: bytes, daemon_raw: Mapping[str, Any]) -> dict[str, Any]:
    """The request's config with every daemon-config key written over it."""
    if request_config.strip():
        try:
            conf = json.loads(request_config)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise cni.CniError(cni.DECODE_FAILURE, "failed to unmarshal CNI config", str(exc)) from exc
        if not isinstance(conf, dict):
            raise cni.CniError(cni.DECODE_FAILURE, "failed to unmarshal CNI config", "expected a JSON object")
    else:
        conf = {}
    conf.update(daemon_raw)
    return conf


def _str(conf: Mapping[str, Any], key: str, default: str = "") -> str:
    value = conf.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise cni.CniError(cni.INVALID_CONFIG, f"invalid {key}: expected a string")
    return value


def _str_list(conf: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = conf.get(key)
    if value is None:
        return default
    if isinstance(value, str):  # upstream takes comma-separated text for globalNamespaces
        if not value:
            return default  # as upstream: an empty globalNamespaces keeps the default ("default")
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise cni.CniError(cni.INVALID_CONFIG, f"invalid {key}: expected a list of strings")


def parse_netconf(conf: Mapping[str, Any], *, require_network: bool = True) -> MultusNetConf:
    delegates = conf.get("delegates") or []
    if not isinstance(delegates, list) or not all(isinstance(d, dict) for d in delegates):
        raise cni.CniError(cni.INVALID_CONFIG, "invalid delegates: expected a list of CNI configs")
    cluster_network = _str(conf, "clusterNetwork")
    if require_network and not cluster_network and not delegates:
        raise cni.CniError(cni.INVALID_CONFIG, "at least one delegate/clusterNetwork must be specified")
    runtime_config = conf.get("runtimeConfig") or {}
    if not isinstance(runtime_config, dict):
        raise cni.CniError(cni.INVALID_CONFIG, "invalid runtimeConfig: expected an object")
    isolation = conf.get("namespaceIsolation", False)
    if not isinstance(isolation, bool):
        raise cni.CniError(cni.INVALID_CONFIG, "invalid namespaceIsolation: expected true or false")
    return MultusNetConf(
        cni_version=_str(conf, "cniVersion") or cni.LATEST_CNI_VERSION,
        name=_str(conf, "name"),
        cluster_network=cluster_network,
        default_networks=_str_list(conf, "defaultNetworks", ()),
        raw_delegates=tuple(delegates),
        conf_dir=_str(conf, "confDir") or DEFAULT_CONF_DIR,
        cni_dir=_str(conf, "cniDir") or DEFAULT_CNI_DIR,
        bin_dir=_str(conf, "binDir") or DEFAULT_BIN_DIR,
        cni_config_dir=_str(conf, "cniConfigDir"),
        readiness_indicator_file=_str(conf, "readinessindicatorfile"),
        namespace_isolation=isolation,
        global_namespaces=_str_list(conf, "globalNamespaces", DEFAULT_GLOBAL_NAMESPACES),
        system_namespaces=_str_list(conf, "systemNamespaces", DEFAULT_SYSTEM_NAMESPACES),
        multus_namespace=_str(conf, "multusNamespace") or DEFAULT_MULTUS_NAMESPACE,
        runtime_config=dict(runtime_config),
        raw=dict(conf),
    )


def load_netconf(
    request_config: bytes, daemon_raw: Mapping[str, Any], *, require_network: bool = True
) -> MultusNetConf:
    return parse_netconf(merge_daemon_config(request_config, daemon_raw), require_network=require_network)
