"""The per-node client certificate: request it with a CSR (bootstrap
credentials first, the current certificate for renewals), store it as
multus-client-<timestamp>.pem with multus-client-current.pem pointing at it,
write multus-client.kubeconfig, and renew it at a jittered 70-90% of its life."""

from __future__ import annotations

import asyncio
import calendar
import os
import random
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from services.certs import files, kube, kubeconfig, metrics, pki, schedule
from services.certs.clock import Clock
from services.certs.ledger import NODE_CERTIFICATE, Credential, CredentialLedger
from services.common.credentials import NODE_CLIENT_KUBECONFIG
from services.common.files import read_or_none, write_atomic
from services.common.logs import get_logger

log = get_logger(__name__)

PREFIX = "multus-client-"
CURRENT = "multus-client-current.pem"
TIMESTAMP_FORMAT = "%Y-%m-%d-%H-%M-%S"
KEEP_FILES = 3
APPROVAL_TIMEOUT = 600.0


@dataclass(frozen=True)
class StoredCertificate:
    path: str  # the timestamped file multus-client-current.pem points at
    key_pem: bytes
    cert_pem: bytes
    issued: float
    not_after: float


def timestamp_name(issued: float) -> str:
    return f"{PREFIX}{time.strftime(TIMESTAMP_FORMAT, time.gmtime(issued))}.pem"


def issued_from_name(name: str) -> float | None:
    stamp = name[len(PREFIX) : -len(".pem")] if name.startswith(PREFIX) and name.endswith(".pem") else ""
    try:
        return float(calendar.timegm(time.strptime(stamp, TIMESTAMP_FORMAT)))
    except ValueError:
        return None


class CertificateStore:
    """The files in certDir (the layout of upstream's certificate file store)."""

    def __init__(self, cert_dir: str, *, group_readable: bool = False) -> None:
        # With the privilege split the cache (another uid, same group) reads the node's
        # credentials through the kubeconfig here: 0640 then, else owner-only.
        self.cert_dir = cert_dir
        self.file_mode = 0o640 if group_readable else 0o600
        self.current_path = os.path.join(cert_dir, CURRENT)
        self.kubeconfig_path = os.path.join(cert_dir, NODE_CLIENT_KUBECONFIG)

    def load_current(self) -> StoredCertificate | None:
        data = read_or_none(self.current_path)
        if not data:
            return None
        key_pem, cert_pem = pki.split_key_and_certificate(data)
        key = pki.load_private_key(key_pem)
        try:
            facts = pki.certificate_facts(cert_pem)
        except ValueError:
            return None
        if key is None or not pki.key_matches(key, cert_pem):
            return None
        target = os.path.realpath(self.current_path)
        observed = issued_from_name(os.path.basename(target))
        if observed is None:
            observed = os.stat(target).st_mtime
        issued = schedule.issue_time(observed, facts.not_before, facts.not_after)
        return StoredCertificate(target, key_pem, cert_pem, issued, facts.not_after)

    def save(self, key_pem: bytes, cert_pem: bytes, issued: float) -> str:
        """Write the timestamped file, then swing multus-client-current.pem to it in one rename."""
        name = timestamp_name(issued)
        path = os.path.join(self.cert_dir, name)
        write_atomic(path, cert_pem + key_pem, self.file_mode)
        link_tmp = os.path.join(self.cert_dir, f".{CURRENT}.{os.getpid()}")
        if os.path.lexists(link_tmp):
            os.unlink(link_tmp)
        os.symlink(name, link_tmp)  # relative: valid wherever certDir is mounted
        os.replace(link_tmp, self.current_path)
        files.prune(self.cert_dir, PREFIX, ".pem", KEEP_FILES + 1, protect=(name, CURRENT))
        return path

    def write_kubeconfig(self, endpoint: kubeconfig.ApiEndpoint) -> None:
        write_atomic(
            self.kubeconfig_path, kubeconfig.render_client_certificate(endpoint, CURRENT, CURRENT), self.file_mode
        )


@dataclass(frozen=True)
class NodeCertificateSettings:
    node: str
    bootstrap_kubeconfig: str
    duration_seconds: int
    approval_timeout: float = APPROVAL_TIMEOUT


