"""The PKI worker (services.certs.pki_worker) and its client: the worker's
answers table-tested in-process, then the real worker process as the certs
service runs it: answers, the content cache, every way a worker can fail
(a clear PkiWorkerError, no process left behind, never a hang), and the node
certificate rotation retrying after a worker failure. No API server needed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.certs import approval, pki_worker
from services.certs.ledger import NODE_CERTIFICATE, VALID, CredentialLedger, credential_state
from services.certs.node_cert import CertificateStore, NodeCertificateRotator, NodeCertificateSettings
from services.certs.pki_client import PkiWorker, PkiWorkerError
from tests.certs.support import FakeClock, drive, eventually, running

PY = sys.executable


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(key: ec.EllipticCurvePrivateKey, cn: str, days: float = 30) -> tuple[bytes, float, float]:
    """A self-signed certificate for `key`: (PEM, notBefore, notAfter)."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    before, after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), before.timestamp(), after.timestamp()


KEY, OTHER_KEY = _key(), _key()
CERT, NOT_BEFORE, NOT_AFTER = _certificate(KEY, "system:multus:node-1")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("case", "request_", "answer"),
    [
        (
            "certificate and its key",
            {"op": "inspect", "certificate": _b64(CERT), "key": _b64(_key_pem(KEY))},
            {
                "ok": True,
                "certificate": {"subject_cn": "system:multus:node-1", "not_before": NOT_BEFORE, "not_after": NOT_AFTER},
                "key_matches": True,
            },
        ),
        ("another key", {"op": "inspect", "certificate": _b64(CERT), "key": _b64(_key_pem(OTHER_KEY))}, False),
        ("no key", {"op": "inspect", "certificate": _b64(CERT)}, False),
        ("a key that is not PEM", {"op": "inspect", "certificate": _b64(CERT), "key": _b64(b"junk")}, False),
        (
            "not a certificate",
            {"op": "inspect", "certificate": _b64(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
            {"ok": True, "certificate": None, "key_matches": False},
        ),
        ("certificate not base64", {"op": "inspect", "certificate": "%%%"}, "'certificate' is not valid base64"),
        ("certificate missing", {"op": "inspect"}, "'certificate' must be a base64 string"),
        ("new request without node", {"op": "new_request"}, "'node' must be a non-empty string"),
        ("unknown op", {"op": "sign"}, "unknown op 'sign'"),
        ("not an object", ["inspect"], "must be a JSON object"),
        ("undecodable input", None, "must be a JSON object"),
    ],
)
def test_worker_answers(case: str, request_: Any, answer: Any) -> None:
    got = pki_worker.handle(request_)
    if isinstance(answer, dict):
        assert got == answer, case
    elif isinstance(answer, bool):
        assert got["ok"] is True and got["certificate"]["subject_cn"] == "system:multus:node-1", case
        assert got["key_matches"] is answer, case
    else:
        assert got["ok"] is False and answer in got["error"], (case, got)


async def test_new_request_from_the_worker_process_passes_the_approver() -> None:
    worker = PkiWorker()
    key_pem, request_pem = await worker.new_request("node-7")
    csr = x509.load_pem_x509_csr(request_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert csr.public_key() == key.public_key()
    view = approval.CsrView("c", approval.SIGNER, "system:node:node-7", tuple(approval.USAGES), request_pem)
    assert approval.decide(view).approve


async def test_inspect_through_the_worker_process_is_cached_by_content() -> None:
    worker = PkiWorker()
    check = await worker.inspect(CERT, _key_pem(KEY))
    assert check is not None and check.key_matches
    assert (check.subject_cn, check.not_before, check.not_after) == ("system:multus:node-1", NOT_BEFORE, NOT_AFTER)
    assert await worker.inspect(CERT, _key_pem(KEY)) == check
    assert worker.runs == 1  # the same bytes again: answered from the cache
    mismatch = await worker.inspect(CERT, _key_pem(OTHER_KEY))
    assert mismatch is not None and not mismatch.key_matches
    assert await worker.inspect(b"not a certificate") is None  # bad PEM is an answer, not a failure
    assert worker.runs == 3


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


@pytest.mark.parametrize(
    ("case", "argv", "message"),
    [
        ("killed", [PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], "was killed by signal 9"),
        ("crashed", [PY, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"], "exited with code 3: boom"),
        ("no JSON", [PY, "-c", "print('hello')"], "answered something that is not JSON"),
        ("refused", [PY, "-c", 'print(\'{"ok": false, "error": "nope"}\')'], "refused the request: nope"),
        ("no facts", [PY, "-c", 'print(\'{"ok": true, "certificate": {}}\')'], "without certificate facts"),
        ("cannot start", ["/nonexistent/python3"], "could not start"),
    ],
)
async def test_failing_worker_is_a_clear_error_and_not_cached(case: str, argv: list[str], message: str) -> None:
    worker = PkiWorker(argv)
    for _ in range(2):  # a failure is not remembered: the next call runs a worker again
        with pytest.raises(PkiWorkerError) as failed:
            await worker.inspect(CERT, _key_pem(KEY))
        assert message in str(failed.value), case
        assert "BEGIN" not in str(failed.value)
    assert worker.runs == 2


async def test_hanging_worker_is_killed_at_the_timeout() -> None:
    before = _children()
    worker = PkiWorker([PY, "-c", "import time; time.sleep(60)"], timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PkiWorkerError, match="did not answer within 1s"):
        await worker.new_request("node-1")
    assert time.monotonic() - started < 10
    assert _children() <= before  # killed and reaped


async def test_cancelled_call_kills_its_worker() -> None:
    before = _children()
    worker = PkiWorker([PY, "-c", "import time; time.sleep(60)"])
    call = asyncio.create_task(worker.inspect(CERT))
    await eventually(lambda: _children() - before, 10, what="the worker process")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _children() <= before


# A worker that is killed on its first run and works from then on (the count is kept in a file).
FLAKY = (
    "import os, runpy, signal, sys\n"
    "path = sys.argv[1]\n"
    "runs = int(open(path).read()) if os.path.exists(path) else 0\n"
    "open(path, 'w').write(str(runs + 1))\n"
    "if runs == 0:\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "runpy.run_module('services.certs.pki_worker', run_name='__main__')\n"
)


def _unreachable_bootstrap(tmp_path: Path) -> Path:
    """A bootstrap kubeconfig naming an API server that is not there."""
    path = tmp_path / "bootstrap.kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


def _stored(cert_dir: Path, node: str) -> None:
    key = _key()
    cert, _, _ = _certificate(key, f"system:multus:{node}")
    cert_dir.mkdir()
    (cert_dir / "multus-client-2020-01-01-00-00-00.pem").write_bytes(cert + _key_pem(key))
    (cert_dir / "multus-client-current.pem").symlink_to("multus-client-2020-01-01-00-00-00.pem")


async def test_rotation_retries_reading_the_stored_certificate_after_a_worker_failure(tmp_path: Path) -> None:
    _stored(tmp_path / "certs", "node-1")
    worker = PkiWorker([PY, "-c", FLAKY, str(tmp_path / "runs")])
    store = CertificateStore(str(tmp_path / "certs"), pki=worker)
    clock, book = FakeClock(), CredentialLedger()
    settings = NodeCertificateSettings("node-1", str(_unreachable_bootstrap(tmp_path)), 600)
    async with running(NodeCertificateRotator(settings, store, book, clock, random.Random(1))):
        failed = await eventually(lambda: (c := book.get(NODE_CERTIFICATE)) and c.last_error and c, 20)
        assert "PkiWorkerError" in failed.last_error and "killed by signal 9" in failed.last_error
        assert not failed.present  # not read yet, so not vouched for
        loaded = await drive(clock, lambda: (c := book.get(NODE_CERTIFICATE)) and c.generation == 1 and c, step=1.0)
        assert loaded.last_error == "" and credential_state(loaded, clock.now()) == VALID
        await asyncio.sleep(0.5)
        # Loaded, not due: no renewal was attempted (it would fail: the API server is not there).
        assert book.get(NODE_CERTIFICATE) == loaded
        assert worker.runs == 2


async def test_rotation_retries_a_new_key_after_a_worker_failure(tmp_path: Path) -> None:
    """No stored certificate: the worker making the key and CSR is killed, the rotation
    records it and tries again; the second attempt gets as far as the (unreachable) API."""
    bootstrap = _unreachable_bootstrap(tmp_path)
    worker = PkiWorker([PY, "-c", FLAKY, str(tmp_path / "runs")])
    store = CertificateStore(str(tmp_path / "certs"), pki=worker)
    clock, book = FakeClock(), CredentialLedger()
    settings = NodeCertificateSettings("node-1", str(bootstrap), 600)
    async with running(NodeCertificateRotator(settings, store, book, clock, random.Random(1))):
        failed = await eventually(lambda: (c := book.get(NODE_CERTIFICATE)) and c.last_error and c, 20)
        assert failed.last_error == "PkiWorkerError: PKI worker (new_request) was killed by signal 9"
        retried = await drive(
            clock, lambda: (c := book.get(NODE_CERTIFICATE)) and "unreachable" in c.last_error and c, step=1.0
        )
        assert retried.last_error.startswith("KubeError") and not retried.present
        assert worker.runs == 2  # the key made by the second run is kept for the next attempts


def test_the_resident_service_modules_do_not_import_cryptography() -> None:
    """Everything the certs service imports for any mode, in a fresh interpreter."""
    probe = (
        "import sys, services.certs.__main__, services.certs.server, services.certs.workers, "
        "services.certs.static_credential, services.certs.node_cert, services.certs.kube; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography' or m == 'services.certs.pki'))"
    )
    out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
