"""What a command hands back to main(): one document (for -o json|yaml), its
table rendering, and the exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.ctl.errors import OK


@dataclass(frozen=True)
class Result:
    document: Any
    text: str
    code: int = OK
