"""The per-node client certificate: request it with a CSR (bootstrap
credentials first, the current certificate for renewals), store it as
multus-client-<timestamp>.pem with multus-client-current.pem pointing at it,
write multus-client.kubeconfig, and renew it at a jittered 70-90% of its life.
Keys are held as PEM bytes only: the cryptography work (key and CSR, checks of
a certificate) is done by the PKI worker process (services.certs.pki_client)."""

from __future__ import annotations

import asyncio
import calendar
import os
import random
import time
from dataclasses import dataclass

from services.certs import files, kube, kubeconfig, metrics, schedule
from services.certs.clock import Clock
from services.certs.csr_spec import node_common_name
from services.certs.ledger import NODE_CERTIFICATE, Credential, CredentialLedger
from services.certs.pki_client import PkiWorker
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


@dataclass(frozen=True)
class PendingCsr:
    """A filed CSR not settled yet, with the key (PEM) it was made with."""

    name: str
    key_pem: bytes
    request_pem: bytes


def split_key_and_certificate(pem: bytes) -> tuple[bytes, bytes]:
    """Split a combined key+certificate PEM file (multus-client-*.pem) into (key, certificate chain)."""
    key_lines: list[bytes] = []
    cert_lines: list[bytes] = []
    target: list[bytes] | None = None
    for line in pem.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            target = cert_lines if b"CERTIFICATE" in line else key_lines
        if target is not None:
            target.append(line)
        if line.startswith(b"-----END"):
            target = None
    return b"".join(key_lines), b"".join(cert_lines)


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

    def __init__(self, cert_dir: str, *, group_readable: bool = False, pki: PkiWorker | None = None) -> None:
        # With the privilege split the cache (another uid, same group) reads the node's
        # credentials through the kubeconfig here: 0640 then, else owner-only.
        self.cert_dir = cert_dir
        self.pki = pki or PkiWorker()
        self.file_mode = 0o640 if group_readable else 0o600
        self.current_path = os.path.join(cert_dir, CURRENT)
        self.kubeconfig_path = os.path.join(cert_dir, NODE_CLIENT_KUBECONFIG)

    async def load_current(self) -> StoredCertificate | None:
        """The stored certificate if it parses and its key matches; None if not.
        Raises PkiWorkerError when the worker could not tell (the caller retries)."""
        data = read_or_none(self.current_path)
        if not data:
            return None
        key_pem, cert_pem = split_key_and_certificate(data)
        check = await self.pki.inspect(cert_pem, key_pem)  # cached: an unchanged file starts no process
        if check is None or not check.key_matches:
            return None
        target = os.path.realpath(self.current_path)
        observed = issued_from_name(os.path.basename(target))
        if observed is None:
            observed = os.stat(target).st_mtime
        issued = schedule.issue_time(observed, check.not_before, check.not_after)
        return StoredCertificate(target, key_pem, cert_pem, issued, check.not_after)

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
        self._pending: PendingCsr | None = None
        self.pki = store.pki  # one worker client, so the checks of an issued certificate are cached for the store

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
        # Missing until the stored certificate has been read (by the PKI worker, which takes a
        # moment): health must not say SERVING for a credential nobody has looked at yet.
        if self._published is None:
            self._publish(None)
        attempt = 0  # consecutive failures, of reading the stored certificate or of renewing it
        renewing = False  # a renewal failed: retry it (with backoff) instead of waiting for its deadline
        while True:
            now = self.clock.now()
            usable: StoredCertificate | None = None
            try:
                # Reading the stored certificate needs the PKI worker too: its failure is retried like a renewal's.
                current = await self.store.load_current()
                now = self.clock.now()
                usable = current if current is not None and now < current.not_after else None
                if usable is not None:
                    if not os.path.exists(self.store.kubeconfig_path):
                        self.store.write_kubeconfig(self._endpoint())
                    self._publish(usable)
                    deadline = self.renewal_deadline(usable)
                    if now < deadline and not renewing:
                        attempt = 0
                        log.info("node certificate valid", not_after=int(usable.not_after), renew_at=int(deadline))
                        await self.clock.sleep_until(deadline)
                        continue
                renewing = True
                await self.renew(usable)
                attempt, renewing = 0, False
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
        # An interrupted attempt's key (and request) is reused; else the worker makes new ones.
        if self._pending is not None:
            key_pem, request_pem = self._pending.key_pem, self._pending.request_pem
        else:
            key_pem, request_pem = await self.pki.new_request(self.settings.node)
        try:
            cert_pem = await asyncio.to_thread(self._request, creds, key_pem, request_pem)
        except kube.KubeError as exc:
            if use_current and exc.unauthorized:
                # The API no longer accepts our certificate (CA rotated, identity removed): bootstrap again.
                self._current_rejected = True
            raise
        issued = self.clock.now()
        # Checked as the store will read it back, so that read is answered from the worker's cache.
        key_part, cert_part = split_key_and_certificate(cert_pem + key_pem)
        check = await self.pki.inspect(cert_part, key_part)
        if check is None:
            raise ValueError("issued certificate cannot be parsed")
        if not check.key_matches:
            raise ValueError("issued certificate does not match the requested key")
        if check.subject_cn != node_common_name(self.settings.node):
            raise ValueError("issued certificate names another subject")
        self.store.save(key_pem, cert_pem, issued)
        self.store.write_kubeconfig(self._endpoint())
        self._current_rejected = False
        stored = await self.store.load_current()
        if stored is None:
            raise RuntimeError("the certificate just written cannot be read back")
        stored = StoredCertificate(stored.path, stored.key_pem, stored.cert_pem, issued, check.not_after)
        self._publish(stored)
        metrics.CREDENTIAL_ROTATIONS.labels(credential=NODE_CERTIFICATE, result="success").inc()
        log.info(
            "node certificate issued",
            path=stored.path,
            not_after=int(check.not_after),
            lifetime=int(check.not_after - issued),
        )

    def _request(self, creds: str, key_pem: bytes, request_pem: bytes) -> bytes:
        """File (or resume) the CSR and wait for the certificate (blocking: runs in a thread)."""
        api = kube.new_client(creds)
        try:
            cert_pem = self._resume_pending(api)
            if not cert_pem:
                name = kube.create_csr(api, self.settings.node, request_pem, self.settings.duration_seconds)
                log.info("CertificateSigningRequest created", csr=name)
                # Kept until it is settled: a wait cut short (API down, timeout) resumes on this
                # CSR instead of filing another one for the approver.
                self._pending = PendingCsr(name, key_pem, request_pem)
                cert_pem = kube.wait_for_certificate(api, name, self.settings.approval_timeout)
            self._pending = None
        except kube.CsrDenied:
            self._pending = None
            raise
        finally:
            kube.close(api)
        return cert_pem

    def _resume_pending(self, api: kube.ApiClient) -> bytes:
        """Wait again on the CSR of an interrupted attempt; b"" when there is none to resume."""
        if self._pending is None:
            return b""
        name = self._pending.name
        try:
            log.info("resuming CertificateSigningRequest", csr=name)
            return kube.wait_for_certificate(api, name, self.settings.approval_timeout)
        except kube.KubeError as exc:
            if exc.status != 404:
                raise
            # Deleted meanwhile (by a human or the CSR cleaner): file a new one, with the same key.
            return b""
