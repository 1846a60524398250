"""The fuzz suite (`pytest -m faults`): every log line the services wrote is
scanned for secrets after each test (tests/support/fault_fixtures.py)."""

from tests.support.fault_fixtures import known_secrets, log_roots, secrets_scan

__all__ = ["known_secrets", "log_roots", "secrets_scan"]
