"""The error table: typed failures with their CNI codes, and the one function
that turns any exception into the CNI error a runtime sees (the gateway's
HTTP socket and gRPC API both answer through it).

Code decides on the type of a failure, never on its message text. A failure
that no row classifies is a bug in this code base: it becomes code 999
(libcni's ErrInternal) and is logged with its traceback as a bug, so it is
neither retried as transient (11) nor mistaken for a plugin's I/O error (5).
"""

from __future__ import annotations

from services.common import cni
from services.common.logs import get_logger

log = get_logger(__name__)


class PeerUnavailable(cni.CniError):
    """A peer service (cache, executor) or the API behind it did not answer in time: try again later."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(cni.TRY_AGAIN_LATER, msg, details)


class PodNotFound(cni.CniError):
    """The pod of an ADD is not known (yet): the runtime retries, never a made-up success."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(cni.TRY_AGAIN_LATER, msg, details)


class PodGone(cni.CniError):
    """The pod whose network-status is being written no longer exists (deleted, or
    recreated with another UID): nothing is left to report to, so an ADD ends there."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(cni.TRY_AGAIN_LATER, msg, details)


class NetworkNotFound(cni.CniError):
    """A selected NetworkAttachmentDefinition does not exist (the pod gets a NoNetworkFound event)."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(cni.INVALID_CONFIG, msg, details)


class DelegateFailed(cni.CniError):
    """A delegate plugin failed; the error carries the plugin's own code, message and details."""

    def __init__(self, code: int, msg: str, details: str = "", *, plugin: str = "") -> None:
        super().__init__(code, msg, details)
        self.plugin = plugin


# Exceptions that are not CniError but have a known meaning, most specific first.
_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (TimeoutError, cni.TRY_AGAIN_LATER, "timed out"),
    (OSError, cni.IO_FAILURE, "I/O error"),
)


def to_cni_error(exc: BaseException, what: str = "request") -> cni.CniError:
    """The CNI error a runtime gets for `exc` (raised while serving `what`)."""
    if isinstance(exc, cni.CniError):
        return exc
    for kind, code, msg in _TABLE:
        if isinstance(exc, kind):
            log.warning(f"{what} failed: {msg}", error=f"{type(exc).__name__}: {exc}")
            return cni.CniError(code, f"{msg} in {what}", f"{type(exc).__name__}: {exc}"[:512])
    log.error(
        f"unexpected exception in {what}: this is a bug, please report it",
        error=f"{type(exc).__name__}: {exc}",
        exc_info=exc,
    )
    return cni.CniError(cni.INTERNAL, f"internal error in {what} (a bug)", f"{type(exc).__name__}: {exc}"[:512])
