"""The secrets scan of the fault and fuzz suites: every log line the services
wrote during a test is searched for tokens, keys, certificates and
Authorization headers (real ones the test used, and the fakes the fuzzers
planted), outside a redaction marker."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PATTERNS = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "pem": re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----"),
    "bearer": re.compile(r"(?i)bearer\s+(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,}"),
    "authorization": re.compile(r"(?i)authorization\W{0,4}(?:basic|bearer)?\s*(?!\[REDACTED\])[A-Za-z0-9+/=._-]{8,}"),
    "key-data": re.compile(r"(?i)(client-key-data|client-certificate-data)\W{0,4}(?!\[REDACTED\])[A-Za-z0-9+/=]{16,}"),
}
# Planted by the fuzzers in env, configs and bodies: must never come out unredacted.
PLANTED_SECRETS = ("fuzz-s3cret-token-0f9e8d", "ZnV6ei1wYXNzd29yZA==")


@dataclass
class ScanResult:
    files: int = 0
    lines: int = 0
    findings: list[str] = field(default_factory=list)


def scan_text(text: str, where: str, result: ScanResult, extra: Iterable[str] = ()) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        result.lines += 1
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                result.findings.append(f"{where}:{number}: {name}: {line[:200]}")
        for secret in (*PLANTED_SECRETS, *extra):
            if secret and secret in line:
                result.findings.append(f"{where}:{number}: planted secret: {line[:200]}")


def scan_logs(root: Path, extra: Iterable[str] = (), result: ScanResult | None = None) -> ScanResult:
    """Every *.log (and rotated *.log.N) file under `root`."""
    result = result or ScanResult()
    secrets = tuple(extra)
    for path in sorted(root.rglob("*.log*")):
        if not path.is_file():
            continue
        result.files += 1
        scan_text(path.read_text(errors="replace"), str(path), result, secrets)
    return result
