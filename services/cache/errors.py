"""The cache's domain errors; the servicer maps each to one gRPC status."""

from __future__ import annotations


class CacheError(Exception):
    """Base of every error the cache reports to a caller."""


class PodNotFound(CacheError):
    def __init__(self, namespace: str, name: str, waited: float) -> None:
        super().__init__(f"pod {namespace}/{name} not found (waited {waited:.1f}s, then asked the API server)")


class NadNotFound(CacheError):
    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"NetworkAttachmentDefinition {namespace}/{name} not found")


class StalePod(CacheError):
    """The request names another incarnation of the pod (deleted and recreated)."""

    def __init__(self, namespace: str, name: str, found_uid: str, wanted_uid: str) -> None:
        super().__init__(
            f"pod {namespace}/{name} has UID {found_uid} but the runtime asked for UID {wanted_uid}: "
            "the pod was deleted and recreated (stale request)"
        )


class SourceUnavailable(CacheError):
    """The API server did not answer (down, slow, network); retrying may help."""


class SourceForbidden(SourceUnavailable):
    """The API server refused the call (RBAC); retried for writes, since RBAC can be fixed live."""


class PodGone(CacheError):
    """A status write target no longer exists (deleted, or recreated with another UID)."""
