"""Fixtures of the fault and fuzz suites (`pytest -m faults`): after every test, every log line the
services wrote under the test's directory is scanned for secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import fault_report
from tests.support.log_scan import scan_logs


@pytest.fixture
def log_roots(tmp_path: Path) -> list[Path]:
    """Directories whose logs are scanned after the test (tmp_path always; tests add more)."""
    return [tmp_path]


@pytest.fixture
def known_secrets() -> list[str]:
    """Real secrets a test used (tokens, keys): they must not be in any log either."""
    return []


@pytest.fixture(autouse=True)
def secrets_scan(log_roots: list[Path], known_secrets: list[str]) -> Iterator[None]:
    yield
    findings: list[str] = []
    for root in log_roots:
        result = scan_logs(root, known_secrets)
        fault_report.add("log scan", "files", result.files)
        fault_report.add("log scan", "lines", result.lines)
        findings += result.findings
    assert not findings, "secrets in logs:\n" + "\n".join(findings[:20])
