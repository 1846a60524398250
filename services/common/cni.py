"""CNI error codes and the one exception type that carries them across layers
(the typed failures built on it, and the table that turns any exception into
one, are in services.common.errors)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Error codes from the CNI spec (SPEC.md, "Error" section).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED = 51
# libcni's ErrInternal: a failure nobody classified. For us, always a bug.
INTERNAL = 999

CNI_COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
LATEST_CNI_VERSION = "1.0.0"


@dataclass
class CniError(Exception):
    """A failure that reaches the runtime as a CNI error object with a real code."""

    code: int
    msg: str
    details: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.msg)

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str = LATEST_CNI_VERSION) -> dict[str, Any]:
        obj: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            obj["details"] = self.details
        return obj

    def to_json(self, cni_version: str = LATEST_CNI_VERSION) -> str:
        return json.dumps(self.to_dict(cni_version))

    @classmethod
    def from_obj(cls, obj: Any, fallback_code: int = IO_FAILURE) -> CniError:
        """Build from a decoded CNI error object, tolerating missing or odd fields."""
        if not isinstance(obj, dict):
            return cls(fallback_code, "plugin failed", str(obj)[:4096])
        code = obj.get("code")
        if not isinstance(code, int) or isinstance(code, bool) or code <= 0:
            code = fallback_code
        return cls(code, str(obj.get("msg") or "plugin failed"), str(obj.get("details") or ""))
