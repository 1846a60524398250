"""multusctl's exit codes and the errors that carry them to main(), which
prints one line on stderr and exits with the code."""

from __future__ import annotations

OK = 0
# What was asked about is not fine: a service unhealthy, a CHECK failed, the
# plan would fail, the plugin returned an error.
FAILED = 1
# Bad flags or arguments, an unreadable daemon config, a request a service refused as invalid.
USAGE = 2
# A service this command needs is not reachable on its socket.
UNAVAILABLE = 3
# Refused by policy (operator exec is off in the daemon config).
DENIED = 4
# The pod, container or attachment asked about does not exist.
NOT_FOUND = 5

EXIT_CODES = {
    OK: "success",
    FAILED: "what was asked about is not fine (unhealthy, CHECK failed, the plan fails, the plugin failed)",
    USAGE: "bad arguments or daemon config, or a request a service refused as invalid",
    UNAVAILABLE: "a service is not reachable on its socket",
    DENIED: "refused by policy (operator exec is off)",
    NOT_FOUND: "the pod, container or attachment does not exist",
}


class CtlError(Exception):
    """Ends the command: `message` is printed as one line, `code` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServiceDown(CtlError):
    def __init__(self, service: str, socket: str, reason: str) -> None:
        super().__init__(UNAVAILABLE, f"{service} is not reachable on {socket}: {reason}")
        self.service = service
        self.socket = socket
        self.reason = reason
