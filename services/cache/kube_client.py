"""The Kubernetes API client the cache uses (services.common.kube_api builds
it), rebuilt when its credentials change.

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

from services.common import kube_api
from services.common.credentials import ApiCredentials
from services.common.logs import get_logger

log = get_logger(__name__)

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


def build_api_client(creds: ApiCredentials) -> Any:
    return kube_api.build_api_client(creds.kubeconfig)


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
