"""The daemon configuration: upstream's thick daemon-config.json plus our own keys.

Upstream key names and meanings are kept (cniConfigDir, socketDir, binDir, ...);
keys of our own are documented in docs/configuration.md. Every path a service
uses is derived here, so several instances can run side by side on one host.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = "/etc/cni/net.d/multus.d/daemon-config.json"
SERVICES = ("gateway", "cache", "executor", "certs")


class ConfigError(ValueError):
    """The daemon config file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class PerNodeCertificate:
    enabled: bool = False
    bootstrap_kubeconfig: str = ""
    cert_dir: str = "/var/lib/multus/certs"
    cert_duration: str = "10m"


@dataclass(frozen=True)
class ServicePorts:
    """TCP ports of one service: gRPC health only (for probes) and Prometheus metrics. 0 = off."""

    health_port: int = 0
    metrics_port: int = 0


@dataclass(frozen=True)
class DaemonConfig:
    # --- upstream keys (thick daemon config + NetConf keys it merges into requests) ---
    cni_version: str = ""
    chroot_dir: str = ""
    cni_config_dir: str = "/etc/cni/net.d"
    multus_autoconfig_dir: str = ""
    multus_config_file: str = "auto"
    multus_master_cni: str = ""
    conf_dir: str = "/etc/cni/multus/net.d"
    cni_dir: str = "/var/lib/cni/multus"
    bin_dir: str = "/opt/cni/bin"
    socket_dir: str = "/run/multus/"
    log_level: str = "info"
    log_file: str = ""
    log_to_stderr: bool = True
    log_options: dict[str, Any] = field(default_factory=dict)
    readiness_indicator_file: str = ""
    cluster_network: str = ""
    default_networks: tuple[str, ...] = ()
    system_namespaces: tuple[str, ...] = ("kube-system",)
    global_namespaces: tuple[str, ...] = ()
    namespace_isolation: bool = False
    multus_namespace: str = "kube-system"
    metrics_port: int | None = None
    per_node_certificate: PerNodeCertificate = field(default_factory=PerNodeCertificate)
    force_cni_version: bool = False
    kubeconfig: str = ""
    # --- our own keys ---
    run_dir: str = "/run/multus-grpc"
    # Every service writes its structured log to <logDir>/<service>.log (rotated per logOptions).
    log_dir: str = ""
    grpc_socket_group: str = ""
    service_ports: dict[str, ServicePorts] = field(default_factory=dict)
    # Directory of pod/NAD YAML served instead of the API server (demo, standalone).
    cluster_dir: str = ""
    executor_max_concurrency: int = 16
    executor_timeout_seconds: float = 60.0
    executor_netns_prefixes: tuple[str, ...] = ("/proc/", "/var/run/netns/", "/run/netns/")
    executor_allow_operator_exec: bool = False
    executor_sockets: tuple[str, ...] = ()
    # Bytes a delegate may write to stdout before it is killed (results are kilobytes).
    executor_max_output_bytes: int = 4 * 1024 * 1024
    pod_wait_ms: int = 3000
    status_write_wait_ms: int = 2000
    delegate_service_account: str = "multus-delegate"
    delegate_token_seconds: int = 3600
    delegate_token_audience: str = ""
    # Seconds the gateway holds readiness for the delegates' token (services/gateway/credentials_gate.py).
    delegate_credentials_wait_seconds: float = 60.0
    # Device IDs for NADs with a resourceName: the kubelet PodResources API ("" = off),
    # the device-plugin checkpoint as the fallback, and the device-info spec's directory.
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    device_plugin_checkpoint: str = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"
    device_info_dir: str = "/var/run/k8s.cni.cncf.io/devinfo"
    # Whole-call deadline of one CNI call in the gateway (docs/reliability.md): below the
    # shim's 110 s response timeout with room for the rollback answer (CALL_ANSWER_GRACE).
    cni_call_timeout_seconds: float = 90.0
    # DEL spool (services/gateway/spool.py): readiness hold, retry backoff cap, bounds.
    spool_readiness_hold_seconds: float = 20.0
    spool_retry_max_seconds: float = 300.0
    spool_max_entries: int = 1000
    spool_max_age_seconds: float = 86400.0
    # Privilege split (docs/reliability.md): the executor gives node-changing calls only
    # to the gateway's uid and, with executorAllowOperatorExec, to this operator uid/gid.
    gateway_uid: int = 0
    executor_operator_uid: int = 0
    executor_operator_gid: int = -1
    # Dynamic networks (docs/dynamic-networks.md): the gateway follows edits of a running
    # pod's networks annotation, adding and removing its interfaces (off by default).
    dynamic_networks: bool = False
    # Backoff between retries of a pod change that failed (doubling, up to the max).
    dynamic_networks_retry_seconds: float = 10.0
    dynamic_networks_retry_max_seconds: float = 300.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # --- derived paths ---
    @property
    def autoconfig_dir(self) -> str:
        return self.multus_autoconfig_dir or self.cni_config_dir

    @property
    def daemon_socket_path(self) -> str:
        return os.path.join(self.socket_dir, "multus.sock")

    def grpc_socket(self, service: str) -> str:
        return os.path.join(self.run_dir, "grpc", f"{service}.sock")

    def ports(self, service: str) -> ServicePorts:
        return self.service_ports.get(service, ServicePorts())

    def service_log_file(self, service: str) -> str:
        """The structured log file `service` writes ("" = stderr only): the gateway
        honours upstream's `logFile`, and with `logDir` every service (and the
        supervisor) writes `<logDir>/<service>.log`."""
        if service == "gateway" and self.log_file:
            return self.log_file
        return os.path.join(self.log_dir, f"{service}.log") if self.log_dir else ""

    @property
    def bin_dirs(self) -> tuple[str, ...]:
        return tuple(d for d in self.bin_dir.split(":") if d)

    @property
    def records_dir(self) -> str:
        return os.path.join(self.cni_dir, "attachments")

    @property
    def status_queue_dir(self) -> str:
        """The cache's queued network-status writes, kept across its restarts."""
        return os.path.join(self.run_dir, "cache", "status-queue")

    @property
    def delegate_kubeconfig_path(self) -> str:
        return os.path.join(self.cni_config_dir, "multus.d", "multus.kubeconfig")


