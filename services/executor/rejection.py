"""Why the executor refuses (or gives up on) a request, independent of gRPC.

The servicer turns each reason into one gRPC status; the gateway's client
turns that status into a CNI error code (services.common.grpc_client)."""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    INVALID = "invalid_argument"  # bad plugin name, netns path, command, env
    NOT_FOUND = "not_found"  # plugin not in any bin dir, interface not in the netns
    DENIED = "permission_denied"  # operator exec while disabled
    DEADLINE = "deadline_exceeded"  # the caller's deadline (or executorTimeoutSeconds) passed
    UNAVAILABLE = "unavailable"  # the executor cannot run anything (e.g. chroot program missing)
    PRECONDITION = "failed_precondition"  # the netns refuses a change (unreachable gateway, route conflict)


class Rejected(Exception):
    """A request the executor will not (or could no longer) carry out."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
