"""Secrets never reach logs: the redaction every log line passes through."""

import pytest

from services.common.logs import context_from_metadata, redact

SECRETS = [
    ("bearer header", "Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ("json token field", '{"token": "s3cr3t-value"}', "s3cr3t-value"),
    ("kubeconfig key data", "client-key-data: LS0tLS1CRUdJTg==", "LS0tLS1CRUdJTg=="),
    ("pem block", "x -----BEGIN EC PRIVATE KEY-----\nMHcCAQ\n-----END EC PRIVATE KEY----- y", "MHcCAQ"),
    ("jwt", "token eyJhbGciOiJSUzI1.eyJpc3MiOiJrdWJlcm5l.c2lnbmF0dXJlX2hlcmU", "eyJpc3MiOiJrdWJlcm5l"),
]


@pytest.mark.parametrize(("case", "text", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_redact_removes_secret(case: str, text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[REDACTED]" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    assert redact("added interface net1 to pod default/web") == "added interface net1 to pod default/web"


def test_context_round_trips_through_metadata() -> None:
    metadata = (("x-multus-container-id", "abc"), ("x-multus-pod", "ns/p"), ("other", "x"))
    assert context_from_metadata(metadata) == {"container_id": "abc", "pod": "ns/p"}