# JSON key -> dataclass field, for keys whose JSON name is not the camelCase of the field.
_KEY_ALIASES = {
    "readinessindicatorfile": "readiness_indicator_file",
    "daemonSocketDir": "socket_dir",
    "globalNamespaces": "global_namespaces",
    "forceCNIVersion": "force_cni_version",
    "multusMasterCNI": "multus_master_cni",
}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _as_str_tuple(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # upstream takes comma-separated strings for namespaces
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key}: expected a list of strings or a comma-separated string")


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name == "per_node_certificate":
        if not isinstance(value, dict):
            raise ConfigError("perNodeCertificate: expected an object")
        base = PerNodeCertificate()
        return PerNodeCertificate(
            enabled=bool(value.get("enabled", base.enabled)),
            bootstrap_kubeconfig=str(value.get("bootstrapKubeconfig", base.bootstrap_kubeconfig)),
            cert_dir=str(value.get("certDir") or base.cert_dir),
            cert_duration=str(value.get("certDuration") or base.cert_duration),
        )
    if name == "service_ports":
        if not isinstance(value, dict):
            raise ConfigError("servicePorts: expected an object")
        return {
            svc: ServicePorts(int(p.get("healthPort", 0)), int(p.get("metricsPort", 0)))
            for svc, p in value.items()
            if isinstance(p, dict)
        }
    if isinstance(default, tuple):
        return _as_str_tuple(value, name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number")
        return type(default)(value)
    if isinstance(default, float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string")
        return value
    return value


def config_from_dict(raw: dict[str, Any]) -> DaemonConfig:
    """Build a DaemonConfig from the daemon-config JSON object; unknown keys are kept in `raw`."""
    known = {f.name: f for f in fields(DaemonConfig)}
    defaults = DaemonConfig()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = _KEY_ALIASES.get(key, _snake(key))
        if name not in known or name == "raw":
            continue
        try:
            if name == "metrics_port":
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ConfigError(f"{key}: expected a port number")
                values[name] = value
                continue
            values[name] = _coerce(name, value, getattr(defaults, name))
        except ConfigError:
            raise
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            # A value of the wrong shape deep inside (servicePorts, perNodeCertificate, ...).
            raise ConfigError(f"{key}: {exc}") from exc
    config = DaemonConfig(raw=dict(raw), **values)
    validate_bounds(config)
    return config


# The shim waits 110 s for an answer (shim/multus_shim.py DEFAULT_RESPONSE_TIMEOUT); the
# gateway answers within cniCallTimeoutSeconds plus this grace for a rollback.
CALL_ANSWER_GRACE = 10.0
SHIM_RESPONSE_TIMEOUT = 110.0


def validate_bounds(config: DaemonConfig) -> None:
    """Values that would break a promise made elsewhere are refused at start."""
    if not 1.0 <= config.cni_call_timeout_seconds <= SHIM_RESPONSE_TIMEOUT - CALL_ANSWER_GRACE - 1.0:
        raise ConfigError(
            f"cniCallTimeoutSeconds: must be between 1 and {SHIM_RESPONSE_TIMEOUT - CALL_ANSWER_GRACE - 1.0:.0f} "
            f"(the shim waits {SHIM_RESPONSE_TIMEOUT:.0f} s for an answer)"
        )
    for name, value in (
        ("spoolReadinessHoldSeconds", config.spool_readiness_hold_seconds),
        ("spoolRetryMaxSeconds", config.spool_retry_max_seconds),
        ("spoolMaxAgeSeconds", config.spool_max_age_seconds),
        ("dynamicNetworksRetrySeconds", config.dynamic_networks_retry_seconds),
        ("dynamicNetworksRetryMaxSeconds", config.dynamic_networks_retry_max_seconds),
    ):
        if value < 0:
            raise ConfigError(f"{name}: must be >= 0")
    if config.spool_max_entries < 1:
        raise ConfigError("spoolMaxEntries: must be >= 1")


def load_config(
    path: str | os.PathLike[str], overrides: dict[str, Any] | None = None, *, required: bool = False
) -> DaemonConfig:
    """Read the daemon config file; `overrides` (from command-line flags) win over the file.

    A missing file is an error when `required` (the operator named it), else the defaults apply."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        if required:
            raise ConfigError(f"daemon config {path} does not exist") from None
        raw = {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read daemon config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"daemon config {path}: expected a JSON object")
    raw.update(overrides or {})
    return config_from_dict(raw)


def node_name() -> str:
    return os.environ.get("MULTUS_NODE_NAME") or os.environ.get("NODE_NAME") or os.uname().nodename
