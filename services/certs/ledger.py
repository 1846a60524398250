"""What the node's credentials look like right now: one record per credential,
the permissions the preflight found missing, and the health verdict derived
from both. Consumers wait on it for changes (WatchCredentials)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from services.certs.rbac import Permission

VALID = "VALID"
EXPIRING = "EXPIRING"
EXPIRED = "EXPIRED"
MISSING = "MISSING"
STATIC = "STATIC"

# A credential inside the last tenth of its lifetime without a successful
# renewal makes the service unhealthy: renewal is overdue and consumers are at risk.
EXPIRING_FRACTION = 0.1

NODE_CERTIFICATE = "node-client-certificate"
DELEGATE_TOKEN = "delegate-token"
API_KUBECONFIG = "api-kubeconfig"


@dataclass(frozen=True)
class Credential:
    name: str
    path: str = ""
    issued: float = 0.0
    not_after: float = 0.0  # 0 = does not expire, or unknown
    present: bool = True
    # A missing credential the node cannot work without makes it unhealthy.
    required: bool = False
    last_rotation: float = 0.0
    last_error: str = ""
    generation: int = 0


def credential_state(cred: Credential, now: float) -> str:
    if not cred.present:
        return MISSING
    if cred.not_after <= 0:
        return STATIC
    if now >= cred.not_after:
        return EXPIRED
    lifetime = max(cred.not_after - cred.issued, 0.0)
    if now >= cred.not_after - EXPIRING_FRACTION * lifetime:
        return EXPIRING
    return VALID


def unhealthy_reasons(creds: tuple[Credential, ...], missing: tuple[Permission, ...], now: float) -> list[str]:
    reasons: list[str] = []
    for cred in creds:
        state = credential_state(cred, now)
        if state in (EXPIRED, EXPIRING) or (state == MISSING and cred.required):
            reasons.append(f"{cred.name} {state}" + (f": {cred.last_error}" if cred.last_error else ""))
    reasons.extend(f"missing permission: {p.describe()}" for p in missing)
    return reasons


@dataclass(frozen=True)
class Snapshot:
    credentials: tuple[Credential, ...]
    missing_permissions: tuple[Permission, ...]
    api_kubeconfig: str
    version: int
    states: tuple[str, ...] = field(default=())

    def healthy(self, now: float) -> bool:
        return not unhealthy_reasons(self.credentials, self.missing_permissions, now)


class CredentialLedger:
    """The single mutable record of credential state, with change notification.
    Must be created inside a running event loop."""

    def __init__(self, api_kubeconfig: str = "") -> None:
        self._creds: dict[str, Credential] = {}
        self._missing: tuple[Permission, ...] = ()
        self._api_kubeconfig = api_kubeconfig
        self._version = 0
        self._changed = asyncio.Event()
        self._last_states: tuple[str, ...] = ()

    def _notify(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def get(self, name: str) -> Credential | None:
        return self._creds.get(name)

    def publish(self, cred: Credential) -> None:
        self._creds[cred.name] = cred
        self._notify()

    def rotated(self, cred: Credential, now: float) -> Credential:
        """Record newly issued material: bumps the generation, clears the last error."""
        old = self._creds.get(cred.name)
        new = replace(cred, generation=(old.generation if old else 0) + 1, last_rotation=now, last_error="")
        self.publish(new)
        return new

    def failed(self, name: str, error: str) -> None:
        old = self._creds.get(name) or Credential(name, present=False)
        self.publish(replace(old, last_error=error))

    def set_missing_permissions(self, missing: tuple[Permission, ...]) -> None:
        if missing != self._missing:
            self._missing = missing
            self._notify()

    def tick(self, now: float) -> None:
        """Notify when time alone moved a credential into another state (VALID -> EXPIRING ...)."""
        states = tuple(credential_state(c, now) for c in self._creds.values())
        if states != self._last_states:
            self._last_states = states
            self._notify()

    def snapshot(self, now: float) -> Snapshot:
        creds = tuple(sorted(self._creds.values(), key=lambda c: c.name))
        return Snapshot(
            creds, self._missing, self._api_kubeconfig, self._version, tuple(credential_state(c, now) for c in creds)
        )

    @property
    def version(self) -> int:
        return self._version

    async def wait_for_change(self, after_version: int) -> int:
        while self._version <= after_version:
            await self._changed.wait()
        return self._version
