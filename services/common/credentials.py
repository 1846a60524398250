"""Where the services find the API server: decided here, in one place.

perNodeCertificate (when enabled) wins, then KUBECONFIG (environment, then the
daemon config's `kubeconfig` key), then in-cluster credentials, which a
DaemonSet pod always has and so come last. No kubernetes import: the cache and
certs services turn this into a client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.common.config import DaemonConfig

NODE_CLIENT_KUBECONFIG = "multus-client.kubeconfig"


@dataclass(frozen=True)
class ApiCredentials:
    kind: str  # "per-node-certificate", "kubeconfig", "in-cluster"
    kubeconfig: str = ""  # empty for in-cluster


def api_credentials(config: DaemonConfig, environ: dict[str, str] | None = None) -> ApiCredentials:
    env = os.environ if environ is None else environ
    if config.per_node_certificate.enabled:
        return ApiCredentials(
            "per-node-certificate", os.path.join(config.per_node_certificate.cert_dir, NODE_CLIENT_KUBECONFIG)
        )
    explicit = env.get("KUBECONFIG") or config.kubeconfig
    if explicit:
        return ApiCredentials("kubeconfig", explicit)
    return ApiCredentials("in-cluster")
