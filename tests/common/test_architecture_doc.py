"""docs/architecture.md names modules; every one of them must exist, so the
map cannot silently drift from the code. And no service imports another."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
SERVICES = ("gateway", "cache", "executor", "certs")


def named_paths() -> list[str]:
    """Every `path` in backquotes that looks like a file or folder of the repo."""
    found = re.findall(r"`([A-Za-z0-9_./-]+)`", DOC.read_text())
    return sorted({p for p in found if "/" in p and not p.startswith(("<", "..")) and not p.startswith("/")})


def test_the_doc_names_modules() -> None:
    assert len(named_paths()) > 30


@pytest.mark.parametrize("path", named_paths())
def test_every_named_module_exists(path: str) -> None:
    assert (REPO / path).exists(), f"docs/architecture.md names {path}, which does not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    others = [s for s in SERVICES if s != service]
    pattern = re.compile(rf"^\s*(from|import) services\.({'|'.join(others)})\b", re.M)
    offenders = [
        str(py.relative_to(REPO))
        for py in (REPO / "services" / service).rglob("*.py")
        if pattern.search(py.read_text())
    ]
    assert offenders == []
