"""Several rotations of ~1-minute per-node certificates while the cache keeps
watching, with zero requests rejected as 401. Needs the controller-manager's
signer at 6m (1.20 backdates both ends by 5m: valid ~1 min from issue), so this
restarts only kube-controller-manager with that duration and restores it
afterwards. Run it alone, once: `pytest -m slow tests/certs/test_slow_rotation.py`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes
import pytest

from services.api import certs_pb2, certs_pb2_grpc
from services.certs.ledger import NODE_CERTIFICATE
from tests.certs.support import (
    admin_client,
    csrs_deleted,
    namespace_with_service_account,
    unique,
    wait_for,
)
from tests.certs.test_kube_node_certificate import approver, credential, status
from tests.conftest import ShippedIdentity
from tests.support.kube_identity import KUBE_ROOT, PKI, shipped_namespaced_rbac
from tests.support.services import Instance, start_service, wait_serving

pytestmark = [pytest.mark.kube, pytest.mark.slow]
k8s: Any = kubernetes.client

KCM_PID = KUBE_ROOT / "run" / "pids" / "kube-controller-manager.pid"
KCM_LOG = KUBE_ROOT / "run" / "logs" / "kube-controller-manager.log"
ROTATIONS = 3


def _kcm_argv() -> list[str]:
    pid = int(KCM_PID.read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _port_of(argv: list[str]) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith("--secure-port="))


def _swap_kcm(argv: list[str]) -> None:
    """Replace the recorded kube-controller-manager with `argv` without a moment in
    which the pid file names a dead process (start.sh, run by other sessions' test
    fixtures, would take that for a broken control plane and restart all of it):
    the new one starts first on its own port and takes over the pid file in one
    rename, and only then is the old one stopped."""
    old = int(KCM_PID.read_text())
    with KCM_LOG.open("ab") as log:
        subprocess.Popen(
            ["setsid", "bash", "-c", 'echo $$ > "$0.new" && mv "$0.new" "$0" && exec "$@"', str(KCM_PID), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    port = _port_of(argv)

    def healthy() -> bool:
        url = f"https://127.0.0.1:{port}/healthz"
        probe = ["curl", "-sf", "--max-time", "2", "--cacert", str(PKI / "ca.crt"), url]
        return int(KCM_PID.read_text()) != old and subprocess.run(probe, capture_output=True).returncode == 0

    wait_for(healthy, 60, interval=0.5, what=f"kube-controller-manager /healthz on {port}")
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{old}").exists(), 30, what="the previous kube-controller-manager to stop")


@contextlib.contextmanager
def short_lived_signer(duration: str = "6m") -> Iterator[None]:
    original = _kcm_argv()
    other_port = "10259" if _port_of(original) != "10259" else "10258"
    changed = []
    for arg in original:
        if arg.startswith("--cluster-signing-duration="):
            arg = f"--cluster-signing-duration={duration}"
        elif arg.startswith("--secure-port="):
            arg = f"--secure-port={other_port}"
        changed.append(arg)
    _swap_kcm(changed)
    try:
        yield
    finally:
        _swap_kcm(original)


class ReloadingClient:
    """A consumer that does what the cache does: reads through the node kubeconfig
    and rebuilds its client whenever WatchCredentials says the credential changed.
    Counts every response, and every 401."""

    def __init__(self, inst: Instance, namespace: str) -> None:
        self.inst, self.namespace = inst, namespace
        self.requests = self.unauthorized = self.reloads = 0
        self.errors: list[str] = []
        self._generation = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def __enter__(self) -> ReloadingClient:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _watch(self) -> None:
        with grpc.insecure_channel(f"unix://{self.inst.grpc_socket('certs')}") as channel:
            stream = certs_pb2_grpc.CertsStub(channel).WatchCredentials(certs_pb2.WatchCredentialsRequest())
            threading.Thread(target=lambda: (self._stop.wait(), stream.cancel()), daemon=True).start()
            with contextlib.suppress(grpc.RpcError):
                for update in stream:
                    self._generation = credential(update, NODE_CERTIFICATE).generation

    def _read(self) -> None:
        seen, api = -1, None
        while not self._stop.wait(0.25):
            if self._generation != seen:
                seen = self._generation
                cfg = k8s.Configuration()
                kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=status(self.inst).api_kubeconfig, client_configuration=cfg
                )
                api = k8s.ApiClient(cfg)
                self.reloads += 1
            try:
                k8s.CoreV1Api(api).list_namespaced_pod(self.namespace, _request_timeout=5)
                self.requests += 1
            except k8s.ApiException as exc:
                self.requests += 1
                if exc.status == 401:
                    self.unauthorized += 1
                self.errors.append(f"{exc.status} {exc.reason}")
            except Exception as exc:  # the API server itself unreachable: not a credential failure
                self.errors.append(type(exc).__name__)


@pytest.mark.timeout(900)
def test_one_minute_certificates_rotate_without_401(
    instance: Instance, kube_api: Path, shipped_identity: ShippedIdentity
) -> None:
    api = admin_client(kube_api)
    node = unique("node")
    with (
        short_lived_signer("6m"),
        namespace_with_service_account(api) as namespace,
        csrs_deleted(api, node),
        approver(shipped_identity.approver_kubeconfig(), instance.root / "approver.log"),
    ):
        shipped_namespaced_rbac(api, namespace)
        instance.config.pop("clusterDir")  # the cache reads the real API server
        instance.config.update(
            perNodeCertificate={
                "enabled": True,
                "bootstrapKubeconfig": str(shipped_identity.bootstrap_kubeconfig(node)),
                "certDir": str(instance.root / "certs"),
                "certDuration": "6m",
            },
            multusNamespace=namespace,
            delegateServiceAccount="multus-delegate",
        )
        instance.write_config()
        env = {"MULTUS_NODE_NAME": node}
        certs = start_service(instance, "certs", env=env)
        cache = None
        try:
            wait_serving(instance.grpc_socket("certs"), timeout=90)
            first = credential(status(instance), NODE_CERTIFICATE)
            assert first.not_after_unix - first.issued_unix <= 75  # ~1 minute from issue
            cache = start_service(instance, "cache", env=env)
            wait_serving(instance.grpc_socket("cache"), timeout=60)
            with ReloadingClient(instance, namespace) as consumer:
                wait_for(
                    lambda: credential(status(instance), NODE_CERTIFICATE).generation >= first.generation + ROTATIONS,
                    timeout=ROTATIONS * 70 + 60,
                    interval=1.0,
                    what=f"{ROTATIONS} rotations",
                )
                time.sleep(5)
            final = credential(status(instance), NODE_CERTIFICATE)
            assert final.state == "VALID" and final.last_error == ""
            assert consumer.unauthorized == 0, consumer.errors[-10:]
            assert consumer.requests > 100 and consumer.reloads >= ROTATIONS + 1
            wait_serving(instance.grpc_socket("cache"), timeout=5)
            cache_log = cache.log()
            assert "unauthorized" not in cache_log.lower() and " 401" not in cache_log, cache_log[-3000:]
            assert cache_log.count("API credentials reloaded") >= ROTATIONS
            timestamped = [p for p in (instance.root / "certs").iterdir() if p.name.startswith("multus-client-2")]
            assert len(timestamped) <= 4  # old ones are pruned
        finally:
            if cache is not None:
                cache.stop()
            certs.stop()
