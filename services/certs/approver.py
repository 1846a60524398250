"""`python -m services.certs approve`: the cluster-wide approver for multus
node client certificates (run once per cluster, e.g. as a Deployment). It lists
and watches CertificateSigningRequests and approves exactly those the rules in
services.certs.approval accept; everything else is left for humans, logged
with the reason."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from typing import Any

from services.certs import approval, kube
from services.common.kube_watch import ListWatch, WatchTiming
from services.common.logs import get_logger, setup_logging

log = get_logger(__name__)

TIMING = WatchTiming(
    watch_timeout_min=kube.WATCH_SECONDS,
    watch_timeout_max=kube.WATCH_SECONDS,
    backoff_base=1.0,
    backoff_cap=30.0,
    min_watch_seconds=kube.MIN_WATCH_SECONDS,
)


class Approver:
    def __init__(self, api: kube.ApiClient) -> None:
        self.api = api
        self._explained: set[str] = set()  # CSRs whose "left for a human" reason was logged

    def handle(self, obj: dict[str, Any]) -> approval.Decision:
        view = kube.csr_view(obj)
        decision = approval.decide(view)
        if decision.approve:
            kube.approve_csr(self.api, view.name, f"approved by the multus approver: {decision.reason}")
            log.info("CSR approved", csr=view.name, requester=view.username, reason=decision.reason)
        elif not view.decided and view.name not in self._explained:
            self._explained.add(view.name)
            log.info("CSR left for a human", csr=view.name, requester=view.username, reason=decision.reason)
        return decision

    def sync(self) -> None:
        for obj in kube.list_csrs(self.api):
            self._handle_safely(obj)

    def _handle_safely(self, obj: dict[str, Any]) -> None:
        try:
            self.handle(obj)
        except kube.KubeError as exc:
            # A conflict or a vanished CSR: the next event or relist brings it back if it still matters.
            log.warning("CSR approval failed", csr=(obj.get("metadata") or {}).get("name"), error=str(exc))

    # --- the common list/watch loop's Sink ---
    def replace(self, objs: Iterable[Any], resource_version: str) -> None:
        for obj in objs:
            self._handle_safely(obj)

    def upsert(self, obj: Any, resource_version: str = "") -> None:
        self._handle_safely(obj)

    def delete(self, key: tuple[str, str], resource_version: str = "") -> None:
        self._explained.discard(key[1])

    def set_resource_version(self, resource_version: str) -> None:
        pass  # the loop keeps the resourceVersion itself

    def count_watch_restart(self) -> None:
        pass  # the loop logs every restart

    def run(self) -> None:
        """List and watch every CSR until interrupted (services.common.kube_watch)."""
        ListWatch(kube.CSR_CALLS, self, lambda: self.api, TIMING).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multus-certs approve", description="approve multus node client CSRs")
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG", ""), help="default: KUBECONFIG, else in-cluster"
    )
    parser.add_argument("--once", action="store_true", help="handle the pending CSRs once and exit")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    setup_logging("certs-approver", args.log_level)
    try:
        api = kube.new_client(args.kubeconfig)
    except kube.KubeError as exc:
        log.error("cannot build an API client", error=str(exc))
        return 2
    approver = Approver(api)
    try:
        if args.once:
            approver.sync()
        else:
            log.info("approver started")
            approver.run()
    except kube.KubeError as exc:
        log.error("approver failed", error=str(exc))
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        kube.close(api)
    return 0
