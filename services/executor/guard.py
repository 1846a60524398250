"""The caller guard: which peer may call which executor method.

Every call reaches the executor through its peer-credential front
(services/common/peercred.py), so each call carries its peer's `SO_PEERCRED`
(uid, primary gid, pid). The rule, per method (docs/reliability.md):

- read-only (health, reflection, ServiceInfo, GetStats, ListInterfaces, and
  ExecPlugin with VERSION, which changes nothing): any peer the socket's mode
  lets connect;
- node-changing (ExecPlugin of any other verb, DeleteInterface,
  SetDefaultRoutes): the gateway's uid (`gatewayUid`) sending the gateway's
  marker (`x-multus-caller: gateway`), or, only with
  `executorAllowOperatorExec`, the operator uid (`executorOperatorUid`) or a
  peer whose primary gid is `executorOperatorGid`. SO_PEERCRED carries the
  primary gid only, so a supplementary group never qualifies.

With the shipped manifests the gateway runs as its own non-root uid, so the
cache's or certs' uid (which may open the socket: they share its group)
cannot run a delegate, and root operators need operator exec enabled. With
every service as root (the default local supervisor), the marker is what
tells the gateway from an operator: a policy against accidents only, since
root can send the marker too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.callers import CALLER_METADATA_KEY, GATEWAY_CALLER
from services.common.config import DaemonConfig
from services.common.peercred import PeerCred
from services.executor.rejection import Reason, Rejected

# Commands any peer may run: no side effects.
HARMLESS_COMMANDS = frozenset({"VERSION"})


def caller_from_metadata(metadata: Iterable[Any] | None) -> str:
    for item in metadata or ():
        if item[0] == CALLER_METADATA_KEY:
            return str(item[1])
    return ""


@dataclass(frozen=True)
class CallerPolicy:
    gateway_uid: int = 0
    allow_operator_exec: bool = False
    operator_uid: int = 0
    operator_gid: int = -1

    @classmethod
    def from_config(cls, config: DaemonConfig) -> CallerPolicy:
        return cls(
            config.gateway_uid,
            config.executor_allow_operator_exec,
            config.executor_operator_uid,
            config.executor_operator_gid,
        )

    def is_gateway(self, peer: PeerCred | None, marker: str) -> bool:
        return peer is not None and peer.uid == self.gateway_uid and marker == GATEWAY_CALLER

    def is_operator(self, peer: PeerCred | None) -> bool:
        if peer is None or not self.allow_operator_exec:
            return False
        return peer.uid == self.operator_uid or (self.operator_gid >= 0 and peer.gid == self.operator_gid)

    def check_node_change(self, peer: PeerCred | None, marker: str, what: str) -> None:
        """Raise DENIED unless this peer may change the node (`what` names the change)."""
        if self.is_gateway(peer, marker) or self.is_operator(peer):
            return
        who = f"peer {peer}" if peer is not None else "a peer of unknown credentials"
        if self.allow_operator_exec:
            hint = f"only the gateway (uid {self.gateway_uid}) and the operator uid/gid may"
        else:
            hint = "set executorAllowOperatorExec to allow operators"
        raise Rejected(Reason.DENIED, f"{what} through the executor is reserved for the gateway; {who}: {hint}")

    def check_exec(self, peer: PeerCred | None, marker: str, command: str) -> None:
        if command in HARMLESS_COMMANDS:
            return
        self.check_node_change(peer, marker, f"running delegates ({command[:16]})")

    def check_delete(self, peer: PeerCred | None, marker: str) -> None:
        self.check_node_change(peer, marker, "deleting interfaces")

    def check_route_change(self, peer: PeerCred | None, marker: str) -> None:
        self.check_node_change(peer, marker, "changing a pod's default routes")
