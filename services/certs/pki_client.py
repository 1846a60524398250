"""The certs service's side of the PKI worker (services.certs.pki_worker):
every cryptography operation the resident process needs (facts of a
certificate, whether a key matches it, a new key and CSR) runs in a
short-lived child process, started from the event loop with asyncio's
subprocess API (no preexec_fn: this process has threads), bounded by a
timeout and killed when it overruns or its caller is cancelled. A worker that
cannot start, crashes, is killed, overruns or refuses the request raises
PkiWorkerError, which the credential loops record and retry like any other
failure. Facts are cached by content, so re-reading an unchanged certificate
(expiry monitoring, the rotation loop waking up) starts no process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.logs import redact

WORKER_ARGV = (sys.executable, "-m", "services.certs.pki_worker")
# Starting Python and importing cryptography takes ~0.1 s; the margin is for a loaded node.
WORKER_TIMEOUT = 30.0
CACHE_SIZE = 8  # the node certificate, its successor, a static kubeconfig's certificate


class PkiWorkerError(Exception):
    """The PKI worker gave no answer (start failure, crash, signal, timeout) or refused the request."""


@dataclass(frozen=True)
class CertificateCheck:
    """What the certs service needs to know about a certificate (and the key stored with it)."""

    subject_cn: str
    not_before: float
    not_after: float
    key_matches: bool


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stderr_tail(err: bytes) -> str:
    lines = err.decode(errors="replace").strip().splitlines()
    return f": {redact(lines[-1])[:200]}" if lines else ""


class PkiWorker:
    """Runs PKI worker processes; one instance (and one cache) per certs service."""

    def __init__(self, argv: Sequence[str] = WORKER_ARGV, timeout: float = WORKER_TIMEOUT) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.runs = 0  # worker processes started (the cache's effect is visible here)
        self._checks: OrderedDict[bytes, CertificateCheck | None] = OrderedDict()

    async def inspect(self, cert_pem: bytes, key_pem: bytes = b"") -> CertificateCheck | None:
        """Facts of the first certificate in `cert_pem`, and whether `key_pem` (if given) is
        its private key; None when `cert_pem` holds no parsable certificate."""
        digest = hashlib.sha256(hashlib.sha256(cert_pem).digest() + hashlib.sha256(key_pem).digest()).digest()
        if digest in self._checks:
            self._checks.move_to_end(digest)
            return self._checks[digest]
        request: dict[str, Any] = {"op": "inspect", "certificate": _b64(cert_pem)}
        if key_pem:
            request["key"] = _b64(key_pem)
        answer = await self._call(request)
        cert = answer.get("certificate")
        try:
            check = (
                None
                if cert is None
                else CertificateCheck(
                    str(cert["subject_cn"]),
                    float(cert["not_before"]),
                    float(cert["not_after"]),
                    answer.get("key_matches") is True,
                )
            )
        except (KeyError, TypeError, ValueError):
            raise PkiWorkerError("PKI worker (inspect) answered without certificate facts") from None
        self._checks[digest] = check
        while len(self._checks) > CACHE_SIZE:
            self._checks.popitem(last=False)
        return check

    async def new_request(self, node: str) -> tuple[bytes, bytes]:
        """A new private key (PEM) and the node's CSR (PEM) signed with it."""
        answer = await self._call({"op": "new_request", "node": node})
        try:
            return base64.b64decode(answer["key"], validate=True), base64.b64decode(answer["request"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise PkiWorkerError("PKI worker (new_request) answered without a key and request") from None

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise PkiWorkerError(f"PKI worker ({op}) could not start: {exc.strerror or exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(json.dumps(request).encode()), self.timeout)
        except TimeoutError:
            raise PkiWorkerError(f"PKI worker ({op}) did not answer within {self.timeout:g}s") from None
        finally:
            if proc.returncode is None:  # overran, or our caller was cancelled: never leave it behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        rc = proc.returncode
        if rc is None or rc != 0:
            how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
            raise PkiWorkerError(f"PKI worker ({op}) {how}{_stderr_tail(err)}")
        try:
            answer = json.loads(out)
        except ValueError:
            raise PkiWorkerError(f"PKI worker ({op}) answered something that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            why = answer.get("error") if isinstance(answer, dict) else None
            raise PkiWorkerError(f"PKI worker ({op}) refused the request: {why}")
        return answer
