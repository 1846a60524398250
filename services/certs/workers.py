"""The workers that talk to the API server (imported only when one is used)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.certs.server import CertsApp


def api_workers(app: CertsApp) -> list[Coroutine[Any, Any, None]]:
    return []
