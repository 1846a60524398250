"""structlog JSON logging to stderr (and optionally a rotated file), with context
(container ID, pod, command) bound per request and carried across services in
gRPC metadata, and secrets redacted before anything is written."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

# Context keys carried between services as gRPC metadata "x-multus-<key>".
CONTEXT_KEYS = ("container_id", "pod", "command", "ifname")
METADATA_PREFIX = "x-multus-"

_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization\"?'?\s*[:=]\s*\"?'?\s*(?:bearer|basic)?\s*)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r'(?i)("?(?:token|password|client-key-data|client-certificate-data|private[_-]?key)"?\s*[:=]\s*"?)[^",\s}]+'
    ),
    re.compile(r"-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWTs
)

_LEVELS = {
    "panic": "CRITICAL",
    "error": "ERROR",
    "warning": "WARNING",
    "info": "INFO",
    "debug": "DEBUG",
    "verbose": "DEBUG",
}


# Every pattern above needs one of these words (any case) to match: a string with
# none of them (nearly every log value) skips the five substitutions.
_SECRET_HINTS = ("authorization", "bearer", "token", "password", "-data", "private", "-----begin", "eyj")


def redact(text: str) -> str:
    """Remove tokens, keys and certificates from a string that may reach a log or an error."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _SECRET_HINTS):
        return text
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[REDACTED]", text)
        else:
            text = pattern.sub("[REDACTED]", text)
    return text


# Field names whose whole value is a secret, wherever they are nested.
_SECRET_KEYS = re.compile(
    r"(?i)^(authorization|token|bearer[_-]?token|password|client[_-]key(-data)?|private[_-]?key|key[_-]?data)$"
)
_MAX_DEPTH = 32


def redact_value(value: Any, depth: int = 0) -> Any:
    """`value` with every string redacted, recursing into mappings and sequences (a
    secret nested in a request, a header map or a list is still a secret); values
    under a secret's field name are replaced whole."""
    if isinstance(value, str):
        return redact(value)
    if depth >= _MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        return {
            k: "[REDACTED]" if isinstance(k, str) and _SECRET_KEYS.match(k) and v else redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", errors="replace"))
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if _SECRET_KEYS.match(key) and value:
            event[key] = "[REDACTED]"
        elif not isinstance(value, int | float | bool | type(None)):
            event[key] = redact_value(value)
    return event


def setup_logging(
    service: str,
    level: str = "info",
    log_file: str = "",
    log_options: Mapping[str, Any] | None = None,
    *,
    to_stderr: bool = True,
) -> None:
    """Configure structlog for this process. `log_options` follows upstream's
    logOptions (maxSize MiB, maxBackups) for the optional log file; without
    `to_stderr` (upstream's logToStderr) a process that has a log file logs
    only there, one without still logs to stderr."""
    handlers: list[logging.Handler] = []
    file_error = ""
    if log_file:
        try:
            handlers.append(_rotating_file(log_file, log_options or {}))
        except OSError as exc:  # as upstream: a log file that cannot be opened leaves stderr
            file_error = f"{exc.strerror or exc}"
    if to_stderr or not handlers:
        handlers.insert(0, logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = handlers
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
    root.setLevel(_LEVELS.get(level.lower(), "INFO"))
    # grpc.aio logs "Loaded running loop" at DEBUG on every call: noise, even at our debug level.
    logging.getLogger("grpc._cython.cygrpc").setLevel(logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[_LEVELS.get(level.lower(), "INFO")]
        ),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    if file_error:
        get_logger(__name__).error("cannot open the log file; logging to stderr only", path=log_file, error=file_error)


def _rotating_file(path: str, options: Mapping[str, Any]) -> logging.Handler:
    """The log file, rotated as upstream's logOptions say (maxSize MiB, maxBackups);
    its directory is created (logDir on a fresh node)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return logging.handlers.RotatingFileHandler(
        path,
        maxBytes=int(options.get("maxSize", 100)) * 1024 * 1024,
        backupCount=int(options.get("maxBackups", 5)),
    )


def get_logger(name: str = "") -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()


@contextmanager
def bound_context(**values: str) -> Iterator[None]:
    """Bind request context (container_id, pod, command, ...) for the duration of a block."""
    clean = {k: v for k, v in values.items() if v}
    with structlog.contextvars.bound_contextvars(**clean):
        yield


def context_metadata() -> tuple[tuple[str, str], ...]:
    """The current request context as gRPC metadata for an outgoing call."""
    ctx = structlog.contextvars.get_contextvars()
    return tuple(
        (METADATA_PREFIX + k.replace("_", "-"), _metadata_value(str(ctx[k]))) for k in CONTEXT_KEYS if ctx.get(k)
    )


def _metadata_value(value: str) -> str:
    """gRPC refuses a whole call whose metadata holds anything but printable ASCII;
    the context is only for logs, so escape the rest (a pod name from CNI_ARGS is
    whatever the runtime passed)."""
    if value.isascii() and value.isprintable():
        return value
    return value.encode("unicode_escape").decode("ascii")


def context_from_metadata(metadata: Any) -> dict[str, str]:
    """Extract request context from incoming gRPC invocation metadata."""
    found: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if isinstance(key, str) and key.startswith(METADATA_PREFIX) and isinstance(value, str):
            found[key[len(METADATA_PREFIX) :].replace("-", "_")] = value
    return found
