"""Secrets never reach logs: the redaction every log line passes through."""

import json
import logging.handlers
from pathlib import Path

import pytest

from services.common.logs import _rotating_file, context_from_metadata, get_logger, redact, setup_logging
from tests.support.logging_state import restored_logging

SECRETS = [
    ("bearer header", "Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ("json token field", '{"token": "s3cr3t-value"}', "s3cr3t-value"),
    ("kubeconfig key data", "client-key-data: LS0tLS1CRUdJTg==", "LS0tLS1CRUdJTg=="),
    ("pem block", "x -----BEGIN EC PRIVATE KEY-----\nMHcCAQ\n-----END EC PRIVATE KEY----- y", "MHcCAQ"),
    ("jwt", "token eyJhbGciOiJSUzI1.eyJpc3MiOiJrdWJlcm5l.c2lnbmF0dXJlX2hlcmU", "eyJpc3MiOiJrdWJlcm5l"),
    # One of each pattern with no other hint word in the string (redact skips strings
    # without one, so a hint missing from that list would let these through).
    ("bare jwt", "got eyJhbGciOiJSUzI1.eyJpc3MiOiJrdWJlcm5l.c2lnbmF0dXJlX2hlcmU", "eyJpc3MiOiJrdWJlcm5l"),
    ("bearer alone, upper case", "BEARER abc123", "abc123"),
    ("basic authorization", "AUTHORIZATION=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("password field", "Password: hunter2", "hunter2"),
    ("private key field", "private_key=abcdef", "abcdef"),
    ("certificate data", "client-certificate-data: QUJDRA==", "QUJDRA=="),
    ("pem certificate", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "MIIB"),
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


def test_log_file_rotation_follows_log_options(tmp_path: Path) -> None:
    handler = _rotating_file(str(tmp_path / "new-dir" / "cache.log"), {"maxSize": 2, "maxBackups": 3})
    try:
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert (handler.maxBytes, handler.backupCount) == (2 * 1024 * 1024, 3)
        assert (tmp_path / "new-dir").is_dir()
    finally:
        handler.close()


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlX3h4"
SECRET_VALUES = ["s3cr3t-token-value", "dXNlcjpwYXNzd29yZA==", JWT]


def test_secrets_nested_in_log_fields_are_redacted(tmp_path: Path) -> None:
    """Only top-level strings used to be redacted: a token inside a dict or a list
    (a request, a header map, a kubeconfig) reached the log as is."""
    token, basic, jwt = SECRET_VALUES
    log_file = tmp_path / "svc.log"
    with restored_logging():
        setup_logging("test", "info", str(log_file), to_stderr=False)
        get_logger("t").info(
            "request",
            request={"headers": {"Authorization": f"Bearer {token}"}, "env": [f"KUBE={jwt}"]},
            calls=[{"auth": f"Authorization: Basic {basic}"}],
            token=token,
            kubeconfig={"users": [{"user": {"token": token, "client-key-data": basic}}]},
            count=3,
        )
        logging.getLogger().handlers[0].flush()
    line = log_file.read_text()
    for secret in SECRET_VALUES:
        assert secret not in line, line
    event = json.loads(line)
    assert event["count"] == 3 and event["request"]["headers"]["Authorization"] == "[REDACTED]"
