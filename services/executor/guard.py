"""The operator guard: who may run delegates through the executor.

The gateway's client marks its calls with gRPC metadata
`x-multus-caller: gateway`. Anything else (a person with grpcurl, a script) is
an operator call: ExecPlugin (other than VERSION, which has no side effects),
DeleteInterface and SetDefaultRoutes are refused with PERMISSION_DENIED unless
`executorAllowOperatorExec` is true; ListInterfaces, GetStats and the
common ServiceInfo/health calls are read-only and always allowed. The socket
is root-only (0600), so this is a policy against accidents, not a boundary
against root: whoever can connect can also send the marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.common.callers import CALLER_METADATA_KEY, GATEWAY_CALLER
from services.executor.rejection import Reason, Rejected

# Commands an operator may run while operator exec is off: no side effects.
HARMLESS_COMMANDS = frozenset({"VERSION"})


def caller_from_metadata(metadata: Iterable[Any] | None) -> str:
    for item in metadata or ():
        if item[0] == CALLER_METADATA_KEY:
            return str(item[1])
    return ""


def check_exec_allowed(caller: str, command: str, allow_operator_exec: bool) -> None:
    if caller == GATEWAY_CALLER or allow_operator_exec or command in HARMLESS_COMMANDS:
        return
    raise Rejected(
        Reason.DENIED,
        f"running delegates ({command}) through the executor is reserved for the gateway; "
        "set executorAllowOperatorExec to allow operators",
    )


def check_delete_allowed(caller: str, allow_operator_exec: bool) -> None:
    if caller == GATEWAY_CALLER or allow_operator_exec:
        return
    raise Rejected(
        Reason.DENIED,
        "deleting interfaces through the executor is reserved for the gateway; "
        "set executorAllowOperatorExec to allow operators",
    )


def check_route_change_allowed(caller: str, allow_operator_exec: bool) -> None:
    """Same rule as DeleteInterface: changing a pod's routes is the gateway's business."""
    if caller == GATEWAY_CALLER or allow_operator_exec:
        return
    raise Rejected(
        Reason.DENIED,
        "changing a pod's default routes through the executor is reserved for the gateway; "
        "set executorAllowOperatorExec to allow operators",
    )