class NodeCertificateRotator:
    def __init__(
        self,
        settings: NodeCertificateSettings,
        store: CertificateStore,
        ledger: CredentialLedger,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.rng = rng
        self._deadlines: dict[tuple[str, float], float] = {}  # certificate -> chosen renewal time
        self._published: tuple[str, float] | None = None
        # Set when the API rejected the current certificate: renew with bootstrap credentials.
        self._current_rejected = False
        self._pending: tuple[str, ec.EllipticCurvePrivateKey] | None = None

    def _credential(self, current: StoredCertificate | None) -> Credential:
        if current is None:
            return Credential(NODE_CERTIFICATE, self.store.kubeconfig_path, present=False, required=True)
        path = self.store.kubeconfig_path
        return Credential(NODE_CERTIFICATE, path, current.issued, current.not_after, required=True)

    def renewal_deadline(self, current: StoredCertificate) -> float:
        """Chosen once per certificate (its file, not its notAfter: two certificates
        issued in the same second by a fixed-duration signer share a notAfter)."""
        key = (current.path, current.not_after)
        if key not in self._deadlines:
            self._deadlines = {key: schedule.rotation_deadline(current.issued, current.not_after, self.rng.random())}
        return self._deadlines[key]

    def _publish(self, current: StoredCertificate | None) -> None:
        key = (current.path, current.not_after) if current else ("", 0.0)
        if key != self._published:
            cred = self._credential(current)
            if current is None:
                self.ledger.publish(cred)
            else:
                self.ledger.rotated(cred, self.clock.now())
            self._published = key

    async def run(self) -> None:
        attempt = 0
        while True:
            current = self.store.load_current()
            now = self.clock.now()
            usable = current if current is not None and now < current.not_after else None
            if usable is not None:
                if not os.path.exists(self.store.kubeconfig_path):
                    self.store.write_kubeconfig(self._endpoint())
                self._publish(usable)
                deadline = self.renewal_deadline(usable)
                if now < deadline and attempt == 0:
                    log.info("node certificate valid", not_after=int(usable.not_after), renew_at=int(deadline))
                    await self.clock.sleep_until(deadline)
                    continue
            elif self._published is None:
                self._publish(None)
            try:
                await self.renew(usable)
                attempt = 0
            except Exception as exc:  # every failure is retried with backoff; the reason is recorded
                delay = schedule.retry_delay(attempt, self.rng.random(), now, usable.not_after if usable else 0.0)
                attempt += 1
                result = "denied" if isinstance(exc, kube.CsrDenied) else "failure"
                metrics.CREDENTIAL_ROTATIONS.labels(credential=NODE_CERTIFICATE, result=result).inc()
                message = f"{type(exc).__name__}: {exc}"
                self.ledger.failed(NODE_CERTIFICATE, message)
                log.warning("node certificate renewal failed", error=message, attempt=attempt, retry_in=round(delay, 1))
                await self.clock.sleep_until(self.clock.now() + delay)

    def _endpoint(self) -> kubeconfig.ApiEndpoint:
        path = self.settings.bootstrap_kubeconfig
        return kubeconfig.endpoint(kubeconfig.load(path), os.path.dirname(path))

    async def renew(self, current: StoredCertificate | None) -> None:
        use_current = current is not None and not self._current_rejected
        creds = self.store.kubeconfig_path if use_current else self.settings.bootstrap_kubeconfig
        if not creds:
            raise kube.KubeError(0, "perNodeCertificate.bootstrapKubeconfig is not set")
        using = "current" if use_current else "bootstrap"
        log.info("requesting node certificate", node=self.settings.node, with_credentials=using)
        try:
            key, cert_pem = await asyncio.to_thread(self._request, creds)
        except kube.KubeError as exc:
            if use_current and exc.unauthorized:
                # The API no longer accepts our certificate (CA rotated, identity removed): bootstrap again.
                self._current_rejected = True
            raise
        issued = self.clock.now()
        facts = pki.certificate_facts(cert_pem)
        self.store.save(pki.private_key_pem(key), cert_pem, issued)
        self.store.write_kubeconfig(self._endpoint())
        self._current_rejected = False
        stored = self.store.load_current()
        if stored is None:
            raise RuntimeError("the certificate just written cannot be read back")
        stored = StoredCertificate(stored.path, stored.key_pem, stored.cert_pem, issued, facts.not_after)
        self._publish(stored)
        metrics.CREDENTIAL_ROTATIONS.labels(credential=NODE_CERTIFICATE, result="success").inc()
        log.info(
            "node certificate issued",
            path=stored.path,
            not_after=int(facts.not_after),
            lifetime=int(facts.not_after - issued),
        )

    def _request(self, creds: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        api = kube.new_client(creds)
        try:
            cert_pem, key = self._resume_pending(api)
            if not cert_pem:
                key = pki.new_private_key()
                name = kube.create_csr(
                    api, self.settings.node, pki.node_csr_pem(key, self.settings.node), self.settings.duration_seconds
                )
                log.info("CertificateSigningRequest created", csr=name)
                # Kept until it is settled: a wait cut short (API down, timeout) resumes on this
                # CSR instead of filing another one for the approver.
                self._pending = (name, key)
                cert_pem = kube.wait_for_certificate(api, name, self.settings.approval_timeout)
            self._pending = None
        except kube.CsrDenied:
            self._pending = None
            raise
        finally:
            kube.close(api)
        if not pki.key_matches(key, cert_pem):
            raise ValueError("issued certificate does not match the requested key")
        if pki.certificate_facts(cert_pem).subject_cn != pki.node_common_name(self.settings.node):
            raise ValueError("issued certificate names another subject")
        return key, cert_pem

    def _resume_pending(self, api: kube.ApiClient) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        """Wait again on the CSR of an interrupted attempt; (b"", key) when there is none to resume."""
        if self._pending is None:
            return b"", pki.new_private_key()
        name, key = self._pending
        try:
            log.info("resuming CertificateSigningRequest", csr=name)
            return kube.wait_for_certificate(api, name, self.settings.approval_timeout), key
        except kube.KubeError as exc:
            if exc.status != 404:
                raise
            self._pending = None  # deleted meanwhile (by a human or the CSR cleaner): file a new one
            return b"", key
