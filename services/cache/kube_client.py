"""The Kubernetes API client the cache uses, rebuilt when its credentials change.

Which kubeconfig is decided by services.common.credentials (per-node
certificate, KUBECONFIG, in-cluster). The certs service rotates the per-node
certificate by rewriting the files the kubeconfig points at, so the
fingerprint covers the kubeconfig and every file it references; a change
swaps the client and tells the informers to re-establish their watches with
it, from the resourceVersion they hold (the cache is kept).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.utils.keepalive import tcp_keepalive_socket_options

from services.common.credentials import ApiCredentials
from services.common.logs import get_logger

log = get_logger(__name__)

KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3

_FILE_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


def _referenced_files(kubeconfig: str) -> Iterator[str]:
    try:
        with open(kubeconfig) as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return
    base = os.path.dirname(kubeconfig)
    if not isinstance(doc, dict):
        return
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        for item in doc.get(section) or []:
            entry = item.get(inner) if isinstance(item, dict) else None
            for key in _FILE_KEYS:
                value = entry.get(key) if isinstance(entry, dict) else None
                if isinstance(value, str) and value:
                    yield value if os.path.isabs(value) else os.path.join(base, value)


def credentials_fingerprint(creds: ApiCredentials) -> str:
    """A digest of the kubeconfig and every file it references; "" when unreadable."""
    if not creds.kubeconfig:
        return "in-cluster"
    digest = hashlib.sha256()
    try:
        for path in (creds.kubeconfig, *_referenced_files(creds.kubeconfig)):
            with open(path, "rb") as fh:
                digest.update(path.encode() + b"\0" + fh.read())
    except OSError:
        return ""
    return digest.hexdigest()


def build_api_client(creds: ApiCredentials) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    if creds.kubeconfig:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=creds.kubeconfig, client_configuration=cfg, persist_config=False
        )
    else:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    # Two watches, live GETs and status writes share the pool.
    cfg.connection_pool_maxsize = 16
    # No silent urllib3 retries: they would multiply every timeout (a 3 s live GET
    # becoming 12 s); the informers and the status writer retry with backoff themselves.
    cfg.retries = False
    # TCP keepalive: a watch whose peer vanished (node partitioned, a NAT or load
    # balancer dropped the flow) otherwise goes unnoticed until its read timeout,
    # up to ~6.5 min of silently stale cache. Probes after 30 s idle, every 10 s,
    # 3 unanswered: a dead connection is dropped within ~60 s. (Only the read
    # timeout can catch a peer that is alive but silent.)
    cfg.socket_options = tcp_keepalive_socket_options(
        idle=KEEPALIVE_IDLE, interval=KEEPALIVE_INTERVAL, count=KEEPALIVE_COUNT
    )
    return k8s.ApiClient(cfg)


class ApiClientHolder:
    """The current ApiClient; `generation` grows on every credential reload."""

    def __init__(self, creds: ApiCredentials, build: Callable[[ApiCredentials], Any] = build_api_client) -> None:
        self.creds = creds
        self._build = build
        self._lock = threading.Lock()
        self._client: Any = None
        self._fingerprint = ""
        self.generation = 0
        self._listeners: list[Callable[[], None]] = []

    @property
    def client(self) -> Any:
        """The current client, built on first use (raises when the credentials are unusable)."""
        with self._lock:
            if self._client is None:
                self._fingerprint = credentials_fingerprint(self.creds)
                self._client = self._build(self.creds)
                self.generation += 1
            return self._client

    def on_reload(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def reload_if_changed(self) -> bool:
        """Rebuild the client when the credential files changed; True when it did.
        A half-written or broken kubeconfig keeps the old client (retried next time)."""
        fingerprint = credentials_fingerprint(self.creds)
        if not fingerprint or fingerprint == self._fingerprint:
            return False
        try:
            fresh = self._build(self.creds)
        except Exception as exc:
            log.warning("kubeconfig changed but cannot be loaded; keeping the current client", error=str(exc))
            return False
        with self._lock:
            self._client = fresh
            self._fingerprint = fingerprint
            self.generation += 1
        log.info("API credentials reloaded", kubeconfig=self.creds.kubeconfig, generation=self.generation)
        for listener in self._listeners:
            listener()
        return True

    async def watch_credentials(self, interval: float = 1.0) -> None:
        """Poll the credential files (they are small; inotify misses atomic renames of mounted files)."""
        if not self.creds.kubeconfig:
            return  # in-cluster: the client re-reads the rotating token file itself
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload_if_changed)
