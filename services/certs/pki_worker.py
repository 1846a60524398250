"""`python -m services.certs.pki_worker`: one cryptography operation in a
short-lived process, so the resident certs service never imports the
cryptography package (its Rust extension alone is ~4 MiB of file pages no
other process shares, plus ~3 MiB anonymous, for work done a few times a day).

Protocol: one JSON request on stdin, one JSON answer on stdout, exit 0. PEM
material travels base64-encoded, on the pipes only (never in argv, never
logged). Requests:

    {"op": "inspect", "certificate": <b64 PEM>, "key": <b64 PEM, optional>}
        -> {"ok": true, "certificate": {"subject_cn", "not_before", "not_after"} | null,
            "key_matches": <bool>}   (null: no parsable certificate; a bad key never matches)
    {"op": "new_request", "node": <node name>}
        -> {"ok": true, "key": <b64 PKCS#8 PEM>, "request": <b64 CSR PEM>}

A malformed request is answered {"ok": false, "error": <why>} (exit 0: the
worker itself worked); anything else (a crash, a signal) is a non-zero exit
the caller reports (services.certs.pki_client)."""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any

from services.certs import pki


class BadRequest(Exception):
    """The request is not one this worker understands (never carries PEM material)."""


def _pem(request: dict[str, Any], field: str, required: bool) -> bytes:
    value = request.get(field)
    if value is None and not required:
        return b""
    if not isinstance(value, str):
        raise BadRequest(f"{field!r} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{field!r} is not valid base64") from exc


def _inspect(request: dict[str, Any]) -> dict[str, Any]:
    cert_pem = _pem(request, "certificate", required=True)
    key_pem = _pem(request, "key", required=False)
    try:
        facts = pki.certificate_facts(cert_pem)
    except ValueError:
        return {"ok": True, "certificate": None, "key_matches": False}
    return {
        "ok": True,
        "certificate": {"subject_cn": facts.subject_cn, "not_before": facts.not_before, "not_after": facts.not_after},
        "key_matches": bool(key_pem) and pki.key_pem_matches(key_pem, cert_pem),
    }


def _new_request(request: dict[str, Any]) -> dict[str, Any]:
    node = request.get("node")
    if not isinstance(node, str) or not node:
        raise BadRequest("'node' must be a non-empty string")
    key_pem, csr_pem = pki.new_node_request(node)
    return {"ok": True, "key": base64.b64encode(key_pem).decode(), "request": base64.b64encode(csr_pem).decode()}


OPERATIONS = {"inspect": _inspect, "new_request": _new_request}


def handle(request: Any) -> dict[str, Any]:
    """The answer to one decoded request."""
    try:
        if not isinstance(request, dict):
            raise BadRequest("the request must be a JSON object")
        operation = OPERATIONS.get(str(request.get("op")))
        if operation is None:
            raise BadRequest(f"unknown op {request.get('op')!r}; known: {sorted(OPERATIONS)}")
        return operation(request)
    except BadRequest as exc:
        return {"ok": False, "error": str(exc)}


def main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
    except ValueError:
        request = None
    sys.stdout.write(json.dumps(handle(request)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
