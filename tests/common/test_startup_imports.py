"""What each long-running service keeps resident is part of its footprint
(issue 11): heavy packages that only rare paths need are imported by those
paths, never at start-up. Each probe imports exactly what the service's entry
point imports, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Loaded on demand only: importlib.metadata by ServiceInfo's version (about 0.7 MiB
# per process), pyroute2 by the executor's first netlink call, the official
# kubernetes client only for exec/auth-provider kubeconfigs, cryptography only in the
# certs service's short-lived PKI worker.
ON_DEMAND = ("importlib.metadata", "pyroute2", "kubernetes", "pydantic", "cryptography")


@pytest.mark.parametrize("service", ["gateway", "cache", "executor", "certs"])
def test_a_service_starts_without_its_on_demand_packages(service: str) -> None:
    probe = (
        f"import sys, services.{service}.__main__, services.{service}.server; "
        f"print(' '.join(m for m in {ON_DEMAND!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
