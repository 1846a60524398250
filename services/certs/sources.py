"""Which API credentials this node runs with, as the certs service sees it:
services.common.credentials decides the kubeconfig; this adds the standalone
case (a file-backed cluster and no API credentials at all)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.certs.kubeconfig import IN_CLUSTER_TOKEN
from services.common.config import DaemonConfig
from services.common.credentials import api_credentials

STANDALONE = "standalone"
PER_NODE_CERTIFICATE = "per-node-certificate"
KUBECONFIG = "kubeconfig"
IN_CLUSTER = "in-cluster"


@dataclass(frozen=True)
class ApiSource:
    kind: str  # STANDALONE, PER_NODE_CERTIFICATE, KUBECONFIG, IN_CLUSTER
    kubeconfig: str = ""  # empty for STANDALONE and IN_CLUSTER


def in_pod(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(IN_CLUSTER_TOKEN)


def api_source(config: DaemonConfig, environ: Mapping[str, str], running_in_pod: bool) -> ApiSource:
    creds = api_credentials(config, dict(environ))
    if creds.kind == IN_CLUSTER and not running_in_pod and config.cluster_dir:
        return ApiSource(STANDALONE)
    return ApiSource(creds.kind, creds.kubeconfig)
